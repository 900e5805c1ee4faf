------------------------------- MODULE Ledger -------------------------------
(***************************************************************************)
(* The credit ledger of trio_foundation.protocols.ledger.                  *)
(*                                                                         *)
(* Accounts hold non-negative balances. An authority mints and burns       *)
(* credits; accounts transfer credits; a hold puts part of a balance in    *)
(* escrow until it is settled (an amount up to the hold's to a payee, the  *)
(* rest back) or released (all back). Every change appends an entry to the *)
(* journal; a checkpoint folds the oldest entry into the base state, as    *)
(* the implementation does when its window is full (here at any time,      *)
(* which covers every window size).                                        *)
(*                                                                         *)
(* The invariants read what an observer records: the supply changed only   *)
(* by mint and burn entries (ghost `supply`), the sequence of hold         *)
(* closings (ghost `closes`), and the journal itself, replayed from the    *)
(* base.                                                                   *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/): "transfer_creates_    *)
(* credit" credits the payee without debiting the payer; "overdraft"       *)
(* skips the funds check; "double_settle" lets a closed hold be settled    *)
(* again; "checkpoint_drops_entry" drops the oldest entry without folding  *)
(* it into the base.                                                       *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets, TLC

CONSTANTS
    Accounts,   \* e.g. {1, 2}
    HoldIds,    \* e.g. {1, 2}
    MaxAmount,  \* amounts are 1..MaxAmount
    MaxSupply,  \* mint bound (model size)
    MaxOps,     \* journal entries over the whole run (model size)
    Variant

ASSUME Variant \in {"correct", "transfer_creates_credit", "overdraft",
                    "double_settle", "checkpoint_drops_entry"}

VARIABLES
    bal,        \* bal[a]: balance of account a
    holds,      \* holds[h]: [st |-> "none" | "open" | "closed", acct, amt]
    base,       \* checkpoint base: [bal |-> ..., held |-> ...]
    window,     \* journal entries after the base
    seq,        \* entries written so far
    supply,     \* ghost: credits minted minus burned, from mint/burn only
    closes,     \* ghost: sequence of hold ids, one per settle or release
    events      \* ghost: kinds of things that happened (for reachability)

vars == <<bal, holds, base, window, seq, supply, closes, events>>

Amounts == 1..MaxAmount
NoHold == [st |-> "none", acct |-> CHOOSE a \in Accounts : TRUE, amt |-> 0]

RECURSIVE SumOver(_, _)
SumOver(f, S) == IF S = {} THEN 0
                 ELSE LET x == CHOOSE y \in S : TRUE IN f[x] + SumOver(f, S \ {x})

HeldAmounts == [h \in HoldIds |-> IF holds[h].st = "open" THEN holds[h].amt ELSE 0]

Entry(kind, a, o, n, h) == [kind |-> kind, acct |-> a, other |-> o, amt |-> n, hold |-> h]

ApplyEntry(s, e) ==
    CASE e.kind = "mint" -> [s EXCEPT !.bal[e.acct] = @ + e.amt]
      [] e.kind = "burn" -> [s EXCEPT !.bal[e.acct] = @ - e.amt]
      [] e.kind = "transfer" ->
            [s EXCEPT !.bal = [@ EXCEPT ![e.acct] = @ - e.amt, ![e.other] = @ + e.amt]]
      [] e.kind = "hold" ->
            [s EXCEPT !.bal[e.acct] = @ - e.amt, !.held[e.hold] = e.amt]
      [] e.kind = "settle" ->
            [s EXCEPT !.bal = [@ EXCEPT ![e.other] = @ + e.amt,
                                        ![e.acct] = @ + (s.held[e.hold] - e.amt)],
                      !.held[e.hold] = 0]
      [] e.kind = "release" ->
            [s EXCEPT !.bal[e.acct] = @ + s.held[e.hold], !.held[e.hold] = 0]

RECURSIVE Replay(_, _)
Replay(s, w) == IF w = <<>> THEN s ELSE Replay(ApplyEntry(s, Head(w)), Tail(w))

Init ==
    /\ bal = [a \in Accounts |-> 0]
    /\ holds = [h \in HoldIds |-> NoHold]
    /\ base = [bal |-> [a \in Accounts |-> 0], held |-> [h \in HoldIds |-> 0]]
    /\ window = <<>>
    /\ seq = 0
    /\ supply = 0
    /\ closes = <<>>
    /\ events = {}

Journal(e) == /\ seq < MaxOps
              /\ window' = Append(window, e)
              /\ seq' = seq + 1

Mint(a, n) ==
    /\ supply + n <= MaxSupply
    /\ Journal(Entry("mint", a, a, n, 0))
    /\ bal' = [bal EXCEPT ![a] = @ + n]
    /\ supply' = supply + n
    /\ UNCHANGED <<holds, base, closes, events>>

Burn(a, n) ==
    /\ bal[a] >= n
    /\ Journal(Entry("burn", a, a, n, 0))
    /\ bal' = [bal EXCEPT ![a] = @ - n]
    /\ supply' = supply - n
    /\ UNCHANGED <<holds, base, closes, events>>

Funded(a, n) == bal[a] >= n \/ Variant = "overdraft"

Transfer(a, b, n) ==
    /\ a # b
    /\ Funded(a, n)
    /\ Journal(Entry("transfer", a, b, n, 0))
    /\ bal' = IF Variant = "transfer_creates_credit"
              THEN [bal EXCEPT ![b] = @ + n]
              ELSE [bal EXCEPT ![a] = @ - n, ![b] = @ + n]
    /\ UNCHANGED <<holds, base, supply, closes, events>>

(* A transfer without funds is refused and changes nothing but the record. *)
RefuseOverdraft(a, b, n) ==
    /\ a # b /\ seq < MaxOps
    /\ ~Funded(a, n)
    /\ events' = events \cup {"overdraft_refused"}
    /\ UNCHANGED <<bal, holds, base, window, seq, supply, closes>>

PutHold(h, a, n) ==
    /\ holds[h].st = "none"
    /\ Funded(a, n)
    /\ Journal(Entry("hold", a, a, n, h))
    /\ bal' = [bal EXCEPT ![a] = @ - n]
    /\ holds' = [holds EXCEPT ![h] = [st |-> "open", acct |-> a, amt |-> n]]
    /\ UNCHANGED <<base, supply, closes, events>>

Settle(h, p, n) ==
    /\ \/ holds[h].st = "open"
       \/ Variant = "double_settle" /\ holds[h].st = "closed"
    /\ n <= holds[h].amt
    /\ LET a == holds[h].acct IN
       /\ Journal(Entry("settle", a, p, n, h))
       /\ bal' = [bal EXCEPT ![p] = @ + n, ![a] = @ + (holds[h].amt - n)]
    /\ holds' = [holds EXCEPT ![h].st = "closed"]
    /\ closes' = Append(closes, h)
    /\ events' = events \cup {"settled"}
    /\ UNCHANGED <<base, supply>>

Release(h) ==
    /\ holds[h].st = "open"
    /\ Journal(Entry("release", holds[h].acct, holds[h].acct, 0, h))
    /\ bal' = [bal EXCEPT ![holds[h].acct] = @ + holds[h].amt]
    /\ holds' = [holds EXCEPT ![h].st = "closed"]
    /\ closes' = Append(closes, h)
    /\ events' = events \cup {"released"}
    /\ UNCHANGED <<base, supply>>

(* Fold the oldest journal entry into the base. *)
Checkpoint ==
    /\ window # <<>>
    /\ base' = IF Variant = "checkpoint_drops_entry" THEN base
               ELSE ApplyEntry(base, Head(window))
    /\ window' = Tail(window)
    /\ UNCHANGED <<bal, holds, seq, supply, closes, events>>

(* The model's bound is reached: stutter (not a deadlock). *)
Done == seq = MaxOps /\ UNCHANGED vars

Next ==
    \/ \E a \in Accounts, n \in Amounts : Mint(a, n) \/ Burn(a, n)
    \/ \E a, b \in Accounts, n \in Amounts : Transfer(a, b, n) \/ RefuseOverdraft(a, b, n)
    \/ \E h \in HoldIds, a \in Accounts, n \in Amounts : PutHold(h, a, n)
    \/ \E h \in HoldIds, p \in Accounts, n \in 0..MaxAmount : Settle(h, p, n)
    \/ \E h \in HoldIds : Release(h)
    \/ Checkpoint
    \/ Done

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
TypeOK ==
    /\ bal \in [Accounts -> Int]
    /\ \A h \in HoldIds : holds[h].st \in {"none", "open", "closed"}
    /\ seq \in 0..MaxOps
    /\ Len(window) <= seq

(* Balances plus open holds equal the credits minted minus burned. *)
Conservation == SumOver(bal, Accounts) + SumOver(HeldAmounts, HoldIds) = supply

NonNegative == \A a \in Accounts : bal[a] >= 0

(* Replaying the journal from the checkpoint base reproduces every balance *)
(* and every open hold.                                                    *)
JournalReplays == Replay(base, window) = [bal |-> bal, held |-> HeldAmounts]

(* No hold is closed (settled or released) twice. *)
HoldsSettledOnce ==
    \A i, j \in DOMAIN closes : i # j => closes[i] # closes[j]

(* Reachability: each must be violated (specs/reach/). *)
NeverHoldSettled == "settled" \notin events
NeverHoldReleased == "released" \notin events
NeverOverdraftRefused == "overdraft_refused" \notin events
=============================================================================
