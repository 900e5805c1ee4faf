----------------------------- MODULE Supervisor -----------------------------
(***************************************************************************)
(* An OTP supervisor rebuilt on structured concurrency                     *)
(* (trio_foundation.supervision.Supervisor).                               *)
(*                                                                         *)
(* Children 1..N start in index order. A running child may exit normally   *)
(* or crash; the supervisor handles the exit atomically: the restart type  *)
(* decides whether anything restarts (permanent: always; transient: only   *)
(* after a crash; temporary: never, and it is forgotten); the restart is   *)
(* timestamped and, if more than Intensity restarts fall within Period,    *)
(* the supervisor escalates; otherwise the strategy decides which          *)
(* children restart (one_for_one: the child; one_for_all: every child;     *)
(* rest_for_one: the child and those after it), temporary children among   *)
(* the others being forgotten. The child API (terminate/restart/delete)    *)
(* changes one child without counting restarts. Shutdown, requested or     *)
(* caused by escalation, walks a cursor from N down to 1 stopping one      *)
(* child per step; only then is the supervisor down.                       *)
(*                                                                         *)
(* Time is a discrete clock bounded by MaxTime. The window is OTP's: a     *)
(* restart at time R counts at time Now while R >= Now - Period, so a      *)
(* restart exactly Period old still counts (Tick drops older ones).        *)
(*                                                                         *)
(* Observer history. The safety invariants are stated over ghost variables *)
(* recording what an outside observer sees, not over the supervisor's own  *)
(* bookkeeping: every restart with its time (restartLog, never pruned),    *)
(* the children the shutdown stopped in the order it stopped them          *)
(* (stopOrder), and the exit the last step handled with what it restarted  *)
(* (last). A supervisor whose own window is wrong, or that stops children  *)
(* in the wrong order, violates them.                                      *)
(*                                                                         *)
(* Variant selects a deliberate bug for the mutant checks (specs/broken/); *)
(* the protocol proper is Variant = "correct".                             *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    N,            \* number of children
    RestartType,  \* child index -> "permanent" | "transient" | "temporary"
    Strategy,     \* "one_for_one" | "one_for_all" | "rest_for_one"
    Intensity,    \* max restarts within Period
    Period,       \* intensity window, clock ticks
    MaxTime,      \* bound on the clock (state space)
    Variant       \* "correct" or one of Mutants

Mutants == {
    "forget_restarts",     \* every Tick empties the restart window
    "strict_window",       \* a restart exactly Period old no longer counts (now - t < Period)
    "per_child_intensity", \* restarts counted per child, not per supervisor
    "escalate_early",      \* escalates when the count reaches Intensity, not exceeds it
    "stop_in_start_order", \* the shutdown stops children 1..N instead of N..1
    "restart_temporary",   \* a strategy restart also restarts temporary siblings
    "down_early"}          \* the supervisor reports down before every child stopped

ASSUME Variant \in {"correct"} \cup Mutants

Children == 1..N

\* Assignments of restart types to children, for the configs (RestartType <- ...).
PermTransTemp == <<"permanent", "transient", "temporary">>
TempTransPerm == <<"temporary", "transient", "permanent">>

VARIABLES
    status,     \* child -> "running" | "stopped" | "removed"
    restarts,   \* the supervisor's window: sequence of [t |-> time, c |-> child]
    now,        \* the clock
    sup,        \* "running" | "shutting_down" | "down" | "escalated"
    escalating, \* TRUE once intensity was exceeded (the shutdown ends in "escalated")
    cursor,     \* shutdown cursor: steps left (0 when done)
    \* ---- observer history (ghost) ----
    restartLog, \* every restart (or restart attempt that escalated), [t |-> time, c |-> child]
    stopOrder,  \* children stopped by the shutdown, in the order they were stopped
    last        \* the exit handled by the last step, [c, reason, restarted], or NoExit

vars == <<status, restarts, now, sup, escalating, cursor, restartLog, stopOrder, last>>

Reasons == {"normal", "abnormal", "none"}

ShouldRestart(c, reason) ==
    \/ RestartType[c] = "permanent"
    \/ RestartType[c] = "transient" /\ reason = "abnormal"

\* The children a restart of c takes along (before forgetting temporaries).
Scope(c) ==
    CASE Strategy = "one_for_one" -> {c}
      [] Strategy = "one_for_all" -> Children
      [] Strategy = "rest_for_one" -> {x \in Children : x >= c}

\* What the restart actually starts: the scope minus forgotten and temporary others.
Targets(c) == {c} \cup {x \in Scope(c) \ {c} :
                          status[x] # "removed"
                          /\ (RestartType[x] # "temporary" \/ Variant = "restart_temporary")}

\* The restarts the supervisor counts for an exit of c: all of them (per supervisor).
Counted(rs, c) ==
    IF Variant = "per_child_intensity" THEN SelectSeq(rs, LAMBDA r : r.c = c) ELSE rs

\* Does the supervisor keep a restart of time t in its window at time T?
Keeps(t, T) ==
    IF Variant = "strict_window" THEN T - t < Period ELSE t + Period >= T

Exceeded(k) == IF Variant = "escalate_early" THEN k >= Intensity ELSE k > Intensity

\* The child the shutdown stops at a cursor position.
AtCursor(k) == IF Variant = "stop_in_start_order" THEN N + 1 - k ELSE k

NoExit == [c |-> 0, reason |-> "none", restarted |-> {}]

Init ==
    /\ status = [c \in Children |-> "running"]
    /\ restarts = << >>
    /\ now = 0
    /\ sup = "running"
    /\ escalating = FALSE
    /\ cursor = 0
    /\ restartLog = << >>
    /\ stopOrder = << >>
    /\ last = NoExit

BeginShutdown(esc) ==
    /\ sup' = "shutting_down"
    /\ escalating' = esc
    /\ cursor' = N

HandleExit(c, reason) ==
    /\ sup = "running"
    /\ status[c] = "running"
    /\ IF ShouldRestart(c, reason)
       THEN LET rs == Append(restarts, [t |-> now, c |-> c])
            IN /\ restarts' = rs
               /\ restartLog' = Append(restartLog, [t |-> now, c |-> c])
               /\ IF Exceeded(Len(Counted(rs, c)))
                  THEN /\ status' = [status EXCEPT ![c] = "stopped"]
                       /\ BeginShutdown(TRUE)
                       /\ last' = [c |-> c, reason |-> reason, restarted |-> {}]
                  ELSE /\ status' = [x \in Children |->
                                       IF x \in Targets(c) THEN "running"
                                       ELSE IF x \in Scope(c) THEN "removed"
                                       ELSE status[x]]
                       /\ last' = [c |-> c, reason |-> reason, restarted |-> Targets(c)]
                       /\ UNCHANGED <<sup, escalating, cursor>>
       ELSE /\ status' = [status EXCEPT ![c] =
                             IF RestartType[c] = "temporary" THEN "removed" ELSE "stopped"]
            /\ last' = [c |-> c, reason |-> reason, restarted |-> {}]
            /\ UNCHANGED <<restarts, restartLog, sup, escalating, cursor>>
    /\ UNCHANGED <<now, stopOrder>>

ChildExitsNormally(c) == HandleExit(c, "normal")

ChildCrashes(c) == HandleExit(c, "abnormal")

TerminateChild(c) ==
    /\ sup = "running"
    /\ status[c] = "running"
    /\ status' = [status EXCEPT ![c] =
                     IF RestartType[c] = "temporary" THEN "removed" ELSE "stopped"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

RestartChild(c) ==
    /\ sup = "running"
    /\ status[c] = "stopped"
    /\ status' = [status EXCEPT ![c] = "running"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

DeleteChild(c) ==
    /\ sup = "running"
    /\ status[c] = "stopped"
    /\ status' = [status EXCEPT ![c] = "removed"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

Tick ==
    /\ sup = "running"
    /\ now < MaxTime
    /\ now' = now + 1
    /\ restarts' = IF Variant = "forget_restarts" THEN << >>
                   ELSE SelectSeq(restarts, LAMBDA r : Keeps(r.t, now + 1))
    /\ UNCHANGED <<status, sup, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

Shutdown ==
    /\ sup = "running"
    /\ BeginShutdown(FALSE)
    /\ UNCHANGED <<status, restarts, now, restartLog, stopOrder>>
    /\ last' = NoExit

\* The shutdown stops the child under the cursor, then moves the cursor on.
StopNext ==
    /\ sup = "shutting_down"
    /\ cursor > 0
    /\ LET x == AtCursor(cursor) IN
       IF status[x] = "running"
       THEN /\ status' = [status EXCEPT ![x] = "stopped"]
            /\ stopOrder' = Append(stopOrder, x)
       ELSE UNCHANGED <<status, stopOrder>>
    /\ cursor' = cursor - 1
    /\ UNCHANGED <<restarts, now, sup, escalating, restartLog>>
    /\ last' = NoExit

\* A child the cursor has not reached may still end by itself: nothing restarts.
ChildExitsDuringShutdown(c) ==
    /\ sup = "shutting_down"
    /\ \E k \in 1..cursor : AtCursor(k) = c
    /\ status[c] = "running"
    /\ status' = [status EXCEPT ![c] = "stopped"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

Down ==
    /\ sup = "shutting_down"
    /\ cursor = 0 \/ (Variant = "down_early" /\ cursor < N)
    /\ sup' = IF escalating THEN "escalated" ELSE "down"
    /\ UNCHANGED <<status, restarts, now, escalating, cursor, restartLog, stopOrder>>
    /\ last' = NoExit

\* The supervisor is down for good (not a deadlock).
Terminated ==
    /\ sup \in {"down", "escalated"}
    /\ UNCHANGED vars

Next ==
    \/ \E c \in Children :
         \/ ChildExitsNormally(c)
         \/ ChildCrashes(c)
         \/ TerminateChild(c)
         \/ RestartChild(c)
         \/ DeleteChild(c)
         \/ ChildExitsDuringShutdown(c)
    \/ Tick
    \/ Shutdown
    \/ StopNext
    \/ Down
    \/ Terminated

Spec == Init /\ [][Next]_vars

\* Restarts the observer saw within OTP's window at time T.
Observed(T) == {i \in DOMAIN restartLog : restartLog[i].t + Period >= T}

\* Log entries older than the window can never count again (now only grows), so
\* states differing only in them have the same future: the VIEW drops them.
View == <<status, restarts, now, sup, escalating, cursor,
          SelectSeq(restartLog, LAMBDA r : r.t + Period >= now), stopOrder, last>>

-----------------------------------------------------------------------------
(* Invariants. property_tests/test_supervisor.py checks the same names.     *)

TypeOK ==
    /\ status \in [Children -> {"running", "stopped", "removed"}]
    /\ \A i \in 1..Len(restarts) : restarts[i].t \in 0..MaxTime /\ restarts[i].c \in Children
    /\ \A i \in 1..Len(restartLog) : restartLog[i].t \in 0..MaxTime
    /\ now \in 0..MaxTime
    /\ sup \in {"running", "shutting_down", "down", "escalated"}
    /\ escalating \in BOOLEAN
    /\ cursor \in 0..N
    /\ last.c \in 0..N /\ last.reason \in Reasons /\ last.restarted \subseteq Children

\* Which children restart for an exit follows restart type and strategy (OTP).
RestartsOnlyPerPolicy ==
    LET c == last.c IN
    c # 0 =>
      /\ \A x \in last.restarted : RestartType[x] # "temporary"
      /\ RestartType[c] = "temporary" => last.restarted = {}
      /\ (RestartType[c] = "transient" /\ last.reason = "normal") => last.restarted = {}
      /\ last.restarted # {} => c \in last.restarted
      /\ Strategy = "one_for_one" => last.restarted \subseteq {c}
      /\ Strategy = "rest_for_one" => \A x \in last.restarted : x >= c
      /\ (ShouldRestart(c, last.reason) /\ ~escalating) => c \in last.restarted
      \* after a restart, the strategy's whole scope runs again, temporaries forgotten
      /\ last.restarted # {} =>
            \A x \in Scope(c) :
                IF RestartType[x] = "temporary" THEN status[x] = "removed"
                ELSE status[x] \in {"running", "removed"}
      \* ... and nothing outside the scope was started by it
      /\ \A x \in last.restarted : x \in Scope(c)

\* While the supervisor runs, the observer has seen at most Intensity restarts
\* within the window (OTP's rule) ending now.
IntensityBound ==
    sup = "running" => Cardinality(Observed(now)) <= Intensity

\* The supervisor escalates only when the restarts the observer saw within the
\* window exceed Intensity (with IntensityBound: exactly then).
EscalationOnlyWhenExceeded ==
    escalating => Cardinality(Observed(now)) > Intensity

\* The shutdown stopped children in reverse start order (highest index first).
OrderedShutdown ==
    \A i, j \in 1..Len(stopOrder) : i < j => stopOrder[i] > stopOrder[j]

\* Once the supervisor is down (normally or by escalation), no child runs.
NoChildAfterSupervisorDown ==
    sup \in {"down", "escalated"} => \A x \in Children : status[x] # "running"

(* Reachability ("sometimes") checks: each is violated when the interesting *)
(* state is reached; specs/reach/Supervisor.*.cfg, TLC must report it.      *)
NeverEscalates == sup # "escalated"

\* A restart exactly Period old still counts when the next one comes.
NeverBoundaryRestartCounts ==
    ~\E i, j \in DOMAIN restartLog : i < j /\ restartLog[j].t = restartLog[i].t + Period

\* A shutdown stops two children or more.
NeverStopsSeveral == Len(stopOrder) < 2
=============================================================================
