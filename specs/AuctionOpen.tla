----------------------------- MODULE AuctionOpen -----------------------------
(***************************************************************************)
(* The open formats of trio_foundation.protocols.auction: English          *)
(* ascending (open outcry) and Dutch descending (price clock), as the      *)
(* constant Format. One unit is sold.                                       *)
(*                                                                         *)
(* English. Bidders send bids over a network that loses, duplicates and    *)
(* reorders them. The auctioneer takes a bid received while open if it     *)
(* meets the reserve and beats the bar (the standing bid and every bid     *)
(* whose hold is being placed) by MinIncrement, and asks the ledger for    *)
(* its hold; when the ledger places it (HoldAnswer, funded or not), the    *)
(* bid stands if it beats the standing one, and the outbid hold is         *)
(* released. Time is discrete (Tick); the auction closes Quiet ticks after *)
(* the last bid stood (or after the start) or at the Deadline, whichever   *)
(* first; it decides once no hold is being placed: the standing bidder     *)
(* wins and pays its bid, its hold settled.                                *)
(*                                                                         *)
(* Dutch. A clock asks Start, falling by Decrement per Tick down to the    *)
(* Reserve; one tick at the reserve, then the auction closes unsold (the   *)
(* deadline may close it at any time). A bidder accepts a price it saw     *)
(* (or any other: stale or early); the auctioneer takes an accept only at  *)
(* the current price, asks for its hold, and the earliest received accept  *)
(* whose hold was placed wins at its price once no earlier accept is still *)
(* being placed. The auctioneer may restart: the clock's origin is         *)
(* persisted, so the price neither rises nor resets.                       *)
(*                                                                         *)
(* The ledger is modelled as the set of open holds (specs/Ledger.tla       *)
(* checks the ledger itself). Invariants read what an observer records:    *)
(* every bid taken with the clock and whether the auction was open         *)
(* (`taken`), every hold placed (`funded`), the standing bids in order     *)
(* (`stands`), the prices announced (`announced`), the awards, the close.  *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/AuctionOpen.*.cfg).      *)
(***************************************************************************)
EXTENDS Integers, Sequences, FiniteSets, TLC

CONSTANTS
    Bidders,      \* e.g. {1, 2}
    Format,       \* "english" | "dutch"
    MaxAmount,    \* English: bids are 0..MaxAmount
    Reserve,
    MinIncrement, \* English
    Quiet,        \* English: ticks without a new standing bid before the close
    Deadline,     \* English: the hard close, in ticks
    Start,        \* Dutch: the clock's first price
    Decrement,    \* Dutch
    MaxBids,      \* bids (accepts) a bidder may send
    MaxRecv,      \* receptions over the run (bounds duplication)
    MaxRestarts,  \* Dutch: auctioneer restarts
    Variant

ASSUME Format \in {"english", "dutch"}
ASSUME MinIncrement >= 1 /\ Decrement >= 1 /\ (Format = "dutch" => Start >= Reserve)
ASSUME Variant \in {"correct",
    \* English
    "outbid_hold_kept", "below_increment", "bid_after_close", "quiet_not_rearmed",
    \* Dutch
    "stale_price_accepted", "clock_reset", "no_wait_for_earlier", "dutch_loser_kept"}

None == [b |-> 0, amt |-> 0, t |-> 0]

VARIABLES
    phase,      \* "open" | "closing" | "closed"
    now,        \* English: ticks since the start
    step,       \* Dutch: ticks of the clock since the start
    net,        \* bid messages in flight: set of [b, amt]
    sent,       \* sent[b]: bids b has sent
    recv,       \* receptions so far (the receipt counter)
    pending,    \* bids taken, hold being placed: set of [b, amt, t]
    standing,   \* English: the standing bid, or None
    stoodAt,    \* English: tick the last bid stood (0: the start)
    funded,     \* ghost: every bid whose hold was placed
    spent,      \* Dutch: bidders whose one accept was taken
    holds,      \* the ledger's open holds: set of [b, amt, t]
    restarts,
    awards,     \* set of [b, amt, t, price]
    taken,      \* ghost: every bid taken: [b, amt, t, open, clock]
    stands,     \* ghost: the standing bids in order: <<[b, amt, t, at, open]>>
    announced,  \* ghost: the prices the clock announced, in order
    closedBy    \* ghost: "" | "quiet" | "deadline" | "floor"; closeAt with it
    , closeAt

