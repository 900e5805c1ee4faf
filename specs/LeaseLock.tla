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
(* Variant selects a deliberate bug for the broken-variant checks; the     *)
(* protocol proper is Variant = "correct".                                 *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Clients,    \* client ids (model values)
    None,       \* model value: no holder
    TTL,        \* lease duration in server-local time units
    D,          \* nominal local advance per real tick
    Delta,      \* maximal deviation of one tick's local advance (drift bound)
    MaxReq,     \* bound on requests per client (model size)
    MaxToken,   \* bound on tokens granted (model size)
    Variant     \* "correct", "grant_unexpired", "no_drift", "no_fencing"

ASSUME TTL \in Nat \ {0} /\ D \in Nat \ {0} /\ Delta \in 0 .. D - 1
ASSUME Variant \in {"correct", "grant_unexpired", "no_drift", "no_fencing"}

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
    resHighest,     \* highest token the fenced resource has accepted (ghost)
    resLast,        \* token of the last write the resource accepted
    resRejected,    \* a stale write was refused (ghost, for reachability)
    grantLog,       \* tokens in grant order (ghost)
    expiredRegrant  \* a lease expired on the server and went to another (ghost)

srvVars == <<srvHolder, srvToken, srvRemaining, srvQuiet, srvLastReq>>
cVars == <<cState, cReq, cAge, cToken, cRemaining, cRenewReq, cRenewAge>>
resVars == <<resHighest, resLast, resRejected>>
ghostVars == <<grantLog, expiredRegrant>>
vars == <<srvVars, cVars, msgs, resVars, ghostVars>>

Max(a, b) == IF a > b THEN a ELSE b
Min(a, b) == IF a < b THEN a ELSE b
Sat(x) == Max(0, x)

Message ==
    [type : {"acquire"}, from : Clients, req : 1 .. MaxReq]
    \cup [type : {"renew"}, from : Clients, req : 1 .. MaxReq, token : 1 .. MaxToken]
    \cup [type : {"release"}, from : Clients, token : 1 .. MaxToken]
    \cup [type : {"granted", "renewed"}, to : Clients, req : 1 .. MaxReq, token : 1 .. MaxToken]
    \cup [type : {"denied"}, to : Clients, req : 1 .. MaxReq]
    \cup [type : {"write"}, from : Clients, token : 1 .. MaxToken]

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
    /\ resLast \in 0 .. MaxToken
    /\ resRejected \in BOOLEAN

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
    /\ resLast = 0
    /\ resRejected = FALSE
    /\ grantLog = <<>>
    /\ expiredRegrant = FALSE

(* A client may act on the resource exactly while this holds. *)
Entitled(c) == cState[c] = "held" /\ cRemaining[c] > 0

---------------------------------------------------------------------------
(* Client actions *)

ClientAcquire(c) ==
    /\ cState[c] \in {"idle", "acquiring"}
    /\ cReq[c] < MaxReq
    /\ cReq' = [cReq EXCEPT ![c] = @ + 1]
    /\ cState' = [cState EXCEPT ![c] = "acquiring"]
    /\ cAge' = [cAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "acquire", from |-> c, req |-> cReq[c] + 1]}
    /\ UNCHANGED <<srvVars, cToken, cRemaining, cRenewReq, cRenewAge, resVars, ghostVars>>

ClientRenew(c) ==
    /\ Entitled(c)
    /\ cReq[c] < MaxReq
    /\ cReq' = [cReq EXCEPT ![c] = @ + 1]
    /\ cRenewReq' = [cRenewReq EXCEPT ![c] = cReq[c] + 1]
    /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "renew", from |-> c, req |-> cReq[c] + 1,
                           token |-> cToken[c]]}
    /\ UNCHANGED <<srvVars, cState, cAge, cToken, cRemaining, resVars, ghostVars>>

(* Dropping the lease locally before telling the server. *)
ClientRelease(c) ==
    /\ cState[c] = "held"
    /\ cState' = [cState EXCEPT ![c] = "idle"]
    /\ cToken' = [cToken EXCEPT ![c] = 0]
    /\ cRemaining' = [cRemaining EXCEPT ![c] = 0]
    /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
    /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ msgs' = msgs \cup {[type |-> "release", from |-> c, token |-> cToken[c]]}
    /\ UNCHANGED <<srvVars, cReq, cAge, resVars, ghostVars>>

