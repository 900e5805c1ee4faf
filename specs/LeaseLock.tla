----------------------------- MODULE LeaseLock -----------------------------
(***************************************************************************)
(* A lease lock with fencing tokens over an unreliable network.            *)
(*                                                                         *)
(* One lock server grants leases of TTL server-local time units to         *)
(* clients; every grant carries a strictly larger fencing token. A fenced  *)
(* resource accepts a write only if its token is at least the highest it   *)
(* has accepted.                                                           *)
(*                                                                         *)
(* Network: msgs is the set of every message ever sent and a delivery does *)
(* not remove it, so messages may be lost (never delivered), duplicated    *)
(* (delivered again) and reordered or delayed (delivered at any later      *)
(* point).                                                                 *)
(*                                                                         *)
(* Time and drift: real time advances in ticks (Tick). In one tick every   *)
(* node's local clock advances by some amount in D-Delta .. D+Delta, so    *)
(* each clock's rate is within 1 +/- Rho of real time, Rho = Delta/D. The  *)
(* model keeps no absolute clocks, only remaining local durations, which   *)
(* keeps the state space finite.                                           *)
(*                                                                         *)
(* The safety argument, mirrored by the implementation: a client that sent *)
(* its request at local time s treats the lease as valid until local time  *)
(* s + Validity, where Validity = TTL * (1 - Rho) / (1 + Rho). The grant   *)
(* happened after the send, and the server waits TTL of its own time,      *)
(* which is at least TTL / (1 + Rho) real time, before it grants again;    *)
(* the client's Validity of local time is at most Validity / (1 - Rho) =   *)
(* TTL / (1 + Rho) real time. Renewals are measured the same way.          *)
(*                                                                         *)
(* Observer history. Ghost variables record what an outside observer of  *)
(* the system sees, and the safety invariants are stated over that record *)
(* rather than over the protocol's own variables: every grant (holder and *)
(* token); every entitled interval (the span during which a client may act *)
(* on the resource, from the step that made it entitled to the step that   *)
(* ended it, with the lease it belongs to); every write the resource       *)
(* accepted (writer, token, and the entitled interval it was sent in).     *)
(* Real time is the order of steps in a behaviour, Tick being the passage *)
(* of one unit; two intervals overlap when one opens before the other has *)
(* closed. The ghosts never influence the protocol variables.             *)
(*                                                                         *)
(* Variant selects a deliberate bug for the mutant checks (specs/broken/);*)
(* the protocol proper is Variant = "correct".                             *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Clients,    \* client ids (model values)
    None,       \* model value: no holder
    TTL,        \* lease duration in server-local time units
    D,          \* nominal local advance per real tick
    Delta,      \* maximal deviation of one tick's local advance (drift bound)
    MaxReq,     \* bound on requests per client (model size)
    MaxToken,   \* bound on grants (model size)
    Variant     \* "correct" or one of Mutants

Mutants == {
    "grant_unexpired",   \* the server grants while another client's lease is live
    "no_drift",          \* the client trusts TTL on its own clock (no drift margin)
    "no_fencing",        \* the resource accepts every token
    "token_volatile",    \* the server does not persist its token across a restart
    "no_quiet",          \* a restarted server grants at once (no quiet period)
    "renew_released",    \* a released lease comes back when a late renewal answer arrives
    "write_after_lapse", \* the client keeps writing with the token of a lapsed lease
    "late_grant"}        \* the client takes any grant addressed to it, even for an old request

ASSUME TTL \in Nat \ {0} /\ D \in Nat \ {0} /\ Delta \in 0 .. D - 1
ASSUME Variant \in {"correct"} \cup Mutants

(* The faults a configuration lets happen; a config may narrow them       *)
(* (CONSTANT Faults <- NoServerRestart) to keep a model small.             *)
Faults == {"client_crash", "server_restart"}
NoServerRestart == {"client_crash"}
NoClientCrash == {"server_restart"}

(* Client-local validity of a lease measured from the request's send time. *)
Validity ==
    IF Variant = "no_drift" THEN TTL
    ELSE (TTL * (D - Delta)) \div (D + Delta)

VARIABLES
    srvHolder,      \* client holding the lease per the server, or None
    srvToken,       \* last token granted (persisted across restarts)
    srvRemaining,   \* server-local time left on the current lease
    srvQuiet,       \* server-local time left in the post-restart quiet period
    srvLastReq,     \* per client, highest request id processed (volatile)
    cState,         \* "idle", "acquiring" or "held"
    cReq,           \* per client, last request id issued (persisted)
    cAge,           \* local time since the outstanding acquire was sent (capped)
    cToken,         \* token of the held lease (0 when none)
    cRemaining,     \* local validity left on the held lease
    cRenewReq,      \* request id of the outstanding renewal (0 when none)
    cRenewAge,      \* local time since that renewal was sent (capped)
    msgs,           \* every message ever sent
    resHighest,     \* highest token the fenced resource has accepted
    resRejected,    \* the resource has refused a stale write (for the VIEW and reachability)
    \* ---- observer history (ghost) ----
    grants,         \* every grant, in order: [to |-> client, token |-> token]
    intervals,      \* every entitled interval, in opening order (see Observe)
    accepted,       \* writes the resource accepted, in order (see ResourceOnWrite)
    cTicks          \* per client, ticks its open interval has lasted, capped at 2 (reachability only)

srvVars == <<srvHolder, srvToken, srvRemaining, srvQuiet, srvLastReq>>
cVars == <<cState, cReq, cAge, cToken, cRemaining, cRenewReq, cRenewAge>>
resVars == <<resHighest, resRejected>>
protoVars == <<srvVars, cVars, msgs, resVars>>
vars == <<protoVars, grants, intervals, accepted, cTicks>>

Max(a, b) == IF a > b THEN a ELSE b
Min(a, b) == IF a < b THEN a ELSE b
Sat(x) == Max(0, x)
MaxOf(S) == CHOOSE x \in S : \A y \in S : y <= x

Message ==
    [type : {"acquire"}, from : Clients, req : 1 .. MaxReq]
    \cup [type : {"renew"}, from : Clients, req : 1 .. MaxReq, token : 1 .. MaxToken]
    \cup [type : {"release"}, from : Clients, token : 1 .. MaxToken]
    \cup [type : {"granted", "renewed"}, to : Clients, req : 1 .. MaxReq, token : 1 .. MaxToken]
    \cup [type : {"denied"}, to : Clients, req : 1 .. MaxReq]
    \cup [type : {"write"}, from : Clients, token : 0 .. MaxToken, iv : Nat]

TypeOK ==
    /\ srvHolder \in Clients \cup {None}
    /\ srvToken \in 0 .. MaxToken
    /\ srvRemaining \in 0 .. TTL
    /\ srvQuiet \in 0 .. TTL
    /\ srvLastReq \in [Clients -> 0 .. MaxReq]
    /\ cState \in [Clients -> {"idle", "acquiring", "held"}]
    /\ cReq \in [Clients -> 0 .. MaxReq]
    /\ cAge \in [Clients -> 0 .. Validity]
    /\ cToken \in [Clients -> 0 .. MaxToken]
    /\ cRemaining \in [Clients -> 0 .. Validity]
    /\ cRenewReq \in [Clients -> 0 .. MaxReq]
    /\ cRenewAge \in [Clients -> 0 .. Validity]
    /\ \A m \in msgs : m \in Message
    /\ resHighest \in 0 .. MaxToken
    /\ resRejected \in BOOLEAN
    /\ \A k \in DOMAIN grants : grants[k].to \in Clients /\ grants[k].token \in 1 .. MaxToken
    /\ cTicks \in [Clients -> 0 .. 2]

Init ==
    /\ srvHolder = None
    /\ srvToken = 0
    /\ srvRemaining = 0
    /\ srvQuiet = 0
    /\ srvLastReq = [c \in Clients |-> 0]
    /\ cState = [c \in Clients |-> "idle"]
    /\ cReq = [c \in Clients |-> 0]
    /\ cAge = [c \in Clients |-> 0]
    /\ cToken = [c \in Clients |-> 0]
    /\ cRemaining = [c \in Clients |-> 0]
    /\ cRenewReq = [c \in Clients |-> 0]
    /\ cRenewAge = [c \in Clients |-> 0]
    /\ msgs = {}
    /\ resHighest = 0
    /\ resRejected = FALSE
    /\ grants = <<>>
    /\ intervals = <<>>
    /\ accepted = <<>>
    /\ cTicks = [c \in Clients |-> 0]

(* A client may act on the resource exactly while this holds. *)
Entitled(c) == cState[c] = "held" /\ cRemaining[c] > 0

(* The entitled interval client c has open, or 0 (observer history). *)
OpenInterval(c) ==
    LET ks == {k \in DOMAIN intervals : intervals[k].c = c /\ ~intervals[k].closed}
    IN IF ks = {} THEN 0 ELSE MaxOf(ks)

(* The (last) grant of token t to client c in grant log g, as an index, or 0. *)
LeaseIn(g, c, t) ==
    LET ks == {k \in DOMAIN g : g[k].to = c /\ g[k].token = t}
    IN IF ks = {} THEN 0 ELSE MaxOf(ks)

---------------------------------------------------------------------------
(* Client actions *)

ClientAcquire(c) ==
    /\ cState[c] \in {"idle", "acquiring"}
    /\ cReq[c] < MaxReq
    /\ cReq' = [cReq EXCEPT ![c] = @ + 1]
    /\ cState' = [cState EXCEPT ![c] = "acquiring"]
    /\ cAge' = [cAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "acquire", from |-> c, req |-> cReq[c] + 1]}
    /\ UNCHANGED <<srvVars, cToken, cRemaining, cRenewReq, cRenewAge, resVars, grants, accepted>>

ClientRenew(c) ==
    /\ Entitled(c)
    /\ cReq[c] < MaxReq
    /\ cReq' = [cReq EXCEPT ![c] = @ + 1]
    /\ cRenewReq' = [cRenewReq EXCEPT ![c] = cReq[c] + 1]
    /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "renew", from |-> c, req |-> cReq[c] + 1,
                           token |-> cToken[c]]}
    /\ UNCHANGED <<srvVars, cState, cAge, cToken, cRemaining, resVars, grants, accepted>>

(* Dropping the lease locally before telling the server. *)
ClientRelease(c) ==
    /\ cState[c] = "held"
    /\ cState' = [cState EXCEPT ![c] = "idle"]
    /\ cRemaining' = [cRemaining EXCEPT ![c] = 0]
    /\ IF Variant = "renew_released"
          \* BROKEN: the client keeps the lease's token and outstanding renewal
          THEN UNCHANGED <<cToken, cRenewReq, cRenewAge>>
          ELSE /\ cToken' = [cToken EXCEPT ![c] = 0]
               /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
               /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "release", from |-> c, token |-> cToken[c]]}
    /\ UNCHANGED <<srvVars, cReq, cAge, resVars, grants, accepted>>

(* A write carries the writer's token; iv is ghost: the entitled interval   *)
(* the writer has open when it sends (0 if none), as the observer sees it. *)
ClientWrite(c) ==
    /\ IF Variant = "write_after_lapse"
          THEN cToken[c] > 0  \* BROKEN: "I have a token" instead of "I am entitled"
          ELSE Entitled(c)
    /\ msgs' = msgs \cup {[type |-> "write", from |-> c, token |-> cToken[c],
                           iv |-> OpenInterval(c)]}
    /\ UNCHANGED <<srvVars, cVars, resVars, grants, accepted>>

