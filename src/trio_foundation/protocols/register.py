"""A replicated read/write register (multi-writer ABD) and deliberately broken variants.

Theory of operation
-------------------

Every node is a replica holding ``(tag, value)`` and a coordinator for the client
requests sent to it. Tags are ``(seq, node, incarnation, counter)`` tuples,
compared lexicographically; the last three fields make every tag a coordinator
mints unique, even across its crashes, so no two values ever share a tag.

* **write(v)**: *query* phase — ask every replica for its tag and wait for a
  majority; mint ``(max seq + 1, me, incarnation, counter)``; *store* phase — send
  ``(tag, v)`` to every replica and wait for a majority of acknowledgements.
* **read()**: *query* phase as above, pick the value with the highest tag; *store*
  phase — write that ``(tag, value)`` back to a majority (so a later read cannot
  see an older value), then answer.
* **replica**: answers a query with its ``(tag, value)``; on a store with a
  higher tag it adopts it and *persists* it before acknowledging (the runtime
  executes ``Persist`` before ``Send``).

Any two majorities intersect, so a phase that completed is seen by every later
query: that is what makes the register linearizable under loss, duplication,
reordering, partitions (the minority side stalls) and crash-restart (stores are
persisted before they are acknowledged). Lost messages are resent on a retry
timer to the replicas that have not answered; duplicates are harmless (answers
are counted per replica, stores are idempotent). An operation still in its
query phase after ``QUERY_ATTEMPTS`` retries is answered ``fail`` — no store was
sent, so it certainly took no effect; one abandoned in its store phase after
``MAX_ATTEMPTS`` retries gets no reply: the client's timeout records it as
unknown, which is the truth.

Read and write only: a compare-and-set needs consensus, which ABD does not give.

Broken variants (for the chaos suite to catch; never use them):

* ``stale-read``: reads answer from the local replica without a quorum.
* ``lost-write``: writes are acknowledged after updating the local replica only
  and replicated lazily, and nothing is persisted.
* ``split-brain``: the quorum is a majority of the nodes *heard from recently*
  (heartbeats), so each side of a partition believes it has a majority.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any, Final, Literal, TypeAlias, final

import attrs

from .effects import (
    CancelTimer,
    ClientRequest,
    CoreFactory,
    Effect,
    Persist,
    Reply,
    Send,
    SetTimer,
)

__all__ = [
    "HEARTBEAT_INTERVAL",
    "INITIAL_TAG",
    "MAX_ATTEMPTS",
    "MAX_PENDING_OPS",
    "QUERY_ATTEMPTS",
    "RETRY_INTERVAL",
    "SUSPECT_AFTER",
    "REGISTER_VARIANTS",
    "AbdRegister",
    "Heartbeat",
    "Query",
    "QueryAck",
    "RegisterState",
    "RegisterVariant",
    "Store",
    "StoreAck",
    "register_factory",
]

RegisterVariant: TypeAlias = Literal["correct", "stale-read", "lost-write", "split-brain"]
REGISTER_VARIANTS: Final[tuple[RegisterVariant, ...]] = (
    "correct",
    "stale-read",
    "lost-write",
    "split-brain",
)

Tag: TypeAlias = tuple[int, int, int, int]
OpId: TypeAlias = tuple[int, int, int]
INITIAL_TAG: Final[Tag] = (0, -1, 0, 0)
"""The tag of the initial value ``None``; lower than every minted tag."""

RETRY_INTERVAL: Final = 0.1
QUERY_ATTEMPTS: Final = 5
MAX_ATTEMPTS: Final = 20
MAX_PENDING_OPS: Final = 64
HEARTBEAT_INTERVAL: Final = 0.05
SUSPECT_AFTER: Final = 0.2
LAZY_REPLICATION: Final = 0.05


@final
@attrs.frozen
class Query:
    """Coordinator → replica: what is your ``(tag, value)``? (for operation ``op``)"""

    op: OpId


@final
@attrs.frozen
class QueryAck:
    """Replica → coordinator: my ``(tag, value)``."""

    op: OpId
    tag: Tag
    value: Any


@final
@attrs.frozen
class Store:
    """Coordinator → replica: adopt ``(tag, value)`` if ``tag`` is higher than yours."""

    op: OpId
    tag: Tag
    value: Any


@final
@attrs.frozen
class StoreAck:
    """Replica → coordinator: ``op``'s store is durable here."""

    op: OpId


@final
@attrs.frozen
class Heartbeat:
    """``split-brain`` only: I am alive."""