vars == <<phase, now, step, net, sent, recv, pending, standing, stoodAt, funded, spent,
          holds, restarts, awards, taken, stands, announced, closedBy, closeAt>>

Max(S) == CHOOSE m \in S : \A n \in S : n <= m

(* Dutch: the clock.                                                       *)
Price == IF Start - Decrement * step > Reserve THEN Start - Decrement * step ELSE Reserve
FloorStep == (Start - Reserve + Decrement - 1) \div Decrement + 1  \* closes unsold here

(* English: the least bid that may be taken.                               *)
Live == pending \cup (IF standing = None THEN {} ELSE {standing})
Increment == IF Variant = "below_increment" THEN 1 ELSE MinIncrement
Bar == IF Live = {} THEN Reserve ELSE Max({x.amt : x \in Live}) + Increment
QuietAt == IF Variant = "quiet_not_rearmed" THEN Quiet ELSE stoodAt + Quiet

Init ==
    /\ phase = "open"
    /\ now = 0
    /\ step = 0
    /\ net = {}
    /\ sent = [b \in Bidders |-> 0]
    /\ recv = 0
    /\ pending = {}
    /\ standing = None
    /\ stoodAt = 0
    /\ funded = {}
    /\ spent = {}
    /\ holds = {}
    /\ restarts = 0
    /\ awards = {}
    /\ taken = {}
    /\ stands = <<>>
    /\ announced = IF Format = "dutch" THEN <<Start>> ELSE <<>>
    /\ closedBy = ""
    /\ closeAt = 0

-----------------------------------------------------------------------------
(* Bidders. An English bidder bids any amount (it may not have heard the    *)
(* standing bid); a Dutch bidder accepts any price of the clock's range     *)
(* (the last it heard, an older one, or one not reached yet).              *)
SendBid(b, v) ==
    /\ sent[b] < MaxBids
    /\ sent' = [sent EXCEPT ![b] = @ + 1]
    /\ net' = net \cup {[b |-> b, amt |-> v]}
    /\ UNCHANGED <<phase, now, step, recv, pending, standing, stoodAt, funded, spent, holds,
                   restarts, awards, taken, stands, announced, closedBy, closeAt>>

(* The auctioneer receives m; keep = TRUE models a duplicated message.     *)
Receive(m, keep) ==
    /\ m \in net /\ recv < MaxRecv
    /\ net' = IF keep THEN net ELSE net \ {m}
    /\ recv' = recv + 1
    /\ LET t == recv + 1
           open == phase = "open"
           ok == /\ open \/ (Variant = "bid_after_close" /\ phase = "closing")
                 /\ m.amt >= Reserve
                 /\ IF Format = "english"
                    THEN /\ ~\E x \in Live : x.b = m.b
                         /\ m.amt >= Bar
                    ELSE /\ m.b \notin spent
                         /\ (m.amt = Price \/ Variant = "stale_price_accepted")
           x == [b |-> m.b, amt |-> m.amt, t |-> t]
       IN IF ok
          THEN /\ pending' = pending \cup {x}
               /\ taken' = taken \cup {[b |-> m.b, amt |-> m.amt, t |-> t, open |-> open,
                                        clock |-> Price]}
               /\ spent' = IF Format = "dutch" THEN spent \cup {m.b} ELSE spent
          ELSE UNCHANGED <<pending, taken, spent>>
    /\ UNCHANGED <<phase, now, step, sent, standing, stoodAt, funded, holds, restarts, awards,
                   stands, announced, closedBy, closeAt>>

