-------------------------------- MODULE Raft --------------------------------
(***************************************************************************)
(* Raft consensus with PreVote, ReadIndex reads, leadership transfer and   *)
(* crash/restart, over an unreliable network. The model of the sans-IO     *)
(* core trio_foundation.protocols.raft: one action per core transition     *)
(* (a timer firing, a message handled, a client request), named like the   *)
(* core's handlers, each emitting every message that transition sends.     *)
(*                                                                         *)
(* Sources: Ongaro's thesis (2014) and its TLA+ spec (ongardie/raft.tla)   *)
(* for the protocol and Figure 8; etcd-io/raft for PreVote (a pre-vote     *)
(* asks for term + 1 without taking it, and is refused by a node that has  *)
(* heard from a leader within its election timeout), ReadIndex (a read is  *)
(* served at the commit index once a quorum acknowledged a heartbeat sent  *)
(* after the read arrived, and only by a leader that has committed an      *)
(* entry of its own term) and TimeoutNow.                                  *)
(*                                                                         *)
(* Network: msgs is the set of messages in flight. Delivery removes a      *)
(* message (with the "duplicate" fault it may also stay, to be delivered   *)
(* again), LoseMessage drops one, and any message may be delivered at any  *)
(* point, so messages are lost, duplicated and reordered.                  *)
(*                                                                         *)
(* Crash and restart (the "crash" fault): a node keeps its durable state   *)
(* -- dTerm and dVote (the persisted currentTerm and votedFor) and its     *)
(* log -- and loses everything else. Every action persists a changed term  *)
(* or vote in the same step as it sends the messages that depend on it     *)
(* ("persist before send"), so dTerm = currentTerm and dVote = votedFor    *)
(* always hold, except in the vote_before_persist mutant.                  *)
(*                                                                         *)
(* Log entries are represented by their terms only: an entry is identified *)
(* by (index, term), which is what every invariant compares. Not modelled: *)
(* membership change, snapshots and log compaction, the contents of        *)
(* commands, the nextIndex bookkeeping of the leader (a leader may send    *)
(* AppendEntries from any prevIndex, which covers every backtracking       *)
(* strategy, fast or slow), and timers (a timeout may fire at any time).   *)
(*                                                                         *)
(* Observer history. The invariants are stated over ghost variables that   *)
(* record what an outside observer sees, which no action reads: every      *)
(* (term, leader) ever elected; every entry ever reported committed by any *)
(* node, with the term of the node that reported it; every read served,    *)
(* with the index it was served at and the highest index reported         *)
(* committed anywhere when the read arrived; every term that a real        *)
(* candidacy opened.                                                       *)
(*                                                                         *)
(* Variant selects a deliberate bug for the mutant checks (specs/broken/); *)
(* the protocol proper is Variant = "correct".                             *)
(***************************************************************************)
EXTENDS Naturals, Sequences, FiniteSets, TLC

CONSTANTS
    Server,     \* server ids (model values, or strings in trace checks)
    Nil,        \* no vote
    MaxTerm,    \* bound: no campaign beyond this term
    MaxLogLen,  \* bound: no entry beyond this index
    MaxMsgs,    \* bound on messages in flight (a state constraint, MsgBound)
    MaxReads,   \* bound on client reads
    MaxRestarts, \* bound on crashes (restarts) in a behaviour
    Faults,     \* subset of {"crash", "duplicate"}; loss and reordering are always on
    Features,   \* subset of {"prevote", "transfer", "check_quorum", "noop", "noop_only",
                \*            "lease_expiry", "batching"}
    Variant     \* "correct" or one of Mutants

Mutants == {
    "commit_old_term",      \* the leader counts replicas of old-term entries to commit (Figure 8)
    "vote_before_persist",  \* a vote is sent before it is durable
    "read_without_quorum",  \* a leader serves a read without confirming its leadership
    "read_before_term_commit", \* a leader serves reads before committing an entry of its term
    "no_consistency_check", \* a follower appends without checking prevIndex/prevTerm
    "commit_past_match",    \* a follower commits up to its last index, not the last one vouched for
    "prevote_bumps_term"}   \* a node that receives a pre-vote takes its (unopened) term

ASSUME Variant \in {"correct"} \cup Mutants
ASSUME Faults \subseteq {"crash", "duplicate"}
ASSUME Features \subseteq {"prevote", "transfer", "check_quorum", "noop", "noop_only",
                          "lease_expiry", "batching"}
ASSUME MaxTerm \in Nat /\ MaxLogLen \in Nat /\ MaxMsgs \in Nat /\ MaxReads \in Nat
ASSUME MaxRestarts \in Nat

Roles == {"Follower", "PreCandidate", "Candidate", "Leader"}

VARIABLES
    currentTerm,    \* per server: latest term seen (in memory)
    role,           \* per server: one of Roles
    votedFor,       \* per server: candidate voted for in currentTerm, or Nil
    log,            \* per server: sequence of entry terms (durable)
    commitIndex,    \* per server: highest index known committed (volatile)
    votesGranted,   \* per server: who granted its current (pre-)campaign
    matchIndex,     \* per leader: per follower, highest index known replicated
    heard,          \* per server: heard from a current leader within its election timeout
    pendingRead,    \* per leader: the ReadIndex round in progress, or NoRead
    dTerm,          \* per server: durable currentTerm
    dVote,          \* per server: durable votedFor
    msgs,           \* messages in flight
    \* ---- observer history (ghost) ----
    elections,      \* every election won: [term, leader]
    committed,      \* every entry reported committed: [index, term, at]
    reads,          \* every read served: [floor, index, term]
    campaigns,      \* every term a (real) candidacy opened
    readCount,      \* reads started so far (also the ids of ReadIndex rounds)
    readRefused,    \* a leader gave up a pending read on learning it was stale
    restarts        \* crashes so far (read only by the bound MaxRestarts)

serverVars == <<currentTerm, role, votedFor, log, commitIndex, votesGranted,
                matchIndex, heard, pendingRead, dTerm, dVote>>
ghostVars == <<elections, committed, reads, campaigns, readCount, readRefused, restarts>>
vars == <<serverVars, msgs, ghostVars>>

(* A ReadIndex round: id (0 = none), the read index, the acknowledgements, *)
(* and -- ghost -- the highest index reported committed when it arrived.   *)
NoRead == [id |-> 0, index |-> 0, acks |-> {}, floor |-> 0]

Max(a, b) == IF a > b THEN a ELSE b
Min(a, b) == IF a < b THEN a ELSE b
MaxOf(S) == CHOOSE x \in S : \A y \in S : y <= x
Quorum(S) == 2 * Cardinality(S) > Cardinality(Server)
LastTerm(l) == IF l = <<>> THEN 0 ELSE l[Len(l)]
TermAt(l, i) == IF i = 0 THEN 0 ELSE l[i]

(* The highest index any node has reported committed (observer). *)
MaxCommitted == IF committed = {} THEN 0 ELSE MaxOf({c.index : c \in committed})

(* Entries old+1 .. new of log l reported committed by a node in term t. *)
Reported(l, old, new, t) == {[index |-> i, term |-> l[i], at |-> t] : i \in old + 1 .. new}

Peers(s) == Server \ {s}

RequestVotes(s, term, pre) ==
    {[type |-> "RequestVote", pre_vote |-> pre, term |-> term, from |-> s, to |-> t,
      last_log_index |-> Len(log[s]), last_log_term |-> LastTerm(log[s])] : t \in Peers(s)}

(* What delivering m leaves in flight: m is consumed, or with the          *)
(* "duplicate" fault it may stay for another delivery.                     *)
Delivered(m) == IF "duplicate" \in Faults THEN {msgs \ {m}, msgs} ELSE {msgs \ {m}}

(* Send out after consuming m. *)
Reply(m, out) == \E rest \in Delivered(m) : msgs' = rest \cup out

(* Persist s's term and vote together with this step's messages. *)
Persist(s) ==
    /\ dTerm' = [dTerm EXCEPT ![s] = currentTerm'[s]]
    /\ dVote' = [dVote EXCEPT ![s] = votedFor'[s]]

