"""Chaos harness for the replicated key-value store in the deterministic simulator.

What runs: ``n`` real :class:`~trio_foundation.protocols.raft.RaftNode` cores, each
replicating a real :class:`~trio_foundation.protocols.kv_machine.KVMachine` (commands
as the msgspec bytes the service logs), on :class:`~trio_foundation.runtime.sim.Simulation`
under a nemesis drawn from the seed by
:func:`~trio_foundation.verify.nemesis.random_schedule` with every fault kind
(loss, duplication, delay, reordering, partitions and one-way cuts, crash and
restart, pause and resume, clock offset and drift), plus Jepsen's
leader-targeting nemesis: about once a second (seeded) whoever leads is
isolated, isolated with its clock slowed (rate ``1 + SLOW_DRIFT``, so its
CheckQuorum step-down comes late), paused or crashed, for 0.5-3 s.

**Storage.** Each node's durable state lives on a
:class:`~trio_foundation.runtime.simdisk.SimDisk` as a real
:class:`~trio_foundation.runtime.raft_log.RaftLog` (small segments, so they rotate
and compaction deletes them; entries and snapshots in the service's wire
encoding). The core's ``Persist`` records are durable when the step that
emitted them returns (the driver's contract), so they are written lazily — in
order, each as one ``save`` — when it matters: just before the node restarts.
About half of the crashes are *torn*: the crash is armed at the fault's time
and strikes the node's next step that persists, during the ``save`` of that
step's record (at a random filesystem call of it; a write lands partly), so the
step's messages and replies are never sent. The disk then reboots as a real one
may (unsynced bytes lost, cut, garbled or reordered) and the node restarts from
what :class:`RaftLog` recovers (it cuts the torn tail). The harness checks the
recovered state is the state before the torn record or after it.

**Clients.** ``clients`` processes issue ``get`` (ReadIndex reads), ``put``,
``cas`` and ``delete`` over two keys; as in Jepsen each is bound to a node and
starts every operation there (one read-only client per node, the others mixed),
and like :class:`RaftClient` it follows the leader hints: a write is
a ``Proposal`` with a fresh session id and request id 1, retried unchanged
(follow the leader hint; after a timeout or a crash, another node), so the core
applies it at most once. A write whose every attempt certainly took no effect
(``NotLeader``, ``Rejected``, node down) is ``fail``; one with any attempt of
unknown fate that never got an answer is ``info`` (the process then continues
under a fresh id, as in Jepsen); a failed ``cas`` is ``fail`` (it saw another
value). Each key's history is checked as a ``cas-register`` (``delete`` is a
write of ``None``) by :func:`~trio_foundation.verify.lincheck.check_history`.

After the nemesis stops, the cluster must settle: every node applies the same
commands (equal state-machine snapshots at equal applied indexes).

Replay: everything derives from the seed; ``python tests/raft_kv_chaos.py --seed
S --nodes N [--variant V]`` reruns one run and prints its verdict and digest.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, Literal

import attrs
import trio

from trio_foundation.coordination.raft_wire import (
    decode_entry,
    decode_snapshot,
    encode_entry,
    encode_snapshot,
)
from trio_foundation.protocols import kv_machine as m
from trio_foundation.protocols.effects import ClientRequest, Core, Effect, Persist
from trio_foundation.protocols.raft import (
    NotLeader,
    Proposal,
    RaftDurable,
    RaftNode,
    RaftPersist,
    Rejected,
    apply_persist,
)
from trio_foundation.runtime.raft_log import RaftLog, RaftLogFailedError
from trio_foundation.runtime.sim import ClientOutcome, Simulation
from trio_foundation.runtime.simdisk import SimDisk
from trio_foundation.verify.history import HistoryEvent, HistoryRecorder
from trio_foundation.verify.lincheck import check_history
from trio_foundation.verify.nemesis import (
    FAULT_KINDS,
    ClockSkew,
    Crash,
    FaultEvent,
    FaultSchedule,
    Heal,
    Partition,
    Pause,
    Restart,
    Resume,
    random_schedule,
)

Variant = Literal["correct", "stale-read", "commit-old-term"]
VARIANTS: Final = ("correct", "stale-read", "commit-old-term")

ELECTION_TIMEOUT: Final = 1.0
MAX_LOG_ENTRIES: Final = 48  # compaction and InstallSnapshot happen in every run
SEGMENT_BYTES: Final = 4096  # the smallest: segments rotate and are deleted
KEYS: Final = ("k0", "k1", "k2")
ATTEMPT_TIMEOUT: Final = 1.0  # simulated seconds a client waits for one reply
OP_DEADLINE: Final = 4.0  # simulated seconds a client spends on one operation
TORN_FRACTION: Final = 0.5
SLOW_DRIFT: Final = -0.4  # a slowed leader's clock rate is 1 + SLOW_DRIFT
LEADER_FAULTS: Final = 1.0  # leader-targeted episodes per simulated second
TORN_WINDOW: Final = 0.5  # an armed torn crash that found no write by then is a plain crash
DIR: Final = "/raft"


# ---------------------------------------------------------------------- broken cores


class ReadWithoutQuorumNode(RaftNode):  # type: ignore[misc]  # subclassing a @final core on purpose
    """Broken: serves a ReadIndex read without confirming leadership."""

    def _read_confirmed(self, read_id: int) -> bool:
        return True


class CommitOldTermNode(RaftNode):  # type: ignore[misc]
    """Broken (the paper's Figure 8): counts replicas of old-term entries toward commit."""

    def _may_commit_by_counting(self, index: int) -> bool:
        return True


_CORES: Final[dict[str, type[RaftNode]]] = {
    "correct": RaftNode,
    "stale-read": ReadWithoutQuorumNode,
    "commit-old-term": CommitOldTermNode,
}


# ---------------------------------------------------------------------- state machine


class BytesKV:
    """:class:`KVMachine` behind the bytes interface the service replicates."""

    def __init__(self) -> None:
        self.kv = m.KVMachine()

    def apply(self, command: Any) -> bytes:
        return m.encode(self.kv.apply(command))

    def query(self, query: Any) -> Any:
        return self.kv.query(query)

    def snapshot(self) -> bytes:
        return self.kv.snapshot()

    def restore(self, data: bytes) -> None:
        self.kv.restore(data)


# ---------------------------------------------------------------------- storage


class StorageViolation(AssertionError):
    """What a node recovered from its disk is not what it had made durable."""


@attrs.define
class NodeDisk:
    """One node's disk: it outlives the node's cores."""

    node: int
    disk: SimDisk
    salts: random.Random
    log: RaftLog
    #: records handed to storage and not yet written (durable by contract)
    pending: list[RaftPersist] = attrs.Factory(list)
    #: the durable state those records add up to (the observer's ghost)
    durable: RaftDurable = attrs.Factory(RaftDurable)
    #: a record cut by a torn crash, and the durable state after it
    torn: tuple[RaftPersist, RaftDurable] | None = None
    armed: bool = False

    async def _write(self, crash_in_last: int | None) -> None:
        for k, record in enumerate(self.pending):
            if crash_in_last is not None and k == len(self.pending) - 1:
                self.disk.crash_at = self.disk.calls + crash_in_last
            await self.log.save_record(
                record, encode_entry=encode_entry, encode_snapshot=encode_snapshot
            )

    def flush(self, crash_in_last: int | None = None) -> None:
        """Write the pending records (a crash at call ``crash_in_last`` of the last one)."""
        if not self.pending:
            return
        try:
            trio.run(self._write, crash_in_last)
        except RaftLogFailedError:
            assert crash_in_last is not None, "the disk failed without a simulated crash"
        self.pending.clear()

    def reboot(self) -> RaftDurable:
        """Power-cycle the disk, reopen the log and return what it recovered."""
        self.log.close()
        self.disk.reboot()
        self.log = open_log(self.disk, self.salts)
        state = self.log.load()
        snap = None if state.snapshot is None else decode_snapshot(state.snapshot.data)
        return RaftDurable(
            state.hard_state.term,
            state.hard_state.voted_for,
            snap,
            tuple(decode_entry(e.data) for e in state.entries),
        )


def open_log(disk: SimDisk, salts: random.Random) -> RaftLog:
    return RaftLog(DIR, segment_bytes=SEGMENT_BYTES, ops=disk, salts=salts, io="inline")


def _same(a: RaftDurable, b: RaftDurable) -> bool:
    """Equal durable states (a snapshot compares by what it covers)."""

    def key(d: RaftDurable) -> Any:
        snap = d.snapshot
        s = None if snap is None else (snap.last_included_index, snap.last_included_term, snap.data)
        si = 0 if snap is None else snap.last_included_index
        return (d.term, d.voted_for, s, tuple(e for e in d.log if e.index > si))

    return bool(key(a) == key(b))


# ---------------------------------------------------------------------- the wrapped core


class DiskNode:
    """A :class:`RaftNode` whose ``Persist`` records go to its :class:`NodeDisk`.

    Implements :class:`~trio_foundation.protocols.effects.Core`; the simulator never
    sees a ``Persist`` (so it never restores the core: the harness does, from disk).
    """

    def __init__(self, harness: RaftKVChaos, inner: RaftNode, disk: NodeDisk) -> None:
        self.harness = harness
        self.inner = inner
        self.disk = disk
        self.dead = False

    def _store(self, effects: list[Effect]) -> list[Effect]:
        if self.dead:
            return []
        out: list[Effect] = []
        for eff in effects:
            if isinstance(eff, Persist):
                record: RaftPersist = eff.data
                after = apply_persist(self.disk.durable, record)
                if self.disk.armed:
                    # The crash strikes while this record is being written: nothing
                    # else of the step happens.
                    self.disk.torn = (record, after)
                    self.disk.armed = False
                    self.disk.pending.append(record)
                    self.dead = True
                    self.harness.torn_crash(self.inner.id)
                    return []
                self.disk.pending.append(record)
                self.disk.durable = after
                if len(self.disk.pending) >= 256:
                    self.disk.flush()
            else:
                out.append(eff)
        return out

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        return self._store(self.inner.on_start(now, rng))

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        return [] if self.dead else self._store(self.inner.on_message(now, src, msg))

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return [] if self.dead else self._store(self.inner.on_timer(now, name))

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return [] if self.dead else self._store(self.inner.on_client(now, request))

    def snapshot_persistent(self) -> Any:
        return self.disk.durable

    def restore(self, snapshot: Any) -> None:  # pragma: no cover - the sim never persists
        raise AssertionError("the harness restores DiskNode cores itself")


# ---------------------------------------------------------------------- the run


@attrs.frozen
class RaftChaosRun:
    """One run's outcome (before the linearizability check)."""

    seed: int
    nodes: int
    variant: str
    history: tuple[HistoryEvent, ...]
    statuses: dict[str, int]
    fault_counts: dict[str, int]
    counters: dict[str, int]
    digest: str
    sim_time: float
    settled: str | None  # why the replicas disagree at the end, or None

    @property
    def replay(self) -> str:
        """The command that reruns this run exactly."""
        return replay_command(self.seed, self.nodes, self.variant)


def replay_command(seed: int, nodes: int, variant: str = "correct") -> str:
    command = f"python tests/raft_kv_chaos.py --seed {seed} --nodes {nodes}"
    return command + (f" --variant {variant}" if variant != "correct" else "")


def chaos_schedule(seed: int, nodes: int, horizon: float, intensity: float) -> FaultSchedule:
    """Every fault kind of ``random_schedule``; crashes are rewritten by the harness."""
    return random_schedule(
        seed, nodes=nodes, kinds=FAULT_KINDS, horizon=horizon, intensity=intensity
    )


class RaftKVChaos:
    """Builds and runs one seeded run (see the module docstring)."""

    def __init__(
        self,
        seed: int,
        *,
        nodes: int = 3,
        variant: str = "correct",
        horizon: float = 20.0,
        intensity: float = 0.3,
        leader_faults: float = LEADER_FAULTS,
        attempt_timeout: float = ATTEMPT_TIMEOUT,
        clients: int = 8,
        keys: int = 2,
        readers: int | None = None,
        max_ops: int = 1000,
    ) -> None:
        if variant not in _CORES:
            raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS)}")
        self.seed = seed
        self.n = nodes
        self.variant = variant
        self.horizon = horizon
        self.clients = clients
        self.max_ops = max_ops
        self.keys = KEYS[:keys]
        self.readers = nodes if readers is None else readers
        self.attempt_timeout = attempt_timeout
        self.core_cls = _CORES[variant]
        self.rng = random.Random(f"raft-kv-chaos:{seed}")
        self.recorder = HistoryRecorder(max_events=2 * max_ops + 2 * clients + 2)
        self.counters: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.disks = [self._new_disk(i) for i in range(nodes)]
        self.cores: dict[int, DiskNode] = {}
        self.issued = 0
        self.active = 0
        self.next_value = 1
        self.next_session = 1
        self.next_process = clients
        schedule: list[FaultEvent] = []
        torn_rng = random.Random(f"raft-kv-torn:{seed}")
        raw = chaos_schedule(seed, nodes, horizon, intensity)
        self.torn_plan: list[tuple[float, int, float]] = []  # (at, node, plain crash at)
        restarts = sorted((ev.at, ev.fault.node) for ev in raw if isinstance(ev.fault, Restart))
        for ev in raw:
            if isinstance(ev.fault, Crash) and torn_rng.random() < TORN_FRACTION:
                node = ev.fault.node
                back = min((t for t, n in restarts if n == node and t >= ev.at), default=horizon)
                self.torn_plan.append((ev.at, node, min(ev.at + TORN_WINDOW, (ev.at + back) / 2)))
                continue
            schedule.append(ev)
        self.schedule = tuple(schedule)
        self.sim = Simulation(self._factory, nodes=nodes, seed=seed, schedule=self.schedule)
        for at, node, fallback in self.torn_plan:
            self.sim.call_at(at, self._arm(node, fallback))
        # Jepsen's leader-targeting nemesis: isolate, pause or crash whoever leads now.
        target_rng = random.Random(f"raft-kv-leader-nemesis:{seed}")
        for _ in range(round(horizon * leader_faults)):
            at = round(target_rng.uniform(1.0, horizon - 0.5), 3)
            kind = target_rng.choice(["isolate", "slow-isolate", "pause", "crash"])
            length = round(target_rng.uniform(0.5, 3.0), 3)
            self.sim.call_at(at, self._hit_leader(kind, min(horizon, at + length), target_rng))
        for c in range(clients):
            self.sim.call_at(self.rng.uniform(0.5, 1.0), self._client_loop(c))

    # -- nodes and disks

    def _new_disk(self, node: int) -> NodeDisk:
        disk = SimDisk(random.Random(f"{self.seed}:disk:{node}"))
        salts = random.Random(f"{self.seed}:salts:{node}")
        return NodeDisk(node, disk, salts, open_log(disk, salts))

    def _factory(self, node: int, n_nodes: int) -> Core:
        store = self.disks[node]
        inner = self.core_cls(
            node,
            range(n_nodes),
            BytesKV(),
            election_timeout=ELECTION_TIMEOUT,
            max_log_entries=MAX_LOG_ENTRIES,
        )
        if node in self.cores:  # a restart: recover from the disk
            self._recover(store, inner)
        core = DiskNode(self, inner, store)
        self.cores[node] = core
        return core

    def _recover(self, store: NodeDisk, inner: RaftNode) -> None:
        store.armed = False
        if store.torn is not None:
            record, after = store.torn
            store.flush(crash_in_last=self.rng.randrange(8 if record.snapshot else 3))
            store.torn = None
            recovered = store.reboot()
            self.counters["torn crash recovered"] += 1
            if _same(recovered, after):
                self.counters["torn record kept"] += 1
                store.durable = after
            elif _same(recovered, store.durable):
                self.counters["torn record lost"] += 1
            elif record.snapshot is None:
                raise StorageViolation(
                    f"node {store.node}: after a torn write the log recovered neither the "
                    f"state before the record nor after it (seed {self.seed})"
                )
            else:  # a snapshot save is three steps; a crash may keep the first ones
                self.counters["torn snapshot save partly kept"] += 1
                store.durable = recovered
        else:
            store.flush()
            recovered = store.reboot()
            self.counters["crash recovered"] += 1
            if not _same(recovered, store.durable):
                raise StorageViolation(
                    f"node {store.node}: recovered {recovered!r}, durable was "
                    f"{store.durable!r} (seed {self.seed})"
                )
        if recovered.snapshot is not None:
            self.counters["restart from a snapshot"] += 1
        inner.restore(recovered)

    def _arm(self, node: int, fallback: float) -> Any:
        def arm() -> None:
            if self.sim.is_up(node) and not self.sim.is_paused(node):
                self.disks[node].armed = True
                self.counters["torn crash armed"] += 1
                self.sim.call_at(fallback, lambda: self._disarm(node))
            else:
                self.sim.apply_fault(Crash(node))

        return arm

    def _disarm(self, node: int) -> None:
        if self.disks[node].armed:  # no write came: crash it plainly
            self.disks[node].armed = False
            self.sim.apply_fault(Crash(node))

    def leader(self) -> int | None:
        """The leader of the highest term among the running, unpaused nodes."""
        best: tuple[int, int] | None = None
        for i, core in sorted(self.cores.items()):
            inner = core.inner
            up = self.sim.is_up(i) and not self.sim.is_paused(i) and not core.dead
            if up and inner.role == "leader" and (best is None or inner.term > best[0]):
                best = (inner.term, i)
        return None if best is None else best[1]

    def _hit_leader(self, kind: str, end: float, rng: random.Random) -> Any:
        def hit() -> None:
            node = self.leader()
            if node is None:
                return
            self.counters[f"leader {kind}"] += 1
            sim = self.sim
            if kind in ("isolate", "slow-isolate"):
                others = [i for i in range(self.n) if i != node]
                sim.apply_fault(Partition(([node], others)))
                sim.apply_fault(Heal(), at=end)
                if kind == "slow-isolate":  # and its clock runs slow meanwhile
                    self._set_drift(node, SLOW_DRIFT)
                    sim.call_at(end, lambda: self._set_drift(node, 0.0))
            elif kind == "pause":
                sim.apply_fault(Pause(node))
                sim.apply_fault(Resume(node), at=end)
            else:
                if rng.random() < TORN_FRACTION:
                    self._arm(node, min(sim.now + TORN_WINDOW, (sim.now + end) / 2))()
                else:
                    sim.apply_fault(Crash(node))
                sim.apply_fault(Restart(node), at=end)

        return hit

    def _set_drift(self, node: int, drift: float) -> None:
        """Change ``node``'s clock rate now without a jump in its reading."""
        now = self.sim.now
        offset = self.sim.local_time(node) - (1.0 + drift) * now
        self.sim.apply_fault(ClockSkew(node, offset, drift))

    def torn_crash(self, node: int) -> None:
        self.counters["torn crash"] += 1
        self.sim.apply_fault(Crash(node))

    # -- clients

    def _client_loop(self, client: int) -> Any:
        # process id, its own node (as Jepsen binds a client to a node), the node it
        # sends to, and the last value it saw per key
        state: dict[str, Any] = {"process": client, "home": client % self.n}
        state["reader"] = client < self.readers
        return lambda: self._next_op(client, state)

    def _next_op(self, client: int, state: dict[str, Any]) -> None:
        if self.issued >= self.max_ops or self.sim.now >= self.horizon:
            return
        self.issued += 1
        self.active += 1
        rng = self.rng
        key = rng.choice(self.keys)
        roll = rng.random()
        if state["reader"] or roll < 0.4:
            f, hval, op, value = "read", None, "read", m.Get(key.encode())
        else:
            new = self.next_value
            self.next_value += 1
            if roll < 0.7:
                f, hval, cmd = "write", new, m.Put(key.encode(), str(new).encode())
            elif roll < 0.9:
                expected = state.get(key, rng.choice([None, new - 1]))
                f, hval = "cas", [expected, new]
                exp = None if expected is None else str(expected).encode()
                cmd = m.Cas(key.encode(), exp, str(new).encode())
            else:
                f, hval, cmd = "write", None, m.Delete(key.encode())
            session = self.next_session
            self.next_session += 1
            op, value = "propose", Proposal(session, 1, m.encode(m.Request(cmd)))
        process = state["process"]
        state["target"] = state["home"]  # each operation starts at the client's own node
        self.recorder.invoke(process, f, hval, key=key, time=self.sim.now)

        def finish(status: Literal["ok", "fail", "info"], out: Any) -> None:
            self.recorder.complete(process, status, out, time=self.sim.now)
            if status == "ok":
                state[key] = out if f != "cas" else out[1]
            self.statuses[f"{f} {status}"] += 1
            self.active -= 1
            if status == "info":
                state["process"] = self.next_process
                self.next_process += 1
            self.sim.call_at(
                self.sim.now + rng.uniform(0.0, 0.1), lambda: self._next_op(client, state)
            )

        def on_ok(answer: Any, node: int) -> None:
            if f == "read":
                self._note_read(node)
            finish(*self._result(f, hval, answer))

        def give_up(uncertain: bool) -> None:
            if f == "read":
                finish("fail", None)  # a read has no effect
            elif uncertain or f == "cas":
                # (a cas recorded ``fail`` would claim it saw another value)
                finish("info", hval)
            else:
                finish("fail", hval)  # every attempt certainly took no effect

        self._send_until_answered(state, op, value, on_ok=on_ok, give_up=give_up)

    def _send_until_answered(
        self,
        state: dict[str, Any],
        op: str,
        value: Any,
        *,
        on_ok: Callable[[Any, int], None],
        give_up: Callable[[bool], None],
    ) -> None:
        """A client's request, retried unchanged until a node answers it or time is up.

        Sent first to ``state["target"]``; after ``NotLeader`` to the hinted leader
        (another node, drawn from the seed, when the hint is no use), after a
        rejection, a crash or :attr:`attempt_timeout` without an answer to another
        node. ``on_ok(answer, node)`` when a node answers ok; ``give_up(uncertain)``
        once :data:`OP_DEADLINE` simulated seconds have passed, ``uncertain`` saying
        whether a proposal's attempt may have taken effect (a crash or a timeout with
        it outstanding).
        """
        rng = self.rng
        started = self.sim.now
        uncertain = False

        def retry(hint: int | None) -> None:
            if self.sim.now - started >= OP_DEADLINE:
                give_up(uncertain)
                return
            if hint is None or hint == state["target"] or not 0 <= hint < self.n:
                hint = rng.randrange(self.n)
            state["target"] = hint
            self.counters["client retries"] += 1
            self.sim.call_at(self.sim.now + rng.uniform(0.02, 0.15), attempt)

        def attempt() -> None:
            nonlocal uncertain
            answered = False

            def on_done(outcome: ClientOutcome) -> None:
                nonlocal answered, uncertain
                answered = True
                if outcome.status == "ok":
                    on_ok(outcome.value, target)
                elif outcome.status == "info":  # the node crashed with it outstanding
                    uncertain = uncertain or op == "propose"
                    retry(None)
                elif isinstance(outcome.value, NotLeader):
                    retry(outcome.value.leader)
                else:  # Rejected, or the node was down: certainly no effect
                    if isinstance(outcome.value, Rejected):
                        self.counters[f"rejected: {outcome.value.reason}"] += 1
                    retry(None)

            target = state["target"]
            request = self.sim.submit(target, op, value, on_done=on_done)

            def on_timeout() -> None:
                nonlocal uncertain
                if not answered and self.sim.abandon(request):
                    uncertain = uncertain or op == "propose"
                    retry(None)

            self.sim.call_at(self.sim.now + self.attempt_timeout, on_timeout)

        attempt()

    def _note_read(self, node: int) -> None:
        term = self.cores[node].inner.term
        if any(c.inner.term > term and c.inner.role == "leader" for c in self.cores.values()):
            self.counters["read answered by a deposed leader"] += 1

    def _result(self, f: str, hval: Any, value: Any) -> tuple[Literal["ok", "fail"], Any]:
        if f == "read":
            assert isinstance(value, m.GetResult), value
            self.counters["read ok"] += 1
            return "ok", None if value.kv is None else int(value.kv.value)
        result = m.decode_result(value)
        if isinstance(result, m.ErrorResult):
            raise AssertionError(f"the KV machine refused {f} {hval!r}: {result!r}")
        if f == "cas":
            assert isinstance(result, m.CasResult), result
            return ("ok", hval) if result.succeeded else ("fail", hval)
        return "ok", hval

    # -- running

    def run(self) -> RaftChaosRun:
        sim = self.sim
        sim.run(
            stop=lambda: self.issued > 0 and self.active == 0 and sim.now >= self.horizon,
            until=self.horizon + OP_DEADLINE + 30.0,
        )
        # Let the healed cluster settle, then compare the replicas.
        sim.run(until=sim.now + 5 * ELECTION_TIMEOUT)
        settled = self._agreement()
        for core in self.cores.values():
            self.counters["highest term"] = max(self.counters["highest term"], core.inner.term)
            self.counters["snapshots installed"] += core.inner.snapshots_installed
        return RaftChaosRun(
            seed=self.seed,
            nodes=self.n,
            variant=self.variant,
            history=self.recorder.events,
            statuses=dict(sorted(self.statuses.items())),
            fault_counts=sim.fault_counts(),
            counters=dict(sorted(self.counters.items())),
            digest=sim.event_log_digest(),
            sim_time=sim.now,
            settled=settled,
        )

    def _agreement(self) -> str | None:
        live = [c.inner for i, c in sorted(self.cores.items()) if self.sim.is_up(i) and not c.dead]
        if not live:
            return "no node is up at the end"
        applied = max(n.last_applied for n in live)
        states = {n.id: n.sm.snapshot() for n in live if n.last_applied == applied}
        if len(set(states.values())) > 1:
            return (
                f"replicas at applied index {applied} hold different states: nodes {sorted(states)}"
            )
        return None