ClientWrite(c) ==
    /\ Entitled(c)
    /\ msgs' = msgs \cup {[type |-> "write", from |-> c, token |-> cToken[c]]}
    /\ UNCHANGED <<srvVars, cVars, resVars, ghostVars>>

(* A crash loses everything but the persisted request counter. *)
ClientCrash(c) ==
    /\ cState' = [cState EXCEPT ![c] = "idle"]
    /\ cAge' = [cAge EXCEPT ![c] = 0]
    /\ cToken' = [cToken EXCEPT ![c] = 0]
    /\ cRemaining' = [cRemaining EXCEPT ![c] = 0]
    /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
    /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
    /\ UNCHANGED <<srvVars, cReq, msgs, resVars, ghostVars>>

ClientOnGranted(c) ==
    \E m \in msgs :
        /\ m.type = "granted" /\ m.to = c
        /\ cState[c] = "acquiring" /\ m.req = cReq[c]
        /\ cState' = [cState EXCEPT ![c] = IF Validity > cAge[c] THEN "held" ELSE "idle"]
        /\ cToken' = [cToken EXCEPT ![c] = IF Validity > cAge[c] THEN m.token ELSE 0]
        /\ cRemaining' = [cRemaining EXCEPT ![c] = Sat(Validity - cAge[c])]
        /\ cAge' = [cAge EXCEPT ![c] = 0]
        /\ UNCHANGED <<srvVars, cReq, cRenewReq, cRenewAge, msgs, resVars, ghostVars>>

ClientOnRenewed(c) ==
    \E m \in msgs :
        /\ m.type = "renewed" /\ m.to = c
        /\ cState[c] = "held" /\ cRenewReq[c] # 0
        /\ m.req = cRenewReq[c] /\ m.token = cToken[c]
        /\ cRemaining' = [cRemaining EXCEPT ![c] = Max(@, Sat(Validity - cRenewAge[c]))]
        /\ cRenewReq' = [cRenewReq EXCEPT ![c] = 0]
        /\ cRenewAge' = [cRenewAge EXCEPT ![c] = 0]
        /\ UNCHANGED <<srvVars, cState, cReq, cAge, cToken, msgs, resVars, ghostVars>>

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
        /\ UNCHANGED <<srvVars, cReq, cToken, cRemaining, msgs, resVars, ghostVars>>

---------------------------------------------------------------------------
(* Server actions *)

Fresh(m) == m.req > srvLastReq[m.from]

Grantable(c) ==
    /\ srvQuiet = 0
    /\ \/ srvHolder = None
       \/ srvRemaining = 0
       \/ srvHolder = c
       \/ Variant = "grant_unexpired"

ServerOnAcquire ==
    \E m \in msgs :
        /\ m.type = "acquire" /\ Fresh(m)
        /\ srvLastReq' = [srvLastReq EXCEPT ![m.from] = m.req]
        /\ IF Grantable(m.from) /\ srvToken < MaxToken
              THEN /\ srvToken' = srvToken + 1
                   /\ srvHolder' = m.from
                   /\ srvRemaining' = TTL
                   /\ grantLog' = Append(grantLog, srvToken + 1)
                   /\ expiredRegrant' = (expiredRegrant \/ srvHolder \notin {None, m.from})
                   /\ msgs' = msgs \cup {[type |-> "granted", to |-> m.from,
                                          req |-> m.req, token |-> srvToken + 1]}
              ELSE /\ UNCHANGED <<srvToken, srvHolder, srvRemaining, ghostVars>>
                   /\ msgs' = msgs \cup {[type |-> "denied", to |-> m.from, req |-> m.req]}
        /\ UNCHANGED <<srvQuiet, cVars, resVars>>

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
        /\ UNCHANGED <<srvHolder, srvToken, srvQuiet, cVars, resVars, ghostVars>>