(* Leaving leadership (or a candidacy): a pending read is given up. *)
DropRead(s) ==
    /\ pendingRead' = [pendingRead EXCEPT ![s] = NoRead]
    /\ readRefused' = (readRefused \/ (role[s] = "Leader" /\ pendingRead[s].id # 0))

TypeOK ==
    /\ currentTerm \in [Server -> 0 .. MaxTerm]
    /\ role \in [Server -> Roles]
    /\ votedFor \in [Server -> Server \cup {Nil}]
    /\ \A s \in Server : log[s] \in Seq(1 .. MaxTerm) /\ Len(log[s]) <= MaxLogLen
    /\ commitIndex \in [Server -> 0 .. MaxLogLen]
    /\ votesGranted \in [Server -> SUBSET Server]
    /\ matchIndex \in [Server -> [Server -> 0 .. MaxLogLen]]
    /\ heard \in [Server -> BOOLEAN]
    /\ dTerm \in [Server -> 0 .. MaxTerm]
    /\ dVote \in [Server -> Server \cup {Nil}]
    /\ readCount \in 0 .. MaxReads
    /\ readRefused \in BOOLEAN

Init ==
    /\ currentTerm = [s \in Server |-> 0]
    /\ role = [s \in Server |-> "Follower"]
    /\ votedFor = [s \in Server |-> Nil]
    /\ log = [s \in Server |-> <<>>]
    /\ commitIndex = [s \in Server |-> 0]
    /\ votesGranted = [s \in Server |-> {}]
    /\ matchIndex = [s \in Server |-> [t \in Server |-> 0]]
    /\ heard = [s \in Server |-> FALSE]
    /\ pendingRead = [s \in Server |-> NoRead]
    /\ dTerm = [s \in Server |-> 0]
    /\ dVote = [s \in Server |-> Nil]
    /\ msgs = {}
    /\ elections = {}
    /\ committed = {}
    /\ reads = {}
    /\ campaigns = {}
    /\ readCount = 0
    /\ readRefused = FALSE
    /\ restarts = 0