(* A crash loses everything but the persisted request counter. *)
ClientCrash(c) ==
    /\ "client_crash" \in Faults
    /\ cState' = [cState EXCEPT ![c] = "idle"]
    /\ cAge' = [cAge EXCEPT ![c] = 0]
    /\ cToken' = [cToken EXCEPT ![c] = 0]
    /\ cRemaining' = [cRemaining EXCEPT ![c] = 0]
    /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
    /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ UNCHANGED <<srvVars, cReq, msgs, resVars, grants, accepted>>

ClientOnGranted(c) ==
    \E m \in msgs :
        /\ m.type = "granted" /\ m.to = c
        /\ cState[c] = "acquiring"
        /\ m.req = cReq[c] \/ Variant = "late_grant"  \* BROKEN: any request's grant
        /\ cState' = [cState EXCEPT ![c] = IF Validity > cAge[c] THEN "held" ELSE "idle"]
        /\ cToken' = [cToken EXCEPT ![c] = IF Validity > cAge[c] THEN m.token ELSE 0]
        /\ cRemaining' = [cRemaining EXCEPT ![c] = Sat(Validity - cAge[c])]
        /\ cAge' = [cAge EXCEPT ![c] = 0]
        /\ UNCHANGED <<srvVars, cReq, cRenewReq, cRenewAge, msgs, resVars, grants, accepted>>

