------------------------------ MODULE RaftTrace ------------------------------
(***************************************************************************)
(* Trace validation: is a recorded run of the Raft core a behaviour of     *)
(* Raft?                                                                   *)
(*                                                                         *)
(* RaftTraceData (written by a trace mapping, or by hand in tests) defines *)
(*   TraceServers   the servers, as strings ("s1", "s2", "s3");           *)
(*   TraceNil       the string standing for "no vote" ("nil");            *)
(*   TraceFeatures  the Raft features the core ran with (e.g. {"prevote"});*)
(*   Traces         a sequence of traces, each a sequence of records, one  *)
(*                  per core transition:                                    *)
(*     node       the server that took the step;                           *)
(*     action     "Timeout", "ClientRequest", "ClientRead", "CheckQuorum", *)
(*                "Restart", "PersistState", "AppendEntries" (a heartbeat  *)
(*                or replication to one or several peers),                 *)
(*                "TransferLeadership", or "Receive" (a message handled);  *)
(*     msg        for "Receive", the message handled (a Raft message       *)
(*                record, servers as strings); anything otherwise;         *)
(*     sent       the set of messages the step emitted;                    *)
(*     persisted  the node's durable state after the step:                 *)
(*                [term |-> ..., vote |-> ..., log |-> <<entry terms>>];   *)
(*     role, term, commit   the node's role, currentTerm and commitIndex   *)
(*                after the step.                                          *)
(*                                                                         *)
(* The initial state picks a trace and is Raft's Init. Each record must be *)
(* taken by the Raft action it names, at its node (a message handled by   *)
(* one of the handlers, or consumed with no effect, which the spec allows *)
(* as a loss), must emit exactly the logged messages (those not already in *)
(* flight) and must leave the node in the logged state. Everything not     *)
(* logged -- the other nodes, votes granted, match indexes, the observer   *)
(* history -- is computed by the spec's own actions, and the config checks *)
(* Raft's safety invariants over it. A finished trace stutters; a trace    *)
(* that cannot advance deadlocks, and TLC reports the deadlock with the   *)
(* trace index (tr) and the number of records consumed (pos).             *)
(*                                                                         *)
(* A core transition that handles a message and then sends AppendEntries   *)
(* is logged as two records (Receive, then AppendEntries), as the spec     *)
(* separates them.                                                         *)
(***************************************************************************)
EXTENDS Raft, RaftTraceData, TLC

VARIABLES tr, pos

traceVars == <<vars, tr, pos>>

(* The messages a step emitted that were not already in flight. *)
Emitted(r) ==
    /\ r.sent \subseteq msgs'
    /\ msgs' \subseteq msgs \cup r.sent

(* The node's state after the step, as logged. *)
Lands(r) ==
    LET n == r.node IN
    /\ role'[n] = r.role
    /\ currentTerm'[n] = r.term
    /\ commitIndex'[n] = r.commit
    /\ dTerm'[n] = r.persisted.term
    /\ dVote'[n] = r.persisted.vote
    /\ log'[n] = r.persisted.log

(* A handled message consumed with no effect: the spec allows it as a loss *)
(* (or, with duplication, as a copy that stays in flight).                 *)
Ignore(m) ==
    /\ \E rest \in Delivered(m) : msgs' = rest
    /\ UNCHANGED <<serverVars, ghostVars>>

Taken(r) ==
    LET n == r.node IN
    CASE r.action = "Timeout" -> Timeout(n)
      [] r.action = "ClientRequest" -> ClientRequest(n)
      [] r.action = "ClientRead" -> ClientRead(n)
      [] r.action = "CheckQuorum" -> CheckQuorum(n)
      [] r.action = "Restart" -> Restart(n)
      [] r.action = "PersistState" -> PersistState(n)
      [] r.action = "AppendEntries" -> \E T \in SUBSET Peers(n) : AppendEntries(n, T)
      [] r.action = "TransferLeadership" -> \E t \in Server : TransferLeadership(n, t)
      [] r.action = "Receive" -> /\ r.msg \in msgs
                                 /\ r.msg.to = n
                                 /\ Receive(r.msg) \/ Ignore(r.msg)
      [] OTHER -> FALSE

TraceInit ==
    /\ tr \in 1 .. Len(Traces)
    /\ pos = 0
    /\ Init

TraceNext ==
    \/ /\ pos < Len(Traces[tr])
       /\ LET r == Traces[tr][pos + 1] IN
          /\ Taken(r)
          /\ Emitted(r)
          /\ Lands(r)
       /\ pos' = pos + 1
       /\ UNCHANGED tr
    \/ /\ pos = Len(Traces[tr])
       /\ UNCHANGED traceVars

TraceSpec == TraceInit /\ [][TraceNext]_traceVars

(* Violated exactly when some trace has been consumed to its end: a check *)
(* with this invariant reports the first accepted trace (optional).        *)
NeverAccepted == pos < Len(Traces[tr])

=============================================================================