(* The ledger answers the hold of x: placed (ok) or refused (no funds).    *)
HoldAnswer(x, ok) ==
    /\ x \in pending
    /\ pending' = pending \ {x}
    /\ IF ~ok
       THEN UNCHANGED <<standing, stoodAt, funded, holds, stands>>
       ELSE IF phase = "closed"  \* Dutch: an accept after the win, released at once
       THEN /\ funded' = funded \cup {x}
            /\ UNCHANGED <<standing, stoodAt, holds, stands>>
       ELSE /\ funded' = funded \cup {x}
            /\ IF Format = "dutch"
               THEN /\ holds' = holds \cup {x}
                    /\ UNCHANGED <<standing, stoodAt, stands>>
               ELSE IF standing = None \/ x.amt > standing.amt
               THEN /\ standing' = x
                    /\ stoodAt' = now
                    /\ stands' = Append(stands, [b |-> x.b, amt |-> x.amt, t |-> x.t, at |-> now,
                                                   open |-> phase = "open"])
                    /\ holds' = IF standing = None \/ Variant = "outbid_hold_kept"
                                THEN holds \cup {x}
                                ELSE (holds \ {standing}) \cup {x}
               ELSE UNCHANGED <<standing, stoodAt, holds, stands>>  \* outbid already
    /\ UNCHANGED <<phase, now, step, net, sent, recv, spent, restarts, awards, taken,
                   announced, closedBy, closeAt>>

(* English: time passes while no timer is due.                             *)
Tick ==
    /\ Format = "english" /\ phase = "open"
    /\ now < Deadline /\ now < QuietAt
    /\ now' = now + 1
    /\ UNCHANGED <<phase, step, net, sent, recv, pending, standing, stoodAt, funded, spent,
                   holds, restarts, awards, taken, stands, announced, closedBy, closeAt>>

(* Dutch: the clock falls one step (the tick into FloorStep closes).       *)
ClockTick ==
    /\ Format = "dutch" /\ phase = "open"
    /\ step' = step + 1
    /\ IF step + 1 < FloorStep
       THEN /\ announced' = Append(announced, IF Start - Decrement * (step + 1) > Reserve
                                              THEN Start - Decrement * (step + 1) ELSE Reserve)
            /\ UNCHANGED <<phase, closedBy>>
       ELSE /\ phase' = "closing"
            /\ closedBy' = "floor"
            /\ UNCHANGED announced
    /\ UNCHANGED <<now, net, sent, recv, pending, standing, stoodAt, funded, spent, holds,
                   restarts, awards, taken, stands, closeAt>>

CloseBy(why) ==
    /\ phase' = "closing"
    /\ closedBy' = why
    /\ closeAt' = now
    /\ UNCHANGED <<now, step, net, sent, recv, pending, standing, stoodAt, funded, spent,
                   holds, restarts, awards, taken, stands, announced>>

QuietClose == Format = "english" /\ phase = "open" /\ now >= QuietAt /\ CloseBy("quiet")

DeadlineClose ==
    /\ phase = "open"
    /\ Format = "english" => now = Deadline
    /\ CloseBy("deadline")

(* The earliest funded accept wins once no earlier one is being placed,    *)
(* whether the clock is still running or has closed (found by trace       *)
(* validation: the core decides in "closing" as soon as the earliest       *)
(* accept is funded; this spec waited for every pending hold there).       *)
DutchWinner ==
    {f \in funded : \A y \in funded : f.t <= y.t}

DutchDecidable ==
    \/ phase = "closing" /\ pending = {}
    \/ /\ phase \in {"open", "closing"} /\ funded # {}
       /\ \/ Variant = "no_wait_for_earlier"
          \/ \A p \in pending : \A f \in DutchWinner : p.t > f.t

Decide ==
    /\ phase # "closed"
    /\ IF Format = "english" THEN phase = "closing" /\ pending = {} ELSE DutchDecidable
    /\ phase' = "closed"
    /\ IF Format = "english"
       THEN /\ awards' = IF standing = None THEN {}
                         ELSE {[b |-> standing.b, amt |-> standing.amt, t |-> standing.t,
                                price |-> standing.amt]}
            /\ holds' = holds \ {standing}  \* settled
       ELSE /\ awards' = {[b |-> f.b, amt |-> f.amt, t |-> f.t, price |-> f.amt]
                            : f \in DutchWinner}
            /\ holds' = IF Variant = "dutch_loser_kept"
                        THEN holds \ DutchWinner ELSE {}  \* winner settled, others released
    /\ closeAt' = IF closedBy = "" THEN now ELSE closeAt
    /\ UNCHANGED <<now, step, net, sent, recv, pending, standing, stoodAt, funded, spent,
                   restarts, taken, stands, announced, closedBy>>

