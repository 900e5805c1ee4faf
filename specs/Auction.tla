------------------------------- MODULE Auction ------------------------------
(***************************************************************************)
(* Sealed-bid auctions of trio_foundation.protocols.auction: first-price,  *)
(* second-price (Vickrey) and multi-unit uniform-price, as a constant.     *)
(*                                                                         *)
(* Bidders send sealed bids over a network that loses, duplicates and      *)
(* reorders them. The auctioneer accepts a bidder's first bid at or above  *)
(* the reserve received before the deadline (escrowing it), refuses the    *)
(* rest, and at the deadline awards the Units best bids (amount, then      *)
(* receipt order, then lower bidder id), settles the winners' escrow at    *)
(* the price and releases the losers'. The escrow's ledger is modelled as  *)
(* one state per bidder (specs/Ledger.tla checks the ledger itself).       *)
(*                                                                         *)
(* The invariants read what an observer records: every bid received with   *)
(* its receipt number and whether the auction was still open (`received`), *)
(* every bid accepted (`accepted`), the awards and the escrow states.      *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/): "late_bid_accepted",  *)
(* "first_price_in_vickrey", "loser_kept_in_escrow", "two_winners" (tied   *)
(* bids share a unit), "latest_tie_wins" (ties go to the later receipt).   *)
(***************************************************************************)
EXTENDS Integers, FiniteSets, TLC

CONSTANTS
    Bidders,    \* e.g. {1, 2, 3}
    MaxAmount,  \* bids are 0..MaxAmount
    Reserve,
    Units,
    Format,     \* "first_price" | "second_price" | "uniform"
    MaxBids,    \* bids a bidder may send (a second one is refused)
    MaxRecv,    \* receptions over the run (bounds duplication)
    Variant

ASSUME Format \in {"first_price", "second_price", "uniform"}
ASSUME Format # "uniform" => Units = 1
ASSUME Variant \in {"correct", "late_bid_accepted", "first_price_in_vickrey",
                    "loser_kept_in_escrow", "two_winners", "latest_tie_wins"}

VARIABLES
    phase,      \* "open" | "closed"
    net,        \* bid messages in flight: set of [b, amt]
    sent,       \* sent[b]: bids b has sent
    recv,       \* receptions so far (the receipt counter)
    bids,       \* accepted bids: set of [b, amt, t]
    esc,        \* esc[b]: "none" | "held" | "settled" | "released"
    awards,     \* set of [b, amt, unit, price]
    received,   \* ghost: every bid received: [b, amt, t, open]
    accepted,   \* ghost: every bid accepted: [b, amt, t, open]
    events      \* ghost: for reachability

vars == <<phase, net, sent, recv, bids, esc, awards, received, accepted, events>>

(* The stated order: higher amount, then earlier receipt, then lower id.  *)
Better(x, y) ==
    \/ x.amt > y.amt
    \/ x.amt = y.amt /\ x.t < y.t
    \/ x.amt = y.amt /\ x.t = y.t /\ x.b < y.b

(* The order the auctioneer applies (a mutant may get it wrong).          *)
ImplBetter(x, y) ==
    IF Variant = "latest_tie_wins"
    THEN x.amt > y.amt \/ (x.amt = y.amt /\ x.t > y.t)
    ELSE Better(x, y)

Rank(x, S) == Cardinality({y \in S : Better(y, x)})
ImplRank(x, S) == Cardinality({y \in S : ImplBetter(y, x)})

MaxOf(S) == CHOOSE m \in S : \A n \in S : n <= m

Init ==
    /\ phase = "open"
    /\ net = {}
    /\ sent = [b \in Bidders |-> 0]
    /\ recv = 0
    /\ bids = {}
    /\ esc = [b \in Bidders |-> "none"]
    /\ awards = {}
    /\ received = {}
    /\ accepted = {}
    /\ events = {}

SendBid(b, v) ==
    /\ sent[b] < MaxBids
    /\ sent' = [sent EXCEPT ![b] = @ + 1]
    /\ net' = net \cup {[b |-> b, amt |-> v]}
    /\ UNCHANGED <<phase, recv, bids, esc, awards, received, accepted, events>>

(* The auctioneer receives m; keep = TRUE models a duplicated message.     *)
Receive(m, keep) ==
    /\ m \in net /\ recv < MaxRecv
    /\ net' = IF keep THEN net ELSE net \ {m}
    /\ recv' = recv + 1
    /\ LET t == recv + 1
           open == phase = "open"
           ok == /\ open \/ Variant = "late_bid_accepted"
                 /\ ~\E x \in bids : x.b = m.b
                 /\ m.amt >= Reserve
       IN /\ received' = received \cup {[b |-> m.b, amt |-> m.amt, t |-> t, open |-> open]}
          /\ IF ok
             THEN /\ bids' = bids \cup {[b |-> m.b, amt |-> m.amt, t |-> t]}
                  /\ esc' = [esc EXCEPT ![m.b] = "held"]
                  /\ accepted' = accepted \cup
                        {[b |-> m.b, amt |-> m.amt, t |-> t, open |-> open]}
                  /\ UNCHANGED events
             ELSE /\ UNCHANGED <<bids, esc, accepted>>
                  /\ events' = IF open THEN events ELSE events \cup {"late_refused"}
    /\ UNCHANGED <<phase, sent, awards>>

Winners ==
    IF Variant = "two_winners"
    THEN {x \in bids : Cardinality({y \in bids : y.amt > x.amt}) < Units}
    ELSE {x \in bids : ImplRank(x, bids) < Units}

Unit(x) ==
    IF Variant = "two_winners" THEN Cardinality({y \in bids : y.amt > x.amt}) + 1
    ELSE ImplRank(x, bids) + 1

Losing == bids \ Winners

ClearingPrice ==
    IF Losing = {} THEN Reserve ELSE MaxOf({Reserve} \cup {x.amt : x \in Losing})

Price(x) ==
    IF Format = "first_price" \/ Variant = "first_price_in_vickrey" THEN x.amt
    ELSE ClearingPrice

(* The deadline fires: award, settle winners, release losers. *)
Close ==
    /\ phase = "open"
    /\ phase' = "closed"
    /\ awards' = {[b |-> x.b, amt |-> x.amt, unit |-> Unit(x), price |-> Price(x)]
                    : x \in Winners}
    /\ esc' = [b \in Bidders |->
                 IF \E x \in Winners : x.b = b THEN "settled"
                 ELSE IF esc[b] = "held" /\ Variant # "loser_kept_in_escrow"
                      THEN "released" ELSE esc[b]]
    /\ UNCHANGED <<net, sent, recv, bids, received, accepted, events>>

