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
(* Time is a discrete clock bounded by MaxTime; restarts older than Period *)
(* leave the window on Tick (OTP: now - t < Period keeps a restart).       *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets

CONSTANTS
    N,            \* number of children
    RestartType,  \* child index -> "permanent" | "transient" | "temporary"
    Strategy,     \* "one_for_one" | "one_for_all" | "rest_for_one"
    Intensity,    \* max restarts within Period
    Period,       \* intensity window, clock ticks
    MaxTime       \* bound on the clock (state space)

Children == 1..N

\* Assignments of restart types to children, for the configs (RestartType <- ...).
PermTransTemp == <<"permanent", "transient", "temporary">>
TempTransPerm == <<"temporary", "transient", "permanent">>

VARIABLES
    status,     \* child -> "running" | "stopped" | "removed"
    restarts,   \* restarts still inside the window: sequence of [t |-> time, c |-> child]
    now,        \* the clock
    sup,        \* "running" | "shutting_down" | "down" | "escalated"
    escalating, \* TRUE once intensity was exceeded (the shutdown ends in "escalated")
    cursor,     \* shutdown cursor: the next child to stop (0 when done)
    stopOrder,  \* children stopped by the shutdown, in the order they were stopped
    last        \* the exit handled by the last step, [c, reason, restarted], or NoExit

vars == <<status, restarts, now, sup, escalating, cursor, stopOrder, last>>

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
                          status[x] # "removed" /\ RestartType[x] # "temporary"}

\* The restarts the intensity counts for an exit of c: every restart (per supervisor).
Counted(rs, c) == rs

NoExit == [c |-> 0, reason |-> "none", restarted |-> {}]

Init ==
    /\ status = [c \in Children |-> "running"]
    /\ restarts = << >>
    /\ now = 0
    /\ sup = "running"
    /\ escalating = FALSE
    /\ cursor = 0
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
               /\ IF Len(Counted(rs, c)) > Intensity
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
            /\ UNCHANGED <<restarts, sup, escalating, cursor>>
    /\ UNCHANGED <<now, stopOrder>>

ChildExitsNormally(c) == HandleExit(c, "normal")

ChildCrashes(c) == HandleExit(c, "abnormal")

TerminateChild(c) ==
    /\ sup = "running"
    /\ status[c] = "running"
    /\ status' = [status EXCEPT ![c] =
                     IF RestartType[c] = "temporary" THEN "removed" ELSE "stopped"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, stopOrder>>
    /\ last' = NoExit

RestartChild(c) ==
    /\ sup = "running"
    /\ status[c] = "stopped"
    /\ status' = [status EXCEPT ![c] = "running"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, stopOrder>>
    /\ last' = NoExit

DeleteChild(c) ==
    /\ sup = "running"
    /\ status[c] = "stopped"
    /\ status' = [status EXCEPT ![c] = "removed"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, stopOrder>>
    /\ last' = NoExit

Tick ==
    /\ sup = "running"
    /\ now < MaxTime
    /\ now' = now + 1
    /\ restarts' = SelectSeq(restarts, LAMBDA r : now + 1 - r.t < Period)
    /\ UNCHANGED <<status, sup, escalating, cursor, stopOrder>>
    /\ last' = NoExit

Shutdown ==
    /\ sup = "running"
    /\ BeginShutdown(FALSE)
    /\ UNCHANGED <<status, restarts, now, stopOrder>>
    /\ last' = NoExit

\* The shutdown stops the child under the cursor, then moves the cursor down.
StopNext ==
    /\ sup = "shutting_down"
    /\ cursor > 0
    /\ IF status[cursor] = "running"
       THEN /\ status' = [status EXCEPT ![cursor] = "stopped"]
            /\ stopOrder' = Append(stopOrder, cursor)
       ELSE UNCHANGED <<status, stopOrder>>
    /\ cursor' = cursor - 1
    /\ UNCHANGED <<restarts, now, sup, escalating>>
    /\ last' = NoExit

\* A child not yet reached by the cursor may still end by itself: nothing restarts.
ChildExitsDuringShutdown(c) ==
    /\ sup = "shutting_down"
    /\ c <= cursor
    /\ status[c] = "running"
    /\ status' = [status EXCEPT ![c] = "stopped"]
    /\ UNCHANGED <<restarts, now, sup, escalating, cursor, stopOrder>>
    /\ last' = NoExit

Down ==
    /\ sup = "shutting_down"
    /\ cursor = 0
    /\ sup' = IF escalating THEN "escalated" ELSE "down"
    /\ UNCHANGED <<status, restarts, now, escalating, cursor, stopOrder>>
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

-----------------------------------------------------------------------------
(* Invariants. property_tests/test_supervisor.py checks the same names.     *)

TypeOK ==
    /\ status \in [Children -> {"running", "stopped", "removed"}]
    /\ \A i \in 1..Len(restarts) : restarts[i].t \in 0..MaxTime /\ restarts[i].c \in Children
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

\* While the supervisor runs, the window never holds more than Intensity restarts.
IntensityBound ==
    sup = "running" => Len(restarts) <= Intensity

\* Escalation happens only when the intensity was exceeded.
EscalationOnlyWhenExceeded ==
    escalating => Len(restarts) > Intensity

\* Shutdown goes in reverse start order: every child after the cursor is stopped.
OrderedShutdown ==
    /\ sup = "shutting_down" => \A x \in Children : x > cursor => status[x] # "running"
    /\ \A i, j \in 1..Len(stopOrder) : i < j => stopOrder[i] > stopOrder[j]

\* Once the supervisor is down (normally or by escalation), no child runs.
NoChildAfterSupervisorDown ==
    sup \in {"down", "escalated"} => \A x \in Children : status[x] # "running"

(* Reachability ("sometimes") checks: each is violated when the interesting *)
(* state is reached; run with Supervisor.reach.cfg, TLC must report it.     *)
NeverEscalates == sup # "escalated"
=============================================================================