(* Dutch: the auctioneer restarts from its records and announces the price. *)
Restart ==
    /\ Format = "dutch" /\ phase = "open" /\ restarts < MaxRestarts
    /\ restarts' = restarts + 1
    /\ step' = IF Variant = "clock_reset" THEN 0 ELSE step
    /\ announced' = Append(announced,
                           IF Variant = "clock_reset" THEN Start ELSE Price)
    /\ UNCHANGED <<phase, now, net, sent, recv, pending, standing, stoodAt, funded, spent,
                   holds, awards, taken, stands, closedBy, closeAt>>

Done == phase = "closed" /\ pending = {} /\ UNCHANGED vars

AmountsOf(b) == IF Format = "english" THEN 0..MaxAmount ELSE Reserve..Start

Next ==
    \/ \E b \in Bidders : \E v \in AmountsOf(b) : SendBid(b, v)
    \/ \E m \in net, keep \in BOOLEAN : Receive(m, keep)
    \/ \E x \in pending, ok \in BOOLEAN : HoldAnswer(x, ok)
    \/ Tick \/ ClockTick \/ QuietClose \/ DeadlineClose \/ Decide \/ Restart
    \/ Done

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
TypeOK ==
    /\ phase \in {"open", "closing", "closed"}
    /\ recv \in 0..MaxRecv
    /\ closedBy \in {"", "quiet", "deadline", "floor"}

OneWinner == Cardinality(awards) <= 1

(* No bid or accept is taken (escrowed) once the auction has closed.        *)
NoLateBid == \A x \in taken : x.open

(* English: the winner pays its bid, the last standing bid announced.      *)
WinnerPaysStanding ==
    \A a \in awards : Format = "english" =>
        /\ stands # <<>>
        /\ a.b = stands[Len(stands)].b /\ a.amt = stands[Len(stands)].amt
        /\ a.price = a.amt

(* English: the winner's bid is the best bid whose hold was placed.        *)
WinnerHasBestBid ==
    Format = "english" /\ phase = "closed" =>
        (funded = {} <=> awards = {}) /\
        \A a \in awards : \A f \in funded : f.amt <= a.amt

(* English: each standing bid beats the one before by MinIncrement (so a   *)
(* standing bid never decreases) and meets the reserve.                    *)
StandingRises ==
    /\ \A i \in 1..Len(stands) : stands[i].amt >= Reserve
    /\ \A i \in 2..Len(stands) : stands[i].amt >= stands[i - 1].amt + MinIncrement

(* English: the only open holds are the standing bid's and those being     *)
(* placed — every outbid hold was released; at most one per bidder.        *)
OutbidReleased ==
    /\ \A h \in holds : h = standing \/ h \in pending
    /\ \A h1, h2 \in holds : h1.b = h2.b => h1 = h2

(* English: the quiet close comes Quiet ticks after the last stand at the  *)
(* earliest (the start, if nothing stood).                                 *)
QuietRespected ==
    LET before == {i \in 1..Len(stands) : stands[i].open}
        last == IF before = {} THEN 0 ELSE Max({stands[i].at : i \in before})
    IN closedBy = "quiet" => closeAt >= last + Quiet

(* Dutch: the winner pays the price the clock showed at its accept.        *)
DutchPriceRule ==
    \A a \in awards : Format = "dutch" =>
        \E x \in taken : x.b = a.b /\ x.t = a.t /\ x.clock = a.price /\ a.price >= Reserve

(* Dutch: no accept received before the winner's got its hold.             *)
FirstAcceptWins ==
    \A a \in awards : Format = "dutch" => \A f \in funded : a.t <= f.t

(* Dutch: the price never rises (across restarts too).                     *)
PriceNeverRises ==
    \A i \in 1..Len(announced) : \A j \in i..Len(announced) : announced[j] <= announced[i]

(* Both: once decided, no hold is left open: the winner's settled, every    *)
(* loser's released.                                                        *)
LosersReleased == phase = "closed" => holds = {}

(* Reachability: each must be violated (specs/reach/).                      *)
NeverOutbid == Len(stands) < 2
NeverQuietClose == ~(phase = "closed" /\ closedBy = "quiet" /\ awards # {})
NeverDutchWinAboveReserve == ~\E a \in awards : a.price > Reserve
NeverDutchNoSale == ~(phase = "closed" /\ closedBy = "floor" /\ awards = {})

Symmetry == Permutations(Bidders)
=============================================================================