@final
@attrs.frozen
class RegisterState:
    """What a replica persists.

    Attributes:
        tag: the tag of ``value``. Invariant: never decreases.
        value: the register's value at this replica.
        incarnation: how many times this node has started; part of minted tags.
    """

    tag: Tag
    value: Any
    incarnation: int


@attrs.define
class _Op:
    id: OpId
    client: Hashable
    kind: Literal["read", "write"]
    value: Any
    phase: Literal["query", "store"] = "query"
    answers: dict[int, tuple[Tag, Any]] = attrs.Factory(dict)
    tag: Tag = INITIAL_TAG
    attempts: int = 0

    @property
    def timer(self) -> str:
        return f"retry:{self.id[2]}"


@final
class AbdRegister:
    """One node of the ABD register (a :class:`~trio_foundation.protocols.effects.Core`).

    Client requests: ``ClientRequest(client, "read")`` answers the value;
    ``ClientRequest(client, "write", v)`` answers ``v``. Any other op, or more
    than ``MAX_PENDING_OPS`` outstanding, is answered ``Reply(ok=False)``.

    Args:
        node: this node's id.
        nodes: the cluster size.
        variant: ``"correct"`` or one of the broken variants (see the module doc).
    """

    def __init__(self, node: int, nodes: int, *, variant: RegisterVariant = "correct") -> None:
        if variant not in REGISTER_VARIANTS:
            raise ValueError(f"unknown register variant {variant!r}")
        if not 0 <= node < nodes:
            raise ValueError(f"node must be in [0, {nodes}), got {node}")
        self._node = node
        self._n = nodes
        self._variant = variant
        self._state = RegisterState(INITIAL_TAG, None, 0)
        self._persisted: RegisterState | None = None
        self._counter = 0
        self._ops: dict[int, _Op] = {}
        self._heard: dict[int, float] = {}
        self._rng: random.Random | None = None

    # ------------------------------------------------------------ inspection

    @property
    def state(self) -> RegisterState:
        """This replica's current (volatile) state."""
        return self._state

    @property
    def pending(self) -> int:
        """Operations this node is coordinating."""
        return len(self._ops)

    def snapshot_persistent(self) -> RegisterState | None:
        """The state last persisted (``None`` if never)."""
        return self._persisted

    def restore(self, snapshot: Any) -> None:
        """Load a :class:`RegisterState` persisted before a crash."""
        if snapshot is not None:
            if not isinstance(snapshot, RegisterState):
                raise TypeError(f"expected a RegisterState, got {snapshot!r}")
            self._state = snapshot
            self._persisted = snapshot

    # ------------------------------------------------------------ core protocol

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Bump the incarnation (persisted) and, for ``split-brain``, start heartbeats."""
        self._rng = rng
        self._state = attrs.evolve(self._state, incarnation=self._state.incarnation + 1)
        effects: list[Effect] = self._persist()
        if self._variant == "split-brain":
            self._heard = {p: now for p in self._peers()}
            effects.extend(self._heartbeat())
        return effects

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Replica and coordinator message handling."""
        self._heard[src] = now
        if isinstance(msg, Query):
            return [Send(src, QueryAck(msg.op, self._state.tag, self._state.value))]
        if isinstance(msg, Store):
            return [*self._adopt(msg.tag, msg.value), Send(src, StoreAck(msg.op))]
        if isinstance(msg, QueryAck):
            return self._on_answer(now, src, msg.op, "query", (msg.tag, msg.value))
        if isinstance(msg, StoreAck):
            return self._on_answer(now, src, msg.op, "store", (INITIAL_TAG, None))
        return []  # Heartbeat: only refreshes ``_heard``

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """Retries, heartbeats and (``lost-write``) lazy replication."""
        if name == "heartbeat":
            return self._heartbeat()
        kind, _, number = name.partition(":")
        if kind == "lazy":
            op = self._ops.pop(int(number), None)
            if op is None:
                return []
            return [Send(p, Store(op.id, op.tag, op.value)) for p in self._peers()]
        op = self._ops.get(int(number))
        if op is None:
            return []
        op.attempts += 1
        if op.phase == "query" and op.attempts >= QUERY_ATTEMPTS:
            # No store was sent yet: the operation certainly took no effect.
            del self._ops[int(number)]
            return [Reply(op.client, "no quorum", ok=False)]
        if op.attempts >= MAX_ATTEMPTS:
            del self._ops[int(number)]
            return []
        return [*self._broadcast(op, missing_only=True), SetTimer(op.timer, RETRY_INTERVAL)]

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """Start a read or a write."""
        if request.op not in ("read", "write"):
            return [Reply(request.client, f"unknown op {request.op!r}", ok=False)]
        if request.op == "read" and self._variant == "stale-read":
            return [Reply(request.client, self._state.value)]
        if len(self._ops) >= MAX_PENDING_OPS:
            return [Reply(request.client, "busy", ok=False)]
        self._counter += 1
        op = _Op(
            id=(self._node, self._state.incarnation, self._counter),
            client=request.client,
            kind="read" if request.op == "read" else "write",
            value=request.value,
        )
        self._ops[self._counter] = op
        if request.op == "write" and self._variant == "lost-write":
            op.tag = self._mint(self._state.tag[0], op)
            self._state = attrs.evolve(self._state, tag=op.tag, value=op.value)
            return [
                Reply(request.client, request.value),
                SetTimer(f"lazy:{self._counter}", LAZY_REPLICATION),
            ]
        return self._record(now, op, self._node, (self._state.tag, self._state.value))

    # ------------------------------------------------------------ internals

    def _peers(self) -> list[int]:
        return [p for p in range(self._n) if p != self._node]

    def _quorum(self, now: float) -> int:
        if self._variant == "split-brain":
            alive = 1 + sum(1 for p in self._peers() if now - self._heard[p] <= SUSPECT_AFTER)
            return alive // 2 + 1
        return self._n // 2 + 1

    def _mint(self, seq: int, op: _Op) -> Tag:
        return (seq + 1, self._node, op.id[1], op.id[2])

    def _persist(self) -> list[Effect]:
        if self._variant == "lost-write":
            return []
        self._persisted = self._state
        return [Persist(self._state)]

    def _adopt(self, tag: Tag, value: Any) -> list[Effect]:
        if tag <= self._state.tag:
            return []
        self._state = attrs.evolve(self._state, tag=tag, value=value)
        return self._persist()

    def _heartbeat(self) -> list[Effect]:
        effects: list[Effect] = [Send(p, Heartbeat()) for p in self._peers()]
        effects.append(SetTimer("heartbeat", HEARTBEAT_INTERVAL))
        return effects

    def _broadcast(self, op: _Op, *, missing_only: bool) -> list[Effect]:
        msg: Query | Store = Query(op.id) if op.phase == "query" else Store(op.id, op.tag, op.value)
        return [Send(p, msg) for p in self._peers() if not (missing_only and p in op.answers)]

    def _on_answer(
        self, now: float, src: int, op_id: OpId, phase: str, answer: tuple[Tag, Any]
    ) -> list[Effect]:
        if op_id[0] != self._node or op_id[1] != self._state.incarnation:
            return []
        op = self._ops.get(op_id[2])
        if op is None or op.phase != phase:
            return []
        return self._record(now, op, src, answer)

    def _record(self, now: float, op: _Op, src: int, answer: tuple[Tag, Any]) -> list[Effect]:
        """Count ``src``'s answer for ``op``'s current phase; advance if a quorum answered."""
        first = not op.answers
        op.answers.setdefault(src, answer)
        effects: list[Effect] = []
        if first and src == self._node:
            effects.extend(self._broadcast(op, missing_only=True))
            effects.append(SetTimer(op.timer, RETRY_INTERVAL))
        if len(op.answers) < self._quorum(now):
            return effects
        if op.phase == "query":
            tag, value = max(op.answers.values(), key=lambda tv: tv[0])
            if op.kind == "write":
                op.tag = self._mint(tag[0], op)
            else:
                op.tag, op.value = tag, value
            op.phase = "store"
            op.answers = {}
            op.attempts = 0
            effects.extend(self._adopt(op.tag, op.value))
            return effects + self._record(now, op, self._node, (op.tag, op.value))
        del self._ops[op.id[2]]
        effects.append(CancelTimer(op.timer))
        effects.append(Reply(op.client, op.value))
        return effects


def register_factory(variant: RegisterVariant = "correct") -> CoreFactory:
    """A core factory ``(node, nodes) -> AbdRegister`` for ``variant``.

    Raises:
        ValueError: if ``variant`` is not one of :data:`REGISTER_VARIANTS`.
    """
    if variant not in REGISTER_VARIANTS:
        raise ValueError(
            f"unknown register variant {variant!r}; known: {', '.join(REGISTER_VARIANTS)}"
        )

    def factory(node: int, nodes: int) -> AbdRegister:
        return AbdRegister(node, nodes, variant=variant)

    return factory
