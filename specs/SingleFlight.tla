---------------------------- MODULE SingleFlight ----------------------------
(***************************************************************************)
(* Single-flight loading of one cache key (Cache.get_or_compute of         *)
(* trio_foundation.resilience).                                            *)
(*                                                                         *)
(* Callers ask for the key. A cached value is served at once. On a miss,   *)
(* the caller joins the load in flight, or starts one (the loader runs in  *)
(* the cache's own task, not the caller's). A load succeeds (the value is  *)
(* cached and handed to every waiter), fails (the error goes to the        *)
(* waiters of that load only; nothing is cached) or is abandoned when its  *)
(* last waiter has left. A waiter may leave at any time (its own           *)
(* cancellation); the entry may expire at any time.                        *)
(*                                                                         *)
(* The invariants read what an observer records: the loader runs (started, *)
(* finished) and every result a caller received, with the load it came     *)
(* from, whether the caller was waiting on that load, and whether a        *)
(* cancellation was the caller's own.                                      *)
(*                                                                         *)
(* Variant selects a deliberate bug (specs/broken/): "double_load" checks  *)
(* for a flight and starts one across an await, so two loads can run;     *)
(* "cache_failure" caches a loader's failure for everyone;                 *)
(* "leader_cancel_poisons" runs the loader in the first caller's task, so  *)
(* its cancellation cancels the others; "orphan_loader" keeps a load       *)
(* running after its last waiter left.                                     *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, TLC

CONSTANTS
    Callers,    \* model values
    MaxCalls,   \* calls per caller (model size)
    Variant

ASSUME Variant \in {"correct", "double_load", "cache_failure",
                    "leader_cancel_poisons", "orphan_loader"}

VARIABLES
    pc,         \* pc[c]: "idle" or "waiting"
    calls,      \* calls[c]: calls made so far
    joined,     \* joined[c]: the load c waits on (0: none)
    cached,     \* [kind |-> "none" | "value" | "error", load |-> id]
    flights,    \* loads in flight: set of [id, leader]
    nextLoad,   \* next load id
    active,     \* ghost: ids of loader runs started and not finished
    results     \* ghost: set of [c, call, kind, load, waited, own]

vars == <<pc, calls, joined, cached, flights, nextLoad, active, results>>

None == [kind |-> "none", load |-> 0]

Init ==
    /\ pc = [c \in Callers |-> "idle"]
    /\ calls = [c \in Callers |-> 0]
    /\ joined = [c \in Callers |-> 0]
    /\ cached = None
    /\ flights = {}
    /\ nextLoad = 1
    /\ active = {}
    /\ results = {}

Waiters(id) == {c \in Callers : pc[c] = "waiting" /\ joined[c] = id}

Result(c, kind, load, waited, own) ==
    [c |-> c, call |-> calls[c], kind |-> kind, load |-> load, waited |-> waited,
     own |-> own]

Start(c) ==
    /\ flights' = flights \cup {[id |-> nextLoad, leader |-> c]}
    /\ active' = active \cup {nextLoad}
    /\ nextLoad' = nextLoad + 1
    /\ pc' = [pc EXCEPT ![c] = "waiting"]
    /\ joined' = [joined EXCEPT ![c] = nextLoad]

Call(c) ==
    /\ pc[c] = "idle" /\ calls[c] < MaxCalls
    /\ calls' = [calls EXCEPT ![c] = @ + 1]
    /\ IF cached.kind # "none"
       THEN /\ results' = results \cup
                 {[c |-> c, call |-> calls[c] + 1, kind |-> cached.kind,
                   load |-> cached.load, waited |-> FALSE, own |-> FALSE]}
            /\ UNCHANGED <<pc, joined, cached, flights, nextLoad, active>>
       ELSE /\ UNCHANGED <<cached, results>>
            /\ IF flights = {}
               THEN Start(c)
               ELSE \/ /\ \E f \in flights :
                             /\ pc' = [pc EXCEPT ![c] = "waiting"]
                             /\ joined' = [joined EXCEPT ![c] = f.id]
                       /\ UNCHANGED <<flights, nextLoad, active>>
                    \/ /\ Variant = "double_load"
                       /\ Start(c)

Succeed(f) ==
    /\ f \in flights
    /\ cached' = [kind |-> "value", load |-> f.id]
    /\ results' = results \cup
         {Result(w, "value", f.id, TRUE, FALSE) : w \in Waiters(f.id)}
    /\ pc' = [c \in Callers |-> IF c \in Waiters(f.id) THEN "idle" ELSE pc[c]]
    /\ joined' = [c \in Callers |-> IF c \in Waiters(f.id) THEN 0 ELSE joined[c]]
    /\ flights' = flights \ {f}
    /\ active' = active \ {f.id}
    /\ UNCHANGED <<calls, nextLoad>>

Fail(f) ==
    /\ f \in flights
    /\ cached' = IF Variant = "cache_failure"
                 THEN [kind |-> "error", load |-> f.id] ELSE cached
    /\ results' = results \cup
         {Result(w, "error", f.id, TRUE, FALSE) : w \in Waiters(f.id)}
    /\ pc' = [c \in Callers |-> IF c \in Waiters(f.id) THEN "idle" ELSE pc[c]]
    /\ joined' = [c \in Callers |-> IF c \in Waiters(f.id) THEN 0 ELSE joined[c]]
    /\ flights' = flights \ {f}
    /\ active' = active \ {f.id}
    /\ UNCHANGED <<calls, nextLoad>>

(* Caller c is cancelled while it waits.                                    *)
Leave(c) ==
    /\ pc[c] = "waiting"
    /\ LET f == CHOOSE x \in flights : x.id = joined[c]
           others == Waiters(f.id) \ {c}
           poison == Variant = "leader_cancel_poisons" /\ f.leader = c
           abandon == others = {} \/ poison
           gone == IF poison THEN Waiters(f.id) ELSE {c}
       IN  /\ results' = results \cup {Result(c, "cancelled", f.id, TRUE, TRUE)}
                         \cup {Result(w, "cancelled", f.id, TRUE, FALSE) : w \in gone \ {c}}
           /\ pc' = [x \in Callers |-> IF x \in gone THEN "idle" ELSE pc[x]]
           /\ joined' = [x \in Callers |-> IF x \in gone THEN 0 ELSE joined[x]]
           /\ IF abandon /\ Variant # "orphan_loader"
              THEN /\ flights' = flights \ {f}
                   /\ active' = active \ {f.id}
              ELSE UNCHANGED <<flights, active>>
    /\ UNCHANGED <<calls, cached, nextLoad>>

(* An orphaned load (orphan_loader) still finishes eventually.              *)
Expire ==
    /\ cached.kind # "none"
    /\ cached' = None
    /\ UNCHANGED <<pc, calls, joined, flights, nextLoad, active, results>>

Done ==
    /\ \A c \in Callers : pc[c] = "idle" /\ calls[c] = MaxCalls
    /\ UNCHANGED vars

Next ==
    \/ \E c \in Callers : Call(c) \/ Leave(c)
    \/ \E f \in flights : Succeed(f) \/ Fail(f)
    \/ Expire
    \/ Done

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Callers)

-----------------------------------------------------------------------------
(* Invariants, over the observer's record.                                  *)

TypeOK ==
    /\ pc \in [Callers -> {"idle", "waiting"}]
    /\ cached.kind \in {"none", "value", "error"}

(* At most one loader runs at a time for the key.                          *)
OneLoaderAtATime == Cardinality(active) <= 1

(* A caller gets an error only from a load it was waiting on: failures are *)
(* never served from the cache.                                            *)
FailureNotCached == \A r \in results : r.kind = "error" => r.waited

(* A caller sees Cancelled only from its own cancellation.                 *)
NoPoisonedWaiter == \A r \in results : r.kind = "cancelled" => r.own

(* A loader runs only while some caller still waits for it.                *)
NoOrphanLoad == \A id \in active : Waiters(id) # {}

-----------------------------------------------------------------------------
(* Reachability: each must be violated (the state occurs).                 *)

(* Two callers received the value of one load.                             *)
NeverShared ==
    ~\E r1, r2 \in results : r1.c # r2.c /\ r1.kind = "value" /\ r2.kind = "value"
        /\ r1.load = r2.load /\ r1.waited /\ r2.waited

(* The caller that started a load left, and another still got its value.   *)
NeverLeaderLeftOthersServed ==
    ~\E r1, r2 \in results : r1.kind = "cancelled" /\ r2.kind = "value"
        /\ r1.load = r2.load /\ r1.c # r2.c

(* After a failed load, a later load succeeded for the key.                *)
NeverRetriedAfterFailure ==
    ~\E r1, r2 \in results : r1.kind = "error" /\ r2.kind = "value" /\ r2.load > r1.load

=============================================================================