ClientOnRenewed(c) ==
    \E m \in msgs :
        /\ m.type = "renewed" /\ m.to = c
        /\ cState[c] = "held" \/ Variant = "renew_released"  \* BROKEN: also after release
        /\ cRenewReq[c] # 0
        /\ m.req = cRenewReq[c] /\ m.token = cToken[c]
        /\ cState' = [cState EXCEPT ![c] = "held"]
        /\ cRemaining' = [cRemaining EXCEPT ![c] = Max(@, Sat(Validity - cRenewAge[c]))]
        /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
        /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
        /\ UNCHANGED <<srvVars, cReq, cAge, cToken, msgs, resVars, grants, accepted>>

ClientOnDenied(c) ==
    \E m \in msgs :
        /\ m.type = "denied" /\ m.to = c
        /\ \/ /\ cState[c] = "acquiring" /\ m.req = cReq[c]
              /\ cState' = [cState EXCEPT ![c] = "idle"]
              /\ cAge' = [cAge EXCEPT ![c] = 0]
              /\ UNCHANGED <<cRenewReq, cRenewAge>>
           \/ /\ cState[c] = "held" /\ cRenewReq[c] # 0 /\ m.req = cRenewReq[c]
              /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
              /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
              /\ UNCHANGED <<cState, cAge>>
        /\ UNCHANGED <<srvVars, cReq, cToken, cRemaining, msgs, resVars, grants, accepted>>