ServerOnRelease ==
    \E m \in msgs :
        /\ m.type = "release"
        /\ srvHolder = m.from /\ m.token = srvToken
        /\ srvHolder' = None
        /\ srvRemaining' = 0
        /\ UNCHANGED <<srvToken, srvQuiet, srvLastReq, cVars, msgs, resVars, ghostVars>>

(* The server loses its volatile state; it keeps the last token and, if it  *)
(* ever granted a lease, not knowing which may still be valid, grants      *)
(* nothing for TTL.                                                        *)
ServerRestart ==
    /\ srvHolder' = None
    /\ srvRemaining' = 0
    /\ srvQuiet' = IF srvToken > 0 THEN TTL ELSE 0
    /\ srvLastReq' = [c \in Clients |-> 0]
    /\ UNCHANGED <<srvToken, cVars, msgs, resVars, ghostVars>>

---------------------------------------------------------------------------
(* The fenced resource *)

ResourceOnWrite ==
    \E m \in msgs :
        /\ m.type = "write"
        /\ IF m.token >= resHighest \/ Variant = "no_fencing"
              THEN /\ resLast' = m.token
                   /\ resHighest' = Max(resHighest, m.token)
                   /\ UNCHANGED resRejected
              ELSE /\ resRejected' = TRUE
                   /\ UNCHANGED <<resLast, resHighest>>
        /\ UNCHANGED <<srvVars, cVars, msgs, ghostVars>>

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
              /\ cToken' = [c \in Clients |-> IF c \in lapsed THEN 0 ELSE cToken[c]]
              /\ cRenewReq' = [c \in Clients |-> IF c \in lapsed THEN 0 ELSE cRenewReq[c]]
              /\ cRenewAge' = [c \in Clients |->
                     IF c \in lapsed \/ cRenewReq[c] = 0 THEN 0
                     ELSE Min(Validity, cRenewAge[c] + adv[c])]
              /\ cAge' = [c \in Clients |->
                     IF cState[c] = "acquiring" THEN Min(Validity, cAge[c] + adv[c]) ELSE 0]
        /\ UNCHANGED <<srvHolder, srvToken, srvLastReq, cReq, msgs, resVars, ghostVars>>

---------------------------------------------------------------------------

Next ==
    \/ \E c \in Clients :
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
    \/ Tick

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Clients)

(* A message that can never again enable an action is dead: responses to   *)
(* requests the client has moved past, releases of superseded tokens, and  *)
(* stale writes once a refusal has been recorded. Requests stay live: a    *)
(* server restart forgets which ones it processed. States that differ only *)
(* in dead messages have the same future, so TLC may identify them.        *)
Dead(m) ==
    \/ m.type \in {"granted", "renewed", "denied"} /\ m.req < cReq[m.to]
    \/ m.type = "release" /\ m.token < srvToken
    \/ m.type = "write" /\ m.token < resHighest /\ resRejected
LiveMsgs == {m \in msgs : ~Dead(m)}
View == <<srvVars, cVars, LiveMsgs, resVars, ghostVars>>

---------------------------------------------------------------------------
(* Safety *)

(* No two clients are entitled to act on the resource at the same moment. *)
MutualExclusion ==
    \A c1, c2 \in Clients : Entitled(c1) /\ Entitled(c2) => c1 = c2

(* Granted tokens strictly increase. *)
FencingMonotonic ==
    \A i, j \in 1 .. Len(grantLog) : i < j => grantLog[i] < grantLog[j]

(* The resource never accepts a token lower than one it accepted before:   *)
(* the last accepted write always carries the highest token accepted.     *)
StaleWriteRejected == resLast = resHighest

(* An entitled client's token is the server's current or an older one. *)
TokenBound == \A c \in Clients : cToken[c] <= srvToken

---------------------------------------------------------------------------
(* Reachability: each of these is expected to be VIOLATED (TLC finds a     *)
(* state where the interesting thing happens), proving the safety checks   *)
(* are not vacuous. See specs/reach/.                                      *)

NeverContended ==
    ~\E c1, c2 \in Clients : cState[c1] = "held" /\ cState[c2] = "acquiring"
NeverRegrantedAfterExpiry == ~expiredRegrant
NeverStaleWriteRefused == ~resRejected

=============================================================================