def run_raft_kv_chaos(
    seed: int, *, nodes: int = 3, variant: str = "correct", **options: Any
) -> RaftChaosRun:
    """Run one seeded chaos run of the replicated KV (see the module docstring)."""
    return RaftKVChaos(seed, nodes=nodes, variant=variant, **options).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Replay one Raft KV chaos run.")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--variant", choices=VARIANTS, default="correct")
    parser.add_argument(
        "--measure",
        type=int,
        metavar="RUNS",
        help="instead of one run: RUNS fresh seeds (--seed is then the first of a "
        "seeded draw), printing the fraction caught",
    )
    args = parser.parse_args(argv)
    if args.measure:
        return measure(args.measure, args.nodes, args.variant, args.seed)
    if args.seed is None:
        parser.error("--seed is required (unless --measure)")
    run = run_raft_kv_chaos(args.seed, nodes=args.nodes, variant=args.variant)
    verdicts = check_keys(run.history)
    print(f"seed        {run.seed} ({run.nodes} nodes, {run.variant})")
    print(f"operations  {run.statuses}")
    print(f"faults      {run.fault_counts}")
    print(f"counters    {run.counters}")
    print(f"simulated   {run.sim_time:.3f} s")
    print(f"digest      {run.digest}")
    print(f"settled     {run.settled or 'replicas agree'}")
    print(f"verdicts    {verdicts}")
    bad = run.settled is not None or set(verdicts.values()) != {"linearizable"}
    return 1 if bad else 0


def measure(runs: int, nodes: int, variant: str, seed: int | None) -> int:
    """Run ``runs`` fresh seeds; print how many were caught (not linearizable, or
    replicas disagreeing) and the seeds that were."""
    draw = random.Random(seed)  # None: fresh from the OS
    caught = []
    for _ in range(runs):
        s = draw.randrange(2**32)
        run = run_raft_kv_chaos(s, nodes=nodes, variant=variant)
        verdicts = check_keys(run.history)
        if "not-linearizable" in verdicts.values() or run.settled is not None:
            caught.append(s)
    print(
        f"{variant}, {nodes} nodes: caught in {len(caught)} of {runs} runs "
        f"({100 * len(caught) / runs:.1f} %); caught seeds {caught[:20]}"
    )
    return 0


def check_keys(history: tuple[HistoryEvent, ...]) -> dict[str, str]:
    """Each key's verdict as a ``cas-register``."""
    result = check_history(history, "cas-register", timeout=60)
    return {str(p.key): p.verdict for p in result.partitions} or {"-": result.verdict}


if __name__ == "__main__":
    sys.exit(main())
