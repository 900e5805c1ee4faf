---------------------------- MODULE RateLimiter ----------------------------
(***************************************************************************)
(* The per-key token-bucket rate limiter of trio_foundation.resilience.    *)
(*                                                                         *)
(* Clients ask for Weight tokens of a key. A request takes the fast path   *)
(* (granted at once) only if nobody waits for the key and the bucket holds *)
(* enough; otherwise it joins the key's FIFO queue, whose head is granted  *)
(* as soon as the bucket refills (Grant). A waiting client may leave at    *)
(* any time (Cancel: the caller's cancellation).                           *)
(*                                                                         *)
(* Time advances in ticks; each tick refills every bucket by Rate tokens,  *)
(* up to Burst. The table holds at most MaxKeys buckets: a key that is not *)
(* in it behaves as a full bucket, so only full buckets without waiters    *)
(* (idle keys) may be evicted; a new key that finds the table full of busy *)
(* keys is refused.                                                        *)
(*                                                                         *)
(* The invariants read the ghost history an observer records: every grant *)
(* with its key, time, weight and request id, and the set of requests      *)
(* still waiting for the key when it was granted; the requests whose       *)
(* callers left.                                                           *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/): "check_then_increment"*)
(* reads the bucket, yields, and writes back what it read minus the weight *)
(* (the original flaw); "evict_busy" evicts a key that is not full;        *)
(* "barging" lets a new request take tokens while others wait;             *)
(* "cancel_keeps_place" leaves a departed caller in the queue;             *)
(* "never_evicts" adds keys beyond MaxKeys.                                *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Clients,    \* model values
    Keys,       \* model values
    Burst,      \* bucket capacity (tokens)
    Rate,       \* tokens added per tick
    MaxWeight,  \* weights are 1 .. MaxWeight (<= Burst)
    MaxKeys,    \* buckets kept at once
    MaxReq,     \* requests per client (model size)
    MaxTime,    \* ticks (model size)
    Variant

ASSUME Burst \in Nat \ {0} /\ Rate \in Nat \ {0} /\ MaxWeight \in 1 .. Burst
ASSUME MaxKeys \in Nat \ {0}
ASSUME Variant \in {"correct", "check_then_increment", "evict_busy", "barging",
                    "cancel_keeps_place", "never_evicts"}

VARIABLES
    now,        \* ticks elapsed
    table,      \* keys holding a bucket
    tokens,     \* tokens[k]: the bucket of k (Burst when k \notin table)
    queue,      \* queue[k]: FIFO of waiting requests [id, c, w]
    pc,         \* pc[c]: "idle", "waiting" or "checked" (check_then_increment)
    req,        \* req[c]: the client's current request [id, k, w, seen]
    sent,       \* requests issued per client
    nextId,     \* next request id
    granted,    \* ghost: set of [id, k, t, w, ahead] (ahead: ids waiting for k then)
    left        \* ghost: ids of requests whose caller left before a grant

vars == <<now, table, tokens, queue, pc, req, sent, nextId, granted, left>>

Min(a, b) == IF a < b THEN a ELSE b
Range(s) == {s[i] : i \in 1 .. Len(s)}
Ids(s) == {r.id : r \in Range(s)}
Idle(k) == tokens[k] = Burst /\ queue[k] = <<>>

NoReq == [id |-> 0, k |-> CHOOSE k \in Keys : TRUE, w |-> 1, seen |-> 0]

Init ==
    /\ now = 0
    /\ table = {}
    /\ tokens = [k \in Keys |-> Burst]
    /\ queue = [k \in Keys |-> <<>>]
    /\ pc = [c \in Clients |-> "idle"]
    /\ req = [c \in Clients |-> NoReq]
    /\ sent = [c \in Clients |-> 0]
    /\ nextId = 1
    /\ granted = {}
    /\ left = {}

Record(id, k, w) ==
    granted' = granted \cup {[id |-> id, k |-> k, t |-> now, w |-> w,
                              ahead |-> Ids(queue[k]) \ {id}]}

(* The key's bucket is present after this step, or the request is refused. *)
Admit(k) ==
    \/ /\ k \in table
       /\ table' = table
    \/ /\ k \notin table
       /\ \/ Cardinality(table) < MaxKeys \/ Variant = "never_evicts"
       /\ table' = table \cup {k}
    \/ /\ k \notin table
       /\ Cardinality(table) >= MaxKeys
       /\ Variant # "never_evicts"
       /\ \E e \in table :
            /\ IF Variant = "evict_busy" THEN queue[e] = <<>> ELSE Idle(e)
            /\ table' = (table \ {e}) \cup {k}

(* Evicting e forgets its bucket: a key absent from the table is full.      *)
Fresh(k) == [x \in Keys |-> IF x \in table /\ x \notin table' THEN Burst ELSE tokens[x]]

Arrive(c, k, w) ==
    /\ pc[c] = "idle" /\ sent[c] < MaxReq
    /\ sent' = [sent EXCEPT ![c] = @ + 1]
    /\ nextId' = nextId + 1
    /\ Admit(k)
    /\ LET r == [id |-> nextId, k |-> k, w |-> w, seen |-> tokens[k]]
           ts == Fresh(k)
       IN  IF Variant = "check_then_increment"
           THEN \* Check now, write later (Commit), with the queue ignored.
                IF ts[k] >= w
                THEN /\ pc' = [pc EXCEPT ![c] = "checked"]
                     /\ req' = [req EXCEPT ![c] = [r EXCEPT !.seen = ts[k]]]
                     /\ UNCHANGED <<tokens, queue, granted>>
                ELSE /\ pc' = [pc EXCEPT ![c] = "waiting"]
                     /\ req' = [req EXCEPT ![c] = r]
                     /\ queue' = [queue EXCEPT ![k] = Append(@, [id |-> r.id, c |-> c, w |-> w])]
                     /\ tokens' = ts
                     /\ UNCHANGED granted
           ELSE IF (queue[k] = <<>> \/ Variant = "barging") /\ ts[k] >= w
           THEN /\ tokens' = [ts EXCEPT ![k] = @ - w]
                /\ Record(r.id, k, w)
                /\ UNCHANGED <<pc, req, queue>>
           ELSE /\ pc' = [pc EXCEPT ![c] = "waiting"]
                /\ req' = [req EXCEPT ![c] = r]
                /\ queue' = [queue EXCEPT ![k] = Append(@, [id |-> r.id, c |-> c, w |-> w])]
                /\ tokens' = ts
                /\ UNCHANGED granted
    /\ UNCHANGED <<now, left>>

(* A new key that finds the table full of busy keys is refused.             *)
Refused(c, k) ==
    /\ pc[c] = "idle" /\ sent[c] < MaxReq
    /\ k \notin table /\ Cardinality(table) >= MaxKeys /\ Variant # "never_evicts"
    /\ \A e \in table : ~Idle(e)
    /\ sent' = [sent EXCEPT ![c] = @ + 1]
    /\ UNCHANGED <<now, table, tokens, queue, pc, req, nextId, granted, left>>

(* check_then_increment only: the write after the await.                    *)
Commit(c) ==
    /\ pc[c] = "checked"
    /\ LET r == req[c] IN
       /\ tokens' = [tokens EXCEPT ![r.k] = r.seen - r.w]
       /\ Record(r.id, r.k, r.w)
    /\ pc' = [pc EXCEPT ![c] = "idle"]
    /\ req' = [req EXCEPT ![c] = NoReq]
    /\ UNCHANGED <<now, table, queue, sent, nextId, left>>

Grant(k) ==
    /\ queue[k] # <<>>
    /\ tokens[k] >= Head(queue[k]).w
    /\ LET r == Head(queue[k]) IN
       /\ tokens' = [tokens EXCEPT ![k] = @ - r.w]
       /\ queue' = [queue EXCEPT ![k] = Tail(@)]
       /\ Record(r.id, k, r.w)
       /\ IF pc[r.c] = "waiting" /\ req[r.c].id = r.id
          THEN /\ pc' = [pc EXCEPT ![r.c] = "idle"]
               /\ req' = [req EXCEPT ![r.c] = NoReq]
          ELSE UNCHANGED <<pc, req>>
    /\ UNCHANGED <<now, table, sent, nextId, left>>

Cancel(c) ==
    /\ pc[c] = "waiting"
    /\ LET r == req[c] IN
       /\ left' = left \cup {r.id}
       /\ queue' = IF Variant = "cancel_keeps_place" THEN queue
                   ELSE [queue EXCEPT ![r.k] =
                           SelectSeq(@, LAMBDA x : x.id # r.id)]
    /\ pc' = [pc EXCEPT ![c] = "idle"]
    /\ req' = [req EXCEPT ![c] = NoReq]
    /\ UNCHANGED <<now, table, tokens, sent, nextId, granted>>

Tick ==
    /\ now < MaxTime
    /\ now' = now + 1
    /\ tokens' = [k \in Keys |-> Min(Burst, tokens[k] + Rate)]
    /\ UNCHANGED <<table, queue, pc, req, sent, nextId, granted, left>>

(* Time is up (Tick is enabled until then, so only here can nothing move). *)
Done == now = MaxTime /\ UNCHANGED vars

Next ==
    \/ \E c \in Clients, k \in Keys, w \in 1 .. MaxWeight : Arrive(c, k, w)
    \/ \E c \in Clients, k \in Keys : Refused(c, k)
    \/ \E c \in Clients : Commit(c) \/ Cancel(c)
    \/ \E k \in Keys : Grant(k)
    \/ Tick
    \/ Done

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Clients) \cup Permutations(Keys)

-----------------------------------------------------------------------------
(* Invariants, over the ghost history.                                      *)

TypeOK ==
    /\ now \in 0 .. MaxTime
    /\ table \subseteq Keys
    /\ pc \in [Clients -> {"idle", "waiting", "checked"}]

Given(k, t1, t2) ==
    LET S == {g \in granted : g.k = k /\ t1 <= g.t /\ g.t <= t2}
        F[T \in SUBSET S] == IF T = {} THEN 0
                             ELSE LET g == CHOOSE x \in T : TRUE IN g.w + F[T \ {g}]
    IN  F[S]

(* At most Burst + Rate * (t2 - t1) tokens granted for a key in [t1, t2].   *)
Bound ==
    \A k \in Keys, t1 \in 0 .. now, t2 \in 0 .. now :
        t1 <= t2 => Given(k, t1, t2) <= Burst + Rate * (t2 - t1)

(* No request is granted while one that arrived earlier for its key waits. *)
Fifo == \A g \in granted : \A a \in g.ahead : a > g.id

(* No grant goes to a request whose caller had left.                       *)
NoGrantAfterCancel == \A g \in granted : g.id \notin left

(* Memory: the table never holds more than MaxKeys buckets (statistics()). *)
TableBounded == Cardinality(table) <= MaxKeys

-----------------------------------------------------------------------------
(* Reachability: each must be violated (the state occurs).                 *)

(* The bound is met exactly in some interval: the limiter is not merely    *)
(* conservative.                                                           *)
NeverBoundTight ==
    ~\E k \in Keys, t1 \in 0 .. now, t2 \in 0 .. now :
        t1 <= t2 /\ Given(k, t1, t2) = Burst + Rate * (t2 - t1) /\ t2 > t1

(* Two requests wait for one key at once.                                  *)
NeverContended == \A k \in Keys : Len(queue[k]) < 2

(* An idle key was evicted to make room for another.                       *)
NeverEvicted == \A k \in Keys : ~(k \notin table /\ \E g \in granted : g.k = k)

(* A waiter left and a later one was granted the same key.                 *)
NeverCancelledThenGranted ==
    ~\E g \in granted : \E a \in left : a < g.id /\ g.ahead = {} /\
        \E h \in granted : h.k = g.k /\ h.id < a

=============================================================================