(* After the close nothing else matters: stutter (not a deadlock). *)
Done == phase = "closed" /\ UNCHANGED vars

Next ==
    \/ \E b \in Bidders, v \in 0..MaxAmount : SendBid(b, v)
    \/ \E m \in net, keep \in BOOLEAN : Receive(m, keep)
    \/ Close
    \/ Done

Spec == Init /\ [][Next]_vars

-----------------------------------------------------------------------------
(* What an observer computes from `received`: the valid bids are, per       *)
(* bidder, the first one at or above the reserve received while open.      *)
ValidBids ==
    {r \in received :
        /\ r.open /\ r.amt >= Reserve
        /\ ~\E q \in received : q.b = r.b /\ q.open /\ q.amt >= Reserve /\ q.t < r.t}

ValidLosing == {r \in ValidBids : Rank(r, ValidBids) >= Units}

ObservedClearing ==
    IF ValidLosing = {} THEN Reserve ELSE MaxOf({Reserve} \cup {r.amt : r \in ValidLosing})

TypeOK ==
    /\ phase \in {"open", "closed"}
    /\ esc \in [Bidders -> {"none", "held", "settled", "released"}]
    /\ recv \in 0..MaxRecv

OneWinnerPerUnit ==
    /\ Cardinality(awards) <= Units
    /\ \A a1, a2 \in awards : a1 # a2 => a1.b # a2.b /\ a1.unit # a2.unit

WinnerHasBestBid ==
    phase = "closed" =>
        /\ \A a \in awards : \E r \in ValidBids : r.b = a.b /\ r.amt = a.amt
                                                 /\ Rank(r, ValidBids) < Units
        /\ \A r \in ValidBids : Rank(r, ValidBids) < Units => \E a \in awards : a.b = r.b

PriceRule ==
    \A a \in awards :
        /\ Reserve <= a.price /\ a.price <= a.amt
        /\ Format = "first_price" => a.price = a.amt
        /\ Format # "first_price" => a.price = ObservedClearing

NoLateBid == \A x \in accepted : x.open

LosersReleased ==
    phase = "closed" =>
        \A b \in Bidders :
            /\ esc[b] # "held"
            /\ esc[b] = "settled" <=> \E a \in awards : a.b = b

(* Reachability: each must be violated (specs/reach/). *)
NeverRivalBids == ~(phase = "closed" /\ Cardinality(bids) >= 2)
NeverTie == ~(phase = "closed" /\ \E x, y \in bids : x.b # y.b /\ x.amt = y.amt)
NeverLateRefused == "late_refused" \notin events

Symmetry == Permutations(Bidders)
=============================================================================