---------------------------------------------------------------------------
(* Server actions *)

Fresh(m) == m.req > srvLastReq[m.from]

Grantable(c) ==
    /\ srvQuiet = 0
    /\ \/ srvHolder = None
       \/ srvRemaining = 0
       \/ srvHolder = c
       \/ Variant = "grant_unexpired"  \* BROKEN: grants over a live lease

ServerOnAcquire ==
    \E m \in msgs :
        /\ m.type = "acquire" /\ Fresh(m)
        /\ srvLastReq' = [srvLastReq EXCEPT ![m.from] = m.req]
        /\ IF Grantable(m.from) /\ Len(grants) < MaxToken /\ srvToken < MaxToken
              THEN /\ srvToken' = srvToken + 1
                   /\ srvHolder' = m.from
                   /\ srvRemaining' = TTL
                   /\ grants' = Append(grants, [to |-> m.from, token |-> srvToken + 1])
                   /\ msgs' = msgs \cup {[type |-> "granted", to |-> m.from,
                                          req |-> m.req, token |-> srvToken + 1]}
              ELSE /\ UNCHANGED <<srvToken, srvHolder, srvRemaining, grants>>
                   /\ msgs' = msgs \cup {[type |-> "denied", to |-> m.from, req |-> m.req]}
        /\ UNCHANGED <<srvQuiet, cVars, resVars, accepted>>

ServerOnRenew ==
    \E m \in msgs :
        /\ m.type = "renew" /\ Fresh(m)
        /\ srvLastReq' = [srvLastReq EXCEPT ![m.from] = m.req]
        /\ IF srvHolder = m.from /\ m.token = srvToken /\ srvRemaining > 0
              THEN /\ srvRemaining' = TTL
                   /\ msgs' = msgs \cup {[type |-> "renewed", to |-> m.from,
                                          req |-> m.req, token |-> m.token]}
              ELSE /\ UNCHANGED srvRemaining
                   /\ msgs' = msgs \cup {[type |-> "denied", to |-> m.from, req |-> m.req]}
        /\ UNCHANGED <<srvHolder, srvToken, srvQuiet, cVars, resVars, grants, accepted>>