---------------------------------------------------------------------------
(* Timers and client requests *)

(* A campaign proper: take term + 1, vote for oneself, persist, ask for    *)
(* votes. left: what may remain in flight of the messages (after the one   *)
(* being handled, if any, is consumed).                                    *)
Campaign(s, left) ==
    /\ currentTerm[s] < MaxTerm
    /\ currentTerm' = [currentTerm EXCEPT ![s] = @ + 1]
    /\ role' = [role EXCEPT ![s] = "Candidate"]
    /\ votedFor' = [votedFor EXCEPT ![s] = s]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {s}]
    /\ Persist(s)
    /\ \E rest \in left : msgs' = rest \cup RequestVotes(s, currentTerm[s] + 1, FALSE)
    /\ campaigns' = campaigns \cup {currentTerm[s] + 1}
    /\ UNCHANGED <<log, commitIndex, matchIndex, pendingRead, elections, committed,
                   reads, readCount, readRefused, restarts>>

(* The election timer fires. With PreVote: ask for term + 1 without taking *)
(* it (the term is unchanged, nothing to persist); without: campaign.      *)
Timeout(s) ==
    /\ role[s] # "Leader"
    /\ currentTerm[s] < MaxTerm
    /\ heard' = [heard EXCEPT ![s] = FALSE]
    /\ IF "prevote" \in Features
          THEN /\ role' = [role EXCEPT ![s] = "PreCandidate"]
               /\ votesGranted' = [votesGranted EXCEPT ![s] = {s}]
               /\ msgs' = msgs \cup RequestVotes(s, currentTerm[s] + 1, TRUE)
               /\ UNCHANGED <<currentTerm, votedFor, log, commitIndex, matchIndex,
                              pendingRead, dTerm, dVote, ghostVars>>
          ELSE Campaign(s, {msgs})

(* A client proposes a command to the leader. (With "noop_only", a model   *)
(* for reads, the only writes are the no-op entries of new leaders.)        *)
ClientRequest(s) ==
    /\ "noop_only" \notin Features
    /\ role[s] = "Leader"
    /\ Len(log[s]) < MaxLogLen
    /\ log' = [log EXCEPT ![s] = Append(@, currentTerm[s])]
    /\ UNCHANGED <<currentTerm, role, votedFor, commitIndex, votesGranted, matchIndex, heard,
                   pendingRead, dTerm, dVote, msgs, ghostVars>>

(* The leader sends AppendEntries to each peer in T, each with every entry *)
(* after a prev_log_index of its own (none for a heartbeat). Any index:    *)
(* no nextIndex is modelled. Next sends to one peer at a time; a trace may *)
(* log a broadcast as one step.                                            *)
AppendEntriesTo(s, t, prev) ==
    [type |-> "AppendEntries", term |-> currentTerm[s], from |-> s, to |-> t,
     prev_log_index |-> prev, prev_log_term |-> TermAt(log[s], prev),
     entries |-> SubSeq(log[s], prev + 1, Len(log[s])), leader_commit |-> commitIndex[s],
     read_id |-> 0]

AppendEntries(s, T) ==
    /\ role[s] = "Leader"
    /\ T # {} /\ s \notin T
    /\ \E prev \in [T -> 0 .. Len(log[s])] :
          msgs' = msgs \cup {AppendEntriesTo(s, t, prev[t]) : t \in T}
    /\ UNCHANGED <<serverVars, ghostVars>>

