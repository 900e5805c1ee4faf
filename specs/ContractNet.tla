----------------------------- MODULE ContractNet -----------------------------
(***************************************************************************)
(* FIPA contract-net (SC00029H) as trio_foundation.protocols.contract_net  *)
(* runs it: one task, one manager, contractors over a network that loses,  *)
(* duplicates and reorders messages.                                       *)
(*                                                                         *)
(* The task's budget is escrowed in one ledger hold before the first call  *)
(* for proposals. Round r: contractors propose a price (or not); at the    *)
(* deadline of the manager's clock (any moment: the timer is not modelled  *)
(* further) the manager scores the proposals received while round r was    *)
(* open, from qualified contractors, and awards the best (higher score,    *)
(* then lower price, then earlier receipt, then lower id). The awarded     *)
(* contractor reports done (the hold is settled to it) or failure, or      *)
(* says nothing (it crashed, or its message was lost) until the execution  *)
(* timer fires; a failure, a timeout or a round without a valid proposal   *)
(* revokes the round and re-announces the task, at most MaxRounds rounds;  *)
(* then the task fails and the hold is released. A contractor whose award  *)
(* was revoked is not considered again for the task. An awarded contractor *)
(* may report after its round was revoked (it was only slow).              *)
(*                                                                         *)
(* The ledger link is reliable (specs/Ledger.tla checks the ledger), so a  *)
(* settle or release is applied with the step that decides it; the escrow  *)
(* is one state per hold. The invariants read what an observer records:    *)
(* every proposal received with whether its round was still open          *)
(* (`received`), every proposal entered into an evaluation (`considered`), *)
(* every award sent (`awards`), every revocation (`revoked`) and every     *)
(* payment the ledger applied (`paid`).                                    *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/ContractNet.*.cfg):      *)
(*  "double_award_after_reannounce": a re-announcement escrows afresh and  *)
(*      the revoked award stays live (its late result is paid);            *)
(*  "pay_revoked_award": one hold, but a revoked award's late result is    *)
(*      still paid;                                                        *)
(*  "award_unqualified": the capability filter is forgotten;               *)
(*  "ignore_reputation": the evaluation scores price only;                 *)
(*  "late_proposal_accepted": a proposal of an earlier round is counted in *)
(*      the current one (the round number is not checked);                 *)
(*  "failure_keeps_escrow": a failed task's hold is never released.        *)
(***************************************************************************)
EXTENDS Integers, FiniteSets, TLC

CONSTANTS
    Contractors,  \* e.g. {1, 2, 3}
    Qualified,    \* the contractors with the required capabilities
    Reputable,    \* the contractors with reputation 1 (the others have 0)
    Prices,       \* prices a contractor may propose, all <= Budget
    Budget,
    WPrice,       \* score weights (naturals)
    WRep,
    MaxRounds,
    MaxRecv,      \* proposal receptions over the run (bounds duplication)
    Variant

ASSUME Qualified \subseteq Contractors /\ Reputable \subseteq Contractors
ASSUME \A p \in Prices : 0 <= p /\ p <= Budget
ASSUME Variant \in {"correct", "double_award_after_reannounce", "pay_revoked_award",
                    "award_unqualified", "ignore_reputation", "late_proposal_accepted",
                    "failure_keeps_escrow"}

Rounds == 1..MaxRounds

VARIABLES
    phase,      \* "cfp" | "awarded" | "done" | "failed"
    round,      \* the current round
    net,        \* messages in flight (proposals and results)
    proposed,   \* [c, r] pairs for which c has sent its one proposal
    reported,   \* awards [c, r] whose contractor has sent its one result
    recv,       \* proposal receptions so far (the receipt counter)
    props,      \* the current round's proposals: set of [c, p, t]
    winner,     \* the current award's contractor (0: none)
    price,
    esc,        \* esc[h]: "none" | "held" | "settled" | "released"
    received,   \* ghost: every proposal received: [c, r, p, t, open]
    considered, \* ghost: every proposal entered into an evaluation: [c, r, p, t, open]
    awards,     \* ghost: every award sent: [c, r, p]
    revoked,    \* ghost: every revoked round: [r, c] (c = 0: nobody was awarded)
    paid,       \* ghost: every payment applied by the ledger: [c, r, amt]
    events      \* ghost: for reachability

vars == <<phase, round, net, proposed, reported, recv, props, winner, price, esc,
          received, considered, awards, revoked, paid, events>>

(* The hold that pays round r: one per task; one per round in a mutant.   *)
HoldOf(r) == IF Variant = "double_award_after_reannounce" THEN r ELSE 1

Rep(c) == IF c \in Reputable THEN 1 ELSE 0

(* The stated scoring function and order. *)
Score(x) == WPrice * (Budget - x.p) + WRep * Rep(x.c)
Better(x, y) ==
    \/ Score(x) > Score(y)
    \/ Score(x) = Score(y) /\ x.p < y.p
    \/ Score(x) = Score(y) /\ x.p = y.p /\ x.t < y.t
    \/ Score(x) = Score(y) /\ x.p = y.p /\ x.t = y.t /\ x.c < y.c

(* The order the manager applies (a mutant may get it wrong). *)
ImplScore(x) == IF Variant = "ignore_reputation" THEN WPrice * (Budget - x.p) ELSE Score(x)
ImplBetter(x, y) ==
    \/ ImplScore(x) > ImplScore(y)
    \/ ImplScore(x) = ImplScore(y) /\ x.p < y.p
    \/ ImplScore(x) = ImplScore(y) /\ x.p = y.p /\ x.t < y.t
    \/ ImplScore(x) = ImplScore(y) /\ x.p = y.p /\ x.t = y.t /\ x.c < y.c

Init ==
    /\ phase = "cfp"
    /\ round = 1
    /\ net = {}
    /\ proposed = {}
    /\ reported = {}
    /\ recv = 0
    /\ props = {}
    /\ winner = 0
    /\ price = 0
    /\ esc = [h \in Rounds |-> IF h = 1 THEN "held" ELSE "none"]
    /\ received = {}
    /\ considered = {}
    /\ awards = {}
    /\ revoked = {}
    /\ paid = {}
    /\ events = {}

(* Contractor c proposes p for the round it was called for (one per round). *)
(* A lost message is one that is never received: no Drop action needed.    *)
SendPropose(c, p) ==
    /\ phase = "cfp"
    /\ [c |-> c, r |-> round] \notin proposed
    /\ proposed' = proposed \cup {[c |-> c, r |-> round]}
    /\ net' = net \cup {[kind |-> "propose", c |-> c, r |-> round, p |-> p]}
    /\ UNCHANGED <<phase, round, reported, recv, props, winner, price, esc,
                   received, considered, awards, revoked, paid, events>>

(* The manager receives a proposal; keep = TRUE models a duplicate. *)
ReceivePropose(m, keep) ==
    /\ m \in net /\ m.kind = "propose" /\ recv < MaxRecv
    /\ net' = IF keep THEN net ELSE net \ {m}
    /\ recv' = recv + 1
    /\ LET t == recv + 1
           open == phase = "cfp" /\ m.r = round
           ok == /\ phase = "cfp"
                 /\ (m.r = round \/ Variant = "late_proposal_accepted")
                 /\ (m.c \in Qualified \/ Variant = "award_unqualified")
                 /\ ~\E v \in revoked : v.c = m.c
                 /\ ~\E x \in props : x.c = m.c
           rec == [c |-> m.c, r |-> m.r, p |-> m.p, t |-> t, open |-> open]
       IN /\ received' = received \cup {rec}
          /\ IF ok
             THEN /\ props' = props \cup {[c |-> m.c, p |-> m.p, t |-> t]}
                  /\ considered' = considered \cup {[rec EXCEPT !.r = round]}
                  /\ UNCHANGED events
             ELSE /\ UNCHANGED <<props, considered>>
                  /\ events' = IF open THEN events ELSE events \cup {"late_refused"}
    /\ UNCHANGED <<phase, round, proposed, reported, winner, price, esc, awards, revoked, paid>>

(* The round ends without a result: re-announce, or fail after the last round. *)
Revoke(why) ==
    /\ revoked' = revoked \cup {[r |-> round, c |-> winner]}
    /\ winner' = 0 /\ price' = 0 /\ props' = {}
    /\ IF round < MaxRounds
       THEN /\ round' = round + 1
            /\ phase' = "cfp"
            /\ esc' = IF Variant = "double_award_after_reannounce"
                      THEN [esc EXCEPT ![round + 1] = "held"] ELSE esc
            /\ events' = IF why = "timeout" THEN events \cup {"reannounced_after_timeout"}
                         ELSE events
       ELSE /\ phase' = "failed"
            /\ UNCHANGED round
            /\ esc' = IF Variant = "failure_keeps_escrow" THEN esc
                      ELSE [esc EXCEPT ![HoldOf(round)] = "released"]
            /\ UNCHANGED events

(* The deadline fires: award the best proposal of the round, or revoke it. *)
Evaluate ==
    /\ phase = "cfp"
    /\ IF props = {}
       THEN /\ Revoke("no_proposal")
            /\ UNCHANGED awards
       ELSE LET best == CHOOSE x \in props : \A y \in props \ {x} : ImplBetter(x, y)
            IN /\ phase' = "awarded"
               /\ winner' = best.c /\ price' = best.p
               /\ awards' = awards \cup {[c |-> best.c, r |-> round, p |-> best.p]}
               /\ UNCHANGED <<round, props, esc, revoked, events>>
    /\ UNCHANGED <<net, proposed, reported, recv, received, considered, paid>>

(* An awarded contractor reports (even after its round was revoked), once. *)
Report(a, kind) ==
    /\ a \in awards /\ a \notin reported
    /\ reported' = reported \cup {a}
    /\ net' = net \cup {[kind |-> kind, c |-> a.c, r |-> a.r, p |-> a.p]}
    /\ UNCHANGED <<phase, round, proposed, recv, props, winner, price, esc,
                   received, considered, awards, revoked, paid, events>>

Current(m) == phase = "awarded" /\ m.r = round /\ m.c = winner

(* A mutant that still honours a revoked award's result. *)
HonoursRevoked == Variant \in {"double_award_after_reannounce", "pay_revoked_award"}

(* The manager settles for m: the current award's result, or (a mutant) a  *)
(* revoked one's; and the ledger settles an open hold only.                *)
Pays(m) ==
    /\ m.kind = "done"
    /\ \/ Current(m)
       \/ HonoursRevoked /\ phase \in {"cfp", "awarded"} /\ m.r < round
    /\ esc[HoldOf(m.r)] = "held"

(* A result arrives; keep = TRUE models a duplicate. *)
ReceiveResult(m, keep) ==
    /\ m \in net /\ m.kind \in {"done", "failure"}
    /\ net' = IF keep THEN net ELSE net \ {m}
    /\ IF Pays(m)
       THEN /\ esc' = [esc EXCEPT ![HoldOf(m.r)] = "settled"]
            /\ paid' = paid \cup {[c |-> m.c, r |-> m.r, amt |-> m.p]}
            /\ phase' = IF Current(m) THEN "done" ELSE phase
            /\ events' = IF Current(m) /\ \E v \in revoked : v.c # 0 /\ v.c # m.c
                         THEN events \cup {"done_by_another_after_revocation"}
                         ELSE events
            /\ UNCHANGED <<round, props, winner, price, revoked>>
       ELSE IF m.kind = "failure" /\ Current(m)
       THEN /\ Revoke("failure")
            /\ UNCHANGED paid
       ELSE UNCHANGED <<phase, round, props, winner, price, esc, revoked, paid, events>>
    /\ UNCHANGED <<proposed, reported, recv, received, considered, awards>>

(* The execution timer fires: the award is revoked (a Cancel is sent). *)
Timeout ==
    /\ phase = "awarded"
    /\ Revoke("timeout")
    /\ UNCHANGED <<net, proposed, reported, recv, received, considered, awards, paid>>

(* A decided task stutters (not a deadlock). *)
Done == phase \in {"done", "failed"} /\ UNCHANGED vars

(* Once the task is decided nothing more can change what an observer      *)
(* checks (late messages are ignored), so the run ends there.             *)
Undecided == phase \in {"cfp", "awarded"}

Next ==
    \/ \E c \in Contractors, p \in Prices : SendPropose(c, p)
    \/ Undecided /\ \E m \in net, keep \in BOOLEAN :
                        ReceivePropose(m, keep) \/ ReceiveResult(m, keep)
    \/ Evaluate
    \/ Undecided /\ \E a \in awards, kind \in {"done", "failure"} : Report(a, kind)
    \/ Timeout
    \/ Done

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* What an observer computes from `received`: the valid proposals of round *)
(* r are, per contractor, the first one received while round r was open,   *)
(* from a qualified contractor not awarded an earlier (so revoked) round.  *)
ValidIn(r) ==
    {x \in received :
        /\ x.r = r /\ x.open /\ x.c \in Qualified
        /\ ~\E a \in awards : a.c = x.c /\ a.r < r
        /\ ~\E y \in received : y.c = x.c /\ y.r = r /\ y.open /\ y.t < x.t}

RevokedRounds == {v.r : v \in revoked}

TypeOK ==
    /\ phase \in {"cfp", "awarded", "done", "failed"}
    /\ round \in Rounds
    /\ esc \in [Rounds -> {"none", "held", "settled", "released"}]
    /\ recv \in 0..MaxRecv

(* Never two payments for the task (whatever the rounds). *)
AtMostOnePaid == Cardinality(paid) <= 1

(* A payment goes to an award the manager had not revoked, at its price. *)
PaidOnlyForLiveAward ==
    \A x \in paid :
        /\ [c |-> x.c, r |-> x.r, p |-> x.amt] \in awards
        /\ x.r \notin RevokedRounds
        /\ x.amt <= Budget

(* Every award went to the best valid proposal of its round. *)
AwardedToValidProposal ==
    \A a \in awards :
        \E x \in ValidIn(a.r) :
            /\ x.c = a.c /\ x.p = a.p
            /\ \A y \in ValidIn(a.r) \ {x} : Better(x, y)

(* Nothing received after its round's deadline was evaluated. *)
NoProposalAfterDeadline == \A x \in considered : x.open

(* A failed task's escrow is back with the buyer and nobody was paid; a    *)
(* done task's escrow is settled.                                          *)
EscrowReleasedOnFailure ==
    /\ phase = "failed" => /\ \A h \in Rounds : esc[h] \in {"none", "released"}
                           /\ paid = {}
    /\ phase = "done" => \E h \in Rounds : esc[h] = "settled"

(* Reachability: each must be violated (specs/reach/). *)
NeverRivalProposals ==
    ~\E a \in awards : Cardinality(ValidIn(a.r)) >= 2
NeverLateRefused == "late_refused" \notin events
NeverReannouncedAfterCrash ==
    ~("reannounced_after_timeout" \in events /\ "done_by_another_after_revocation" \in events)
=============================================================================