ServerOnRelease ==
    \E m \in msgs :
        /\ m.type = "release"
        /\ srvHolder = m.from /\ m.token = srvToken
        /\ srvHolder' = None
        /\ srvRemaining' = 0
        /\ UNCHANGED <<srvToken, srvQuiet, srvLastReq, cVars, msgs, resVars, grants, accepted>>

(* The server loses its volatile state; it keeps the last token and, if it  *)
(* ever granted a lease, not knowing which may still be valid, grants      *)
(* nothing for TTL.                                                        *)
ServerRestart ==
    /\ "server_restart" \in Faults
    /\ srvHolder' = None
    /\ srvRemaining' = 0
    /\ srvQuiet' = IF srvToken > 0 /\ Variant # "no_quiet" THEN TTL ELSE 0
    /\ srvLastReq' = [c \in Clients |-> 0]
    /\ srvToken' = IF Variant = "token_volatile" THEN 0 ELSE srvToken  \* BROKEN: token lost
    /\ UNCHANGED <<cVars, msgs, resVars, grants, accepted>>

---------------------------------------------------------------------------
(* The fenced resource. accepted (ghost) records each accepted write: the  *)
(* writer, its token, the interval it was sent in and that interval's      *)
(* lease (0 when it was sent outside any); a repeat of the previous entry  *)
(* is not recorded again, so the log stays finite.                         *)

ResourceOnWrite ==
    \E m \in msgs :
        /\ m.type = "write"
        /\ IF m.token >= resHighest \/ Variant = "no_fencing"
              THEN LET e == [from |-> m.from, token |-> m.token, iv |-> m.iv,
                             lease |-> IF m.iv = 0 THEN 0 ELSE intervals[m.iv].lease]
                   IN /\ resHighest' = Max(resHighest, m.token)
                      /\ accepted' = IF accepted # <<>> /\ accepted[Len(accepted)] = e
                                        THEN accepted ELSE Append(accepted, e)
                      /\ UNCHANGED resRejected
              ELSE /\ resRejected' = TRUE
                   /\ UNCHANGED <<resHighest, accepted>>
        /\ UNCHANGED <<srvVars, cVars, msgs, grants>>

---------------------------------------------------------------------------
(* Time *)

Advance == D - Delta .. D + Delta

(* Only clocks that time something need a choice of advance; idle nodes'   *)
(* advances change nothing, and fixing them saves TLC identical successors. *)
Timing(n) ==
    IF n = "server" THEN srvRemaining > 0 \/ srvQuiet > 0
    ELSE cState[n] # "idle"

Tick ==
    \E adv \in [Clients \cup {"server"} -> Advance] :
        /\ \A n \in DOMAIN adv : ~Timing(n) => adv[n] = D
        /\ srvRemaining' = Sat(srvRemaining - adv["server"])
        /\ srvQuiet' = Sat(srvQuiet - adv["server"])
        /\ LET rem == [c \in Clients |-> Sat(cRemaining[c] - adv[c])]
               lapsed == {c \in Clients : cState[c] = "held" /\ rem[c] = 0}
           IN /\ cRemaining' = rem
              /\ cState' = [c \in Clients |-> IF c \in lapsed THEN "idle" ELSE cState[c]]
              /\ cToken' = [c \in Clients |->
                     IF c \in lapsed /\ Variant # "write_after_lapse" THEN 0 ELSE cToken[c]]
              /\ cRenewReq' = [c \in Clients |-> IF c \in lapsed THEN 0 ELSE cRenewReq[c]]
              /\ cRenewAge' = [c \in Clients |->
                     IF c \in lapsed \/ cRenewReq[c] = 0 THEN 0
                     ELSE Min(Validity, cRenewAge[c] + adv[c])]
              /\ cAge' = [c \in Clients |->
                     IF cState[c] = "acquiring" THEN Min(Validity, cAge[c] + adv[c]) ELSE 0]
              \* observer: the lapsed clients' intervals end; the others' last a tick more
              /\ intervals' = [k \in DOMAIN intervals |->
                     [intervals[k] EXCEPT !.closed = @ \/ intervals[k].c \in lapsed]]
              /\ cTicks' = [c \in Clients |->
                     IF c \in lapsed \/ ~Entitled(c) THEN 0 ELSE Min(2, cTicks[c] + 1)]
        /\ UNCHANGED <<srvHolder, srvToken, srvLastReq, cReq, msgs, resVars, grants, accepted>>