(* Batching: the leader sends to each peer t in DOMAIN prev the entries    *)
(* prev[t] + 1 .. last[t] of its log, which may stop short of its end (a   *)
(* batch bounded in size; none at all: a heartbeat). AppendEntries is the  *)
(* case last[t] = Len(log[s]). Only with "batching" (the trace checks of   *)
(* the core use it, with prev and last read from the logged messages;      *)
(* without it the state graph of every config is unchanged).               *)
AppendBatches(s, prev, last) ==
    /\ "batching" \in Features
    /\ role[s] = "Leader"
    /\ DOMAIN prev # {} /\ s \notin DOMAIN prev
    /\ \A t \in DOMAIN prev : prev[t] <= last[t] /\ last[t] <= Len(log[s])
    /\ msgs' = msgs \cup
          {[AppendEntriesTo(s, t, prev[t]) EXCEPT !.entries = SubSeq(log[s], prev[t] + 1, last[t])]
           : t \in DOMAIN prev}
    /\ UNCHANGED <<serverVars, ghostVars>>

AppendEntriesBatched(s, T) ==
    /\ "batching" \in Features
    /\ \E prev \in [T -> 0 .. Len(log[s])], last \in [T -> 0 .. Len(log[s])] :
          AppendBatches(s, prev, last)

(* A read arrives at the leader: ReadIndex. The read index is the commit   *)
(* index; the leader confirms it still leads by a heartbeat round carrying *)
(* the read's id (read_id), and serves the read when a quorum answered.    *)
ReadCommittedInTerm(s) ==
    TermAt(log[s], commitIndex[s]) = currentTerm[s] \/ Variant = "read_before_term_commit"

ClientRead(s) ==
    /\ role[s] = "Leader"
    /\ readCount < MaxReads
    /\ pendingRead[s].id = 0
    /\ ReadCommittedInTerm(s)
    /\ readCount' = readCount + 1
    /\ IF Variant = "read_without_quorum"
          THEN \* BROKEN: served at once, without confirming leadership
               /\ reads' = reads \cup {[floor |-> MaxCommitted, index |-> commitIndex[s],
                                        term |-> TermAt(log[s], commitIndex[s])]}
               /\ UNCHANGED <<pendingRead, msgs>>
          ELSE /\ pendingRead' = [pendingRead EXCEPT ![s] =
                     [id |-> readCount + 1, index |-> commitIndex[s], acks |-> {s},
                      floor |-> MaxCommitted]]
               /\ msgs' = msgs \cup
                     {[type |-> "AppendEntries", term |-> currentTerm[s], from |-> s, to |-> t,
                       prev_log_index |-> 0, prev_log_term |-> 0, entries |-> <<>>,
                       leader_commit |-> commitIndex[s], read_id |-> readCount + 1]
                      : t \in Peers(s)}
               /\ UNCHANGED reads
    /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesGranted, matchIndex,
                   heard, dTerm, dVote, elections, committed, campaigns, readRefused, restarts>>

(* Leadership transfer: the leader tells an up-to-date follower to campaign *)
(* at once, skipping the pre-vote.                                          *)
TransferLeadership(s, t) ==
    /\ "transfer" \in Features
    /\ role[s] = "Leader"
    /\ t # s
    /\ matchIndex[s][t] = Len(log[s])
    /\ msgs' = msgs \cup {[type |-> "TimeoutNow", term |-> currentTerm[s], from |-> s, to |-> t]}
    /\ UNCHANGED <<serverVars, ghostVars>>

(* CheckQuorum: a leader that has not heard from a quorum within an        *)
(* election timeout steps down (the timing is not modelled: any time).      *)
CheckQuorum(s) ==
    /\ "check_quorum" \in Features
    /\ role[s] = "Leader"
    /\ role' = [role EXCEPT ![s] = "Follower"]
    /\ DropRead(s)
    /\ UNCHANGED <<currentTerm, votedFor, log, commitIndex, votesGranted, matchIndex, heard,
                   dTerm, dVote, msgs, elections, committed, reads, campaigns, readCount, restarts>>