---------------------------------------------------------------------------
(* The observer. After every step it compares who is entitled before and   *)
(* after: an interval closes when its client stops being entitled (lapse,  *)
(* release, crash) or changes token, and one opens when a client becomes   *)
(* entitled, recording the lease it belongs to (the grant of that token to *)
(* that client, 0 if there is none) and which intervals were still open at *)
(* that moment. No action makes two clients entitled at once.              *)

Stops(c) == Entitled(c) /\ (~Entitled(c)' \/ cToken'[c] # cToken[c])
Starts(c) == Entitled(c)' /\ (~Entitled(c) \/ cToken'[c] # cToken[c])

(* Every action but Tick changes at most one client; Tick (above) ends the  *)
(* intervals of the clients whose lease lapses and counts ticks itself.     *)
(* The updates are written with EXCEPT rather than function constructors,  *)
(* which TLC evaluates lazily, after the step, where primes mean nothing.  *)
Observe ==
    LET stop == {c \in Clients : Stops(c)}
        start == {c \in Clients : Starts(c)}
        closed == IF stop = {} THEN intervals
                  ELSE [intervals EXCEPT ![OpenInterval(CHOOSE c \in stop : TRUE)].closed = TRUE]
        open == {k \in DOMAIN closed : ~closed[k].closed}
    IN /\ Cardinality(stop) <= 1 /\ Cardinality(start) <= 1
       /\ \/ start = {} /\ intervals' = closed
          \/ \E c \in start :
                LET t == cToken'[c] IN
                intervals' = Append(closed, [c |-> c, token |-> t,
                                             lease |-> LeaseIn(grants', c, t),
                                             others |-> open, closed |-> FALSE])
       /\ \/ stop \cup start = {} /\ UNCHANGED cTicks
          \/ \E c \in stop \cup start : cTicks' = [cTicks EXCEPT ![c] = 0]

---------------------------------------------------------------------------

Next ==
    \/ /\ \/ \E c \in Clients :
             \/ ClientAcquire(c)
             \/ ClientRenew(c)
             \/ ClientRelease(c)
             \/ ClientWrite(c)
             \/ ClientCrash(c)
             \/ ClientOnGranted(c)
             \/ ClientOnRenewed(c)
             \/ ClientOnDenied(c)
          \/ ServerOnAcquire
          \/ ServerOnRenew
          \/ ServerOnRelease
          \/ ServerRestart
          \/ ResourceOnWrite
       /\ Observe
    \/ Tick

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Clients)

(* A message that can never again enable an action is dead: responses to   *)
(* requests the client has moved past, releases of superseded tokens, and  *)
(* stale writes once a refusal has been recorded. Requests stay live: a    *)
(* server restart forgets which ones it processed. States that differ only *)
(* in dead messages have the same future, so TLC may identify them. The    *)
(* VIEW leaves out cTicks, which only the reachability checks read         *)
(* (ReachView keeps it).                                                   *)
Dead(m) ==
    \/ m.type \in {"granted", "renewed", "denied"} /\ m.req < cReq[m.to]
                                                   /\ Variant \notin {"late_grant", "renew_released"}
    \/ m.type = "release" /\ m.token < srvToken /\ Variant # "token_volatile"
    \/ m.type = "write" /\ m.token < resHighest /\ resRejected
                        /\ Variant \notin {"no_fencing", "token_volatile"}