(* The lease lapses: an election timeout passes since s last heard from a *)
(* leader, so it grants pre-votes again. Timeout also clears heard, but    *)
(* the core's lease is T from the last contact while its election timer    *)
(* fires after a random delay in [T, 2T): the lease may lapse first. Only  *)
(* with "lease_expiry" (the trace checks of the core use it; without it    *)
(* the state graph of every config is unchanged).                          *)
LeaseExpires(s) ==
    /\ "lease_expiry" \in Features
    /\ heard[s]
    /\ heard' = [heard EXCEPT ![s] = FALSE]
    /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesGranted, matchIndex,
                   pendingRead, dTerm, dVote, msgs, ghostVars>>

---------------------------------------------------------------------------
(* Message handlers *)

(* A message of a higher term (other than a pre-vote request or a granted *)
(* pre-vote answer, whose terms nobody holds yet): become a follower of    *)
(* that term with no vote, and persist that.                               *)
StepDown(s, m) ==
    /\ currentTerm' = [currentTerm EXCEPT ![s] = m.term]
    /\ role' = [role EXCEPT ![s] = "Follower"]
    /\ votedFor' = [votedFor EXCEPT ![s] = Nil]
    /\ heard' = [heard EXCEPT ![s] = FALSE]
    /\ Persist(s)
    /\ DropRead(s)
    /\ Reply(m, {})
    /\ UNCHANGED <<log, commitIndex, votesGranted, matchIndex, elections, committed, reads,
                   campaigns, readCount, restarts>>

LogOk(s, m) ==
    \/ m.last_log_term > LastTerm(log[s])
    \/ (m.last_log_term = LastTerm(log[s]) /\ m.last_log_index >= Len(log[s]))

(* A (pre-)vote request. A real request of a higher term first makes r a   *)
(* follower of that term. A pre-vote is granted to a term above r's own    *)
(* for an up-to-date log, unless r leads or has heard from a leader within *)
(* its election timeout (the lease that makes PreVote non-disruptive), and *)
(* changes nothing at r. A vote is granted once per term, for an           *)
(* up-to-date log, and persisted before the answer is sent.                *)
HandleRequestVote(r, m) ==
    /\ m.type = "RequestVote" /\ m.to = r
    /\ LET pre == m.pre_vote
           bump == m.term > currentTerm[r] /\ (~pre \/ Variant = "prevote_bumps_term")
           term == IF bump THEN m.term ELSE currentTerm[r]
           vote == IF bump THEN Nil ELSE votedFor[r]
           inLease == role[r] = "Leader" \/ heard[r]
           grant == IF pre THEN m.term > currentTerm[r] /\ LogOk(r, m) /\ ~inLease
                    ELSE m.term = term /\ LogOk(r, m) /\ vote \in {Nil, m.from}
       IN /\ currentTerm' = [currentTerm EXCEPT ![r] = term]
          /\ role' = IF bump THEN [role EXCEPT ![r] = "Follower"] ELSE role
          /\ heard' = IF bump THEN [heard EXCEPT ![r] = FALSE] ELSE heard
          /\ votedFor' = [votedFor EXCEPT ![r] = IF ~pre /\ grant THEN m.from ELSE vote]
          /\ IF Variant = "vote_before_persist" /\ ~pre /\ grant
                THEN UNCHANGED <<dTerm, dVote>>  \* BROKEN: the vote is sent, not yet durable
                ELSE Persist(r)
          /\ IF bump THEN DropRead(r) ELSE UNCHANGED <<pendingRead, readRefused>>
          /\ Reply(m, {[type |-> "RequestVoteResponse", pre_vote |-> pre,
                        term |-> IF pre /\ grant THEN m.term ELSE term,
                        from |-> r, to |-> m.from, granted |-> grant]})
    /\ UNCHANGED <<log, commitIndex, votesGranted, matchIndex, elections, committed, reads,
                   campaigns, readCount, restarts>>

BecomeLeader(s, m) ==
    /\ role' = [role EXCEPT ![s] = "Leader"]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Server |-> 0]]
    /\ log' = IF "noop" \in Features /\ Len(log[s]) < MaxLogLen
                 THEN [log EXCEPT ![s] = Append(@, currentTerm[s])] ELSE log
    /\ elections' = elections \cup {[term |-> currentTerm[s], leader |-> s]}
    /\ Reply(m, {})
    /\ UNCHANGED <<currentTerm, votedFor, commitIndex, heard, pendingRead, dTerm, dVote,
                   committed, reads, campaigns, readCount, readRefused, restarts>>

(* An answer to a (pre-)vote request. A quorum of pre-votes starts the     *)
(* campaign proper; a quorum of votes makes the candidate leader.          *)
HandleRequestVoteResponse(s, m) ==
    /\ m.type = "RequestVoteResponse" /\ m.to = s
    /\ \/ /\ m.term > currentTerm[s] /\ ~(m.pre_vote /\ m.granted)
          /\ StepDown(s, m)
       \/ /\ m.granted
          /\ \/ m.pre_vote /\ role[s] = "PreCandidate" /\ m.term = currentTerm[s] + 1
             \/ ~m.pre_vote /\ role[s] = "Candidate" /\ m.term = currentTerm[s]
          /\ LET votes == votesGranted[s] \cup {m.from} IN
             IF ~Quorum(votes)
                THEN /\ votesGranted' = [votesGranted EXCEPT ![s] = votes]
                     /\ Reply(m, {})
                     /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, matchIndex,
                                    heard, pendingRead, dTerm, dVote, ghostVars>>
             ELSE IF m.pre_vote THEN /\ heard' = heard
                                     /\ Campaign(s, Delivered(m))
                  ELSE BecomeLeader(s, m)

(* The log l after accepting entries ents after index prev: unchanged if it *)
(* already holds them all, else cut at prev and extended (an entry is only  *)
(* removed when it conflicts, as the entries at prev+1.. agree up to there).*)
Accept(l, prev, ents) ==
    IF /\ prev + Len(ents) <= Len(l)
       /\ \A k \in 1 .. Len(ents) : l[prev + k] = ents[k]
       THEN l
       ELSE SubSeq(l, 1, prev) \o ents

PrevOk(r, m) ==
    IF Variant = "no_consistency_check"
       THEN m.prev_log_index <= Len(log[r])  \* BROKEN: the previous entry's term is not checked
       ELSE m.prev_log_index = 0
            \/ (m.prev_log_index <= Len(log[r]) /\ log[r][m.prev_log_index] = m.prev_log_term)

(* AppendEntries: refused when it is stale (with r's term) or when the     *)
(* previous entry does not match (with prev_log_index; the core adds a     *)
(* conflict hint for fast backtracking, which the spec leaves out as it    *)
(* has no nextIndex); otherwise r follows the sender in its term, stores   *)
(* the entries, learns the commit index (up to the last entry the message  *)
(* vouched for) and acknowledges with the index matched. Answers echo the  *)
(* message's read_id (a ReadIndex round's id, or 0), except a stale one.  *)
HandleAppendEntries(r, m) ==
    /\ m.type = "AppendEntries" /\ m.to = r
    /\ IF m.term < currentTerm[r]
          THEN /\ Reply(m, {[type |-> "AppendEntriesResponse", term |-> currentTerm[r],
                             from |-> r, to |-> m.from, success |-> FALSE,
                             match_index |-> 0, read_id |-> 0]})
               /\ UNCHANGED <<serverVars, ghostVars>>
          ELSE LET ok == PrevOk(r, m)
                   newLog == IF ok THEN Accept(log[r], m.prev_log_index, m.entries) ELSE log[r]
                   last == m.prev_log_index + Len(m.entries)
                   vouched == IF Variant = "commit_past_match"
                                 THEN Len(newLog)  \* BROKEN: entries the leader never vouched for
                                 ELSE last
                   newCommit == IF ok THEN Max(commitIndex[r], Min(m.leader_commit, vouched))
                                ELSE commitIndex[r]
               IN /\ currentTerm' = [currentTerm EXCEPT ![r] = m.term]
                  /\ votedFor' = IF m.term > currentTerm[r]
                                    THEN [votedFor EXCEPT ![r] = Nil] ELSE votedFor
                  /\ role' = [role EXCEPT ![r] = "Follower"]
                  /\ heard' = [heard EXCEPT ![r] = TRUE]
                  /\ log' = [log EXCEPT ![r] = newLog]
                  /\ commitIndex' = [commitIndex EXCEPT ![r] = newCommit]
                  /\ committed' = committed \cup Reported(newLog, commitIndex[r], newCommit, m.term)
                  /\ Persist(r)
                  /\ IF role[r] # "Follower" THEN DropRead(r)
                                             ELSE UNCHANGED <<pendingRead, readRefused>>
                  /\ Reply(m, {[type |-> "AppendEntriesResponse", term |-> m.term,
                                from |-> r, to |-> m.from, success |-> ok,
                                match_index |-> IF ok THEN last ELSE m.prev_log_index,
                                read_id |-> m.read_id]})
                  /\ UNCHANGED <<votesGranted, matchIndex, elections, reads, campaigns,
                                 readCount, restarts>>

(* The commit index the leader s may take with match indexes match: the    *)
(* highest index a quorum holds whose entry is of s's term.                *)
CommitFor(s, match) ==
    LET agree(n) == {s} \cup {t \in Peers(s) : match[t] >= n}
        ok(n) == /\ Quorum(agree(n))
                 /\ \/ log[s][n] = currentTerm[s]
                    \/ Variant = "commit_old_term"  \* BROKEN: any term
    IN MaxOf({commitIndex[s]} \cup {n \in commitIndex[s] + 1 .. Len(log[s]) : ok(n)})

(* An answer to AppendEntries. At the leader of that term: a success       *)
(* raises the follower's match index and maybe the commit index; any       *)
(* answer carrying the pending read's id acknowledges it, and a quorum of  *)
(* acknowledgements serves the read at the commit index.                   *)
HandleAppendEntriesResponse(s, m) ==
    /\ m.type = "AppendEntriesResponse" /\ m.to = s
    /\ \/ /\ m.term > currentTerm[s]
          /\ StepDown(s, m)
       \/ /\ m.term = currentTerm[s] /\ role[s] = "Leader"
          /\ LET match == IF m.success
                             THEN [matchIndex[s] EXCEPT ![m.from] = Max(@, m.match_index)]
                             ELSE matchIndex[s]
                 newCommit == CommitFor(s, match)
                 rd == pendingRead[s]
                 acks == IF rd.id # 0 /\ m.read_id = rd.id THEN rd.acks \cup {m.from} ELSE rd.acks
                 serve == rd.id # 0 /\ Quorum(acks)
             IN /\ matchIndex' = [matchIndex EXCEPT ![s] = match]
                /\ commitIndex' = [commitIndex EXCEPT ![s] = newCommit]
                /\ committed' = committed \cup
                                Reported(log[s], commitIndex[s], newCommit, currentTerm[s])
                /\ pendingRead' = [pendingRead EXCEPT ![s] =
                                      IF serve THEN NoRead ELSE [rd EXCEPT !.acks = acks]]
                /\ reads' = IF serve
                               THEN reads \cup {[floor |-> rd.floor, index |-> newCommit,
                                                 term |-> TermAt(log[s], newCommit)]}
                               ELSE reads
                /\ Reply(m, {})
                /\ UNCHANGED <<currentTerm, role, votedFor, log, votesGranted, heard, dTerm,
                               dVote, elections, campaigns, readCount, readRefused, restarts>>

(* TimeoutNow from the leader of r's term: campaign at once, no pre-vote. *)
HandleTimeoutNow(r, m) ==
    /\ m.type = "TimeoutNow" /\ m.to = r
    /\ m.term = currentTerm[r] /\ role[r] = "Follower"
    /\ heard' = [heard EXCEPT ![r] = FALSE]
    /\ Campaign(r, Delivered(m))

Receive(m) ==
    \/ HandleRequestVote(m.to, m)
    \/ HandleRequestVoteResponse(m.to, m)
    \/ HandleAppendEntries(m.to, m)
    \/ HandleAppendEntriesResponse(m.to, m)
    \/ HandleTimeoutNow(m.to, m)

(* The network loses a message (and a node ignores one it has no use for). *)
LoseMessage(m) ==
    /\ msgs' = msgs \ {m}
    /\ UNCHANGED <<serverVars, ghostVars>>

---------------------------------------------------------------------------
(* Crashes *)

(* A node restarts from its durable state: term, vote and log. *)
Restart(s) ==
    /\ "crash" \in Faults
    /\ restarts < MaxRestarts
    /\ restarts' = restarts + 1
    /\ currentTerm' = [currentTerm EXCEPT ![s] = dTerm[s]]
    /\ votedFor' = [votedFor EXCEPT ![s] = dVote[s]]
    /\ role' = [role EXCEPT ![s] = "Follower"]
    /\ commitIndex' = [commitIndex EXCEPT ![s] = 0]
    /\ votesGranted' = [votesGranted EXCEPT ![s] = {}]
    /\ matchIndex' = [matchIndex EXCEPT ![s] = [t \in Server |-> 0]]
    /\ heard' = [heard EXCEPT ![s] = FALSE]
    /\ pendingRead' = [pendingRead EXCEPT ![s] = NoRead]
    /\ UNCHANGED <<log, dTerm, dVote, msgs, elections, committed, reads, campaigns, readCount,
                   readRefused>>

(* Only in vote_before_persist: the storage catches up with a granted vote. *)
PersistState(s) ==
    /\ dTerm[s] # currentTerm[s] \/ dVote[s] # votedFor[s]
    /\ dTerm' = [dTerm EXCEPT ![s] = currentTerm[s]]
    /\ dVote' = [dVote EXCEPT ![s] = votedFor[s]]
    /\ UNCHANGED <<currentTerm, role, votedFor, log, commitIndex, votesGranted, matchIndex,
                   heard, pendingRead, msgs, ghostVars>>

---------------------------------------------------------------------------

(* Named, so that counterexamples say which kind of step was taken. *)
DeliverMessage == \E m \in msgs : Receive(m)
DropMessage == \E m \in msgs : LoseMessage(m)

Next ==
    \/ \E s \in Server :
          \/ Timeout(s)
          \/ ClientRequest(s)
          \/ ClientRead(s)
          \/ CheckQuorum(s)
          \/ LeaseExpires(s)
          \/ Restart(s)
          \/ PersistState(s)
          \/ \E t \in Server : \/ AppendEntries(s, {t})
                             \/ AppendEntriesBatched(s, {t})
                             \/ TransferLeadership(s, t)
    \/ DeliverMessage
    \/ DropMessage

Spec == Init /\ [][Next]_vars

Symmetry == Permutations(Server)

(* States that differ only in values no action will read before resetting *)
(* them have the same future, so TLC may identify them: votes received     *)
(* outside a campaign (reset when one starts), match indexes outside       *)
(* leadership (reset on election), and without PreVote the lease flag      *)
(* (read only by pre-vote requests).                                       *)
View ==
    <<currentTerm, role, votedFor, log, commitIndex,
      [s \in Server |-> IF role[s] \in {"PreCandidate", "Candidate"} THEN votesGranted[s] ELSE {}],
      [s \in Server |-> IF role[s] = "Leader" THEN matchIndex[s] ELSE <<>>],
      IF "prevote" \in Features THEN heard ELSE <<>>,
      pendingRead, dTerm, dVote, msgs, ghostVars>>

MsgBound == Cardinality(msgs) <= MaxMsgs

---------------------------------------------------------------------------
(* Safety, over the observer history. *)

(* At most one leader is ever elected in a term. *)
ElectionSafety ==
    \A e1, e2 \in elections : e1.term = e2.term => e1.leader = e2.leader

(* Two logs holding an entry of the same index and term agree on every    *)
(* entry up to it.                                                         *)
LogMatching ==
    \A s, t \in Server :
        \A i \in 1 .. Min(Len(log[s]), Len(log[t])) :
            log[s][i] = log[t][i] => SubSeq(log[s], 1, i) = SubSeq(log[t], 1, i)

(* A leader's log holds every entry reported committed in its term or     *)
(* before.                                                                 *)
LeaderCompleteness ==
    \A s \in Server :
        role[s] = "Leader" =>
            \A c \in committed :
                c.at <= currentTerm[s] => c.index <= Len(log[s]) /\ log[s][c.index] = c.term

(* No two entries of different terms are ever reported committed at one   *)
(* index: every node applies the same command at each index.              *)
StateMachineSafety ==
    \A c1, c2 \in committed : c1.index = c2.index => c1.term = c2.term

(* Every read is served at an index at least as high as any index          *)
(* reported committed anywhere before the read arrived (it sees every      *)
(* write acknowledged before it started), and of an entry reported         *)
(* committed (it sees only committed writes).                              *)
LinearizableReads ==
    \A r \in reads :
        /\ r.index >= r.floor
        /\ r.index = 0 \/ \E c \in committed : c.index = r.index /\ c.term = r.term

(* Every term a node holds was opened by a real candidacy: pre-votes       *)
(* never raise terms (what keeps a returning node from disrupting).        *)
TermsOpenedByCandidates ==
    \A s \in Server : currentTerm[s] = 0 \/ currentTerm[s] \in campaigns

---------------------------------------------------------------------------
(* Reachability: each of these is expected to be VIOLATED (TLC finds a     *)
(* behaviour where the interesting thing happens). See specs/reach/.       *)

NeverLeader == elections = {}

NeverCommitted == committed = {}

(* A leader is elected while some log holds an entry of an older term that *)
(* nobody has reported committed: leadership changed with entries in flight.*)
NeverLeaderChangeInFlight ==
    ~\E s \in Server :
        /\ role[s] = "Leader"
        /\ \E e \in elections : e.term < currentTerm[s]
        /\ \E t \in Server : \E i \in 1 .. Len(log[t]) :
              /\ log[t][i] < currentTerm[s]
              /\ ~\E c \in committed : c.index = i /\ c.term = log[t][i]

(* A stale leader gives up a pending read: it learned of a newer term.     *)
NeverStaleReadRefused == ~readRefused

(* A read is served after a quorum confirmed leadership. *)
NeverReadServed == reads = {}

(* A pre-vote fails to disrupt a healthy leader: a node whose log would    *)
(* have earned the pre-vote is refused it by a follower that hears from    *)
(* the leader, and the leader stays leader of its term.                    *)
NeverPreVoteFailsToDisrupt ==
    [][~\E m \in msgs :
          /\ m.type = "RequestVote" /\ m.pre_vote
          /\ m \notin msgs'
          /\ LET r == m.to IN
             /\ role[r] = "Follower" /\ heard[r]
             /\ m.term > currentTerm[r] /\ LogOk(r, m)
             /\ \E l \in Server :
                   /\ role[l] = "Leader" /\ currentTerm[l] = currentTerm[r]
                   /\ role'[l] = "Leader" /\ currentTerm'[l] = currentTerm[l]
             /\ \E a \in msgs' \ msgs :
                   a.type = "RequestVoteResponse" /\ a.to = m.from /\ ~a.granted]_vars

=============================================================================