LiveMsgs == {m \in msgs : ~Dead(m)}
View == <<srvVars, cVars, LiveMsgs, resVars, grants, intervals, accepted>>
ReachView == <<View, cTicks>>

(* Bounds for the mutants whose histories could otherwise grow forever. *)
HistoryBound == Len(intervals) <= MaxToken + 2 /\ Len(accepted) <= MaxToken + 2

---------------------------------------------------------------------------
(* Safety, over the observer history. *)

(* No two entitled intervals overlap: no interval opened while another    *)
(* was still open.                                                         *)
MutualExclusion ==
    \A k \in DOMAIN intervals : intervals[k].others = {}

(* Every entitled interval belongs to a lease the server granted to that   *)
(* client with that token, and intervals open in grant order, each lease   *)
(* at most once (an ended lease never comes back).                         *)
IntervalsFollowGrants ==
    \A k \in DOMAIN intervals :
        /\ intervals[k].lease > 0
        /\ k > 1 => intervals[k - 1].lease < intervals[k].lease

(* Tokens strictly increase in grant order. *)
FencingMonotonic ==
    \A i, j \in DOMAIN grants : i < j => grants[i].token < grants[j].token

(* The resource accepts writes in lease order: once it accepted a write    *)
(* sent under a lease, it never accepts one sent under an earlier lease.   *)
AcceptedWritesInLeaseOrder ==
    \A i, j \in DOMAIN accepted : i < j => accepted[i].lease <= accepted[j].lease

(* Every accepted write was sent by a client inside an entitled interval,  *)
(* with the token of that interval's lease.                                *)
AcceptedWritesFromHolders ==
    \A k \in DOMAIN accepted :
        LET e == accepted[k] IN
        /\ e.iv # 0
        /\ intervals[e.iv].c = e.from
        /\ intervals[e.iv].token = e.token
        /\ e.lease > 0 /\ grants[e.lease].token = e.token

(* No client holds a token the server has not issued. *)
TokenBound == \A c \in Clients : cToken[c] <= srvToken

---------------------------------------------------------------------------
(* Reachability: each of these is expected to be VIOLATED (TLC finds a     *)
(* behaviour where the interesting thing happens), proving the safety      *)
(* checks are not vacuous. See specs/reach/.                               *)

(* Two clients contend: one holds the lease while the other asks for it. *)
NeverContended ==
    ~\E c1, c2 \in Clients : cState[c1] = "held" /\ cState[c2] = "acquiring"

(* The server hands the lease from one client straight to another: the    *)
(* first lease expired on the server without a release.                    *)
NeverRegrantedAfterExpiry ==
    [][~(srvHolder \in Clients /\ srvHolder' \in Clients /\ srvHolder' # srvHolder)]_vars

(* The resource refuses a stale write. *)
NeverStaleWriteRefused == ~resRejected

(* A client stays entitled, on one lease, across two ticks. *)
NeverSurvivesTwoTicks == \A c \in Clients : cTicks[c] < 2

(* A renewal answer extends an entitled client's lease. *)
NeverRenewalExtends ==
    [][\A c \in Clients :
         (Entitled(c) /\ Entitled(c)' /\ cToken'[c] = cToken[c])
            => cRemaining'[c] <= cRemaining[c]]_vars

(* A renewal races an expiry: the server renews a lease the client has     *)
(* already given up (it lapsed while the renewal was in flight).           *)
NeverRenewalLosesToExpiry ==
    [][~\E c \in Clients :
          /\ ~Entitled(c)
          /\ \E m \in msgs' \ msgs : m.type = "renewed" /\ m.to = c]_vars

(* A renewal races a server restart: the restarted server, not knowing the *)
(* lease, denies the renewal of a client that is still entitled.           *)
NeverRenewalRacesRestart ==
    [][~\E c \in Clients :
          /\ Entitled(c) /\ cRenewReq[c] # 0 /\ srvQuiet > 0
          /\ \E m \in msgs' \ msgs : m.type = "denied" /\ m.to = c /\ m.req = cRenewReq[c]]_vars

=============================================================================
