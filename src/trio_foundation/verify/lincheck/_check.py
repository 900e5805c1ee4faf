"""``check_history``: pairing, partitioning and running the search."""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Final, Literal, final

import attrs

from ..history import HistoryEvent
from ._gc import gc_paused
from ._models import MODELS, NOTHING, UNKNOWN, Model
from ._models import _by_key as _models_by_key
from ._ops import Operation, pair_by_key, pair_operations
from ._wgl import SearchOutcome, search
from ._witness import greedy_pass, help_pass

__all__ = [
    "DEFAULT_MAX_STATES",
    "LinearizabilityResult",
    "PartitionResult",
    "Treated",
    "Verdict",
    "check_history",
    "check_operations",
    "resolve_model",
]

Verdict = Literal["linearizable", "not-linearizable", "unknown"]

DEFAULT_MAX_STATES: Final = 2_000_000
"""The default bound on cached search states per partition (about 0.4 GB at worst)."""


@final
@attrs.frozen
class Treated:
    """How many operations Jepsen's crash semantics applied to.

    Attributes:
        indeterminate: ``info`` operations (and invocations never completed)
            that may change the state: they stay pending for ever, and may
            take effect at any instant after their invocation, or never.
        ignored: operations left out as having had no effect: ``fail``
            completions (except those the model keeps, like a failed ``cas``)
            and ``info`` operations that cannot change the state (a read that
            timed out).
        reincarnated: operations invoked by a process number after an
            ``info`` completion of that number, counted as a fresh process.
    """

    indeterminate: int = 0
    ignored: int = 0
    reincarnated: int = 0


@final
@attrs.frozen
class PartitionResult:
    """The verdict on one partition (one key of a per-key model).

    Attributes:
        key: the partition key (``None`` for an unpartitioned model).
        verdict: ``linearizable``, ``not-linearizable`` or ``unknown``.
        operation_count: the operations checked in this partition (failed
            operations that took no effect are not counted).
        states: the (linearized set, state) pairs the search cached.
        linearized: on ``linearizable``, a witness linearization (every checked
            operation, in linearization order); otherwise the longest partial
            linearization found.
        unplaceable: empty on ``linearizable``; otherwise the operation that
            could not be linearized after ``linearized`` (first), followed by
            the operations concurrent with it that were candidates there.
        reason: why the verdict is ``unknown`` (``"timeout"``,
            ``"max_states"``, or ``"not-checked"`` when another partition was
            found not linearizable first); ``"impossible"``, ``"lost"`` or
            ``"stale"`` or ``"forced-order"`` for a ``not-linearizable``
            verdict found without a search (see :class:`LinearizabilityResult`);
            else ``""``.
    """

    key: Any
    verdict: Verdict
    operation_count: int
    states: int
    linearized: tuple[Operation, ...]
    unplaceable: tuple[Operation, ...]
    reason: str = ""


@final
@attrs.frozen
class LinearizabilityResult:
    """The verdict on a whole history.

    Attributes:
        verdict: ``not-linearizable`` if any partition is, else ``unknown`` if any
            partition is (timeout or state bound), else ``linearizable``.
        model: the model's name.
        operation_count: the operations in the history (all of them, failed ones
            included).
        seconds: wall-clock time spent checking.
        states: cached search states, summed over partitions.
        partitions: one result per partition, in order of first appearance.
        failing_key: the key of the first non-linearizable partition (or of the
            first undecided one when the verdict is ``unknown``); ``None``
            otherwise or for unpartitioned models.
        linearized: from the deciding partition: on ``not-linearizable``, the
            longest linearizable prefix found (operations in linearization
            order); on ``linearizable``, a full linearization when the model is
            unpartitioned.
        unplaceable: on ``not-linearizable``, the first operation that could not
            be linearized with its concurrent ones, followed by those ones.
        reason: for ``unknown``, ``"timeout"`` or ``"max_states"``; for
            ``not-linearizable``, ``"impossible"`` when the first operation of
            ``unplaceable`` is allowed by no state any sequence of the history's
            operations reaches (found without a search, so ``linearized`` is
            empty); ``"lost"`` when it is a read that does not show the
            effect of the second (a growing operation: an append), which
            returned before it began, while nothing that could undo that
            effect (a ``put``) can fall between them (without a search);
            ``"stale"`` when it needs a value (a read, a ``cas``)
            that every operation able to set it had set before the second
            operation of ``unplaceable`` began, which left another value and
            returned before the first began (also without a search);
            ``"forced-order"`` when the same holds for an order forced by
            real time together with the reads of values only one operation
            writes, through any chain of operations (``unplaceable`` is then
            the read, the operation leaving another value, and the setters of
            the read's value), or when that order has a cycle (``unplaceable``
            is then the cycle, closed: ``(a, b, ..., a)``, each operation
            forced before the next); else ``""``.
        treated: how many operations were indeterminate, ignored as having
            had no effect, or counted as fresh processes after a crash.
    """

    verdict: Verdict
    model: str
    operation_count: int
    seconds: float
    states: int
    partitions: tuple[PartitionResult, ...]
    failing_key: Any = None
    linearized: tuple[Operation, ...] = ()
    unplaceable: tuple[Operation, ...] = ()
    reason: str = ""
    treated: Treated = Treated()

    @property
    def ok(self) -> bool:
        """Whether the verdict is ``linearizable``."""
        return self.verdict == "linearizable"

    @property
    def partitioned(self) -> bool:
        """Whether the model checked the history per key."""
        return len(self.partitions) != 1 or self.partitions[0].key is not None


def resolve_model(model: str | Model) -> Model:
    """The :class:`Model` named ``model`` (or ``model`` itself).

    Args:
        model: a built-in model's name, or a :class:`Model`.

    Returns:
        The model.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
        TypeError: if ``model`` is neither a string nor a :class:`Model`.
    """
    if isinstance(model, Model):
        return model
    if not isinstance(model, str):
        raise TypeError(f"model must be a model name or a Model, got {type(model).__name__}")
    try:
        return MODELS[model]
    except KeyError:
        known = ", ".join(MODELS)
        raise ValueError(f"unknown model {model!r}; known models: {known}") from None


def check_history(
    events: Sequence[HistoryEvent],
    model: str | Model,
    *,
    timeout: float | None = None,
    max_states: int | None = DEFAULT_MAX_STATES,
) -> LinearizabilityResult:
    """Check a history for linearizability against a sequential model.

    ``fail`` operations took no effect and are left out (except where the
    model keeps them, like a failed ``cas``); ``info`` operations and
    invocations left outstanding may have taken effect at any point after
    their invocation, or never. Per-key models are checked key by key.

    Args:
        events: the history, e.g. from
            :func:`~trio_foundation.verify.history.load_history`.
        model: a name from :data:`MODELS` or a :class:`Model`.
        timeout: seconds after which to stop with verdict ``unknown``; ``None``
            for no limit.
        max_states: the bound on cached search states per partition, which
            bounds memory; reaching it gives verdict ``unknown``. ``None`` for
            no bound.

    Returns:
        The verdict with its evidence.

    Raises:
        ValueError: for an unknown model name, an operation the model does not
            know, a bad ``timeout``/``max_states``, or malformed operation values.
        HistoryError: if the events break the history rules.
    """
    try:
        m = resolve_model(model)
        _check_bounds(timeout, max_states)
    except (TypeError, ValueError):
        # (reported after the history's own errors, as check_operations does)
        return check_operations(
            pair_operations(events), model, timeout=timeout, max_states=max_states
        )
    if m.partition is not None and m.partition is not _models_by_key:
        return check_operations(pair_operations(events), m, timeout=timeout, max_states=max_states)
    started = time.monotonic()
    # The fast path: pairing, the check of the operations' names and the
    # grouping by key in one pass.
    paired = pair_by_key(events, m.keep_failed, m.read_only, m.operations)
    if paired.unknown is not None:
        _unknown_operation(m, paired.unknown)
    groups = paired.groups
    if not groups and m.partition is None and all(op.key is None for op in paired.ops):
        groups[None] = []  # (as _partitions: one object, no operation to check)
    treated = Treated(paired.indeterminate, paired.ignored, paired.reincarnated)
    return _check_groups(groups, treated, m, len(paired.ops), started, timeout, max_states)


def _check_bounds(timeout: float | None, max_states: int | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    if max_states is not None and max_states <= 0:
        raise ValueError(f"max_states must be > 0, got {max_states}")


def _unknown_operation(m: Model, op: Operation) -> None:
    known = ", ".join(sorted(m.operations))
    raise ValueError(
        f"model {m.name!r} has no operation {op.f!r} "
        f"(operation {op.index}, process {op.process}); it knows {known}"
    )


def check_operations(
    operations: Sequence[Operation],
    model: str | Model,
    *,
    timeout: float | None = None,
    max_states: int | None = DEFAULT_MAX_STATES,
) -> LinearizabilityResult:
    """Like :func:`check_history`, on operations already paired.

    Args:
        operations: operations as :func:`pair_operations` returns them (in order
            of invocation, with their event positions).
        model: a name from :data:`MODELS` or a :class:`Model`.
        timeout: as for :func:`check_history`.
        max_states: as for :func:`check_history`.

    Returns:
        The verdict with its evidence.

    Raises:
        ValueError: as for :func:`check_history`.
    """
    m = resolve_model(model)
    _check_bounds(timeout, max_states)
    if m.operations:
        for op in operations:
            if op.f not in m.operations:
                _unknown_operation(m, op)
    started = time.monotonic()
    with gc_paused():  # a linear phase (see _gc)
        groups, treated = _partitions(operations, m)
    return _check_groups(groups, treated, m, len(operations), started, timeout, max_states)


def _check_groups(
    groups: dict[Hashable, list[Operation]],
    treated: Treated,
    m: Model,
    count: int,
    started: float,
    timeout: float | None,
    max_states: int | None,
) -> LinearizabilityResult:
    """Decide the partitions (``count`` operations in all, the clock started
    at ``started``)."""
    deadline = None if timeout is None else started + timeout
    results: dict[int, PartitionResult] = {}
    with gc_paused():  # linear phases (see _gc)
        # Most partitions are linearized by a greedy pass, a proof at a
        # fraction of the search's set-up cost; the rest go on below.
        prepared: list[tuple[Hashable, list[Operation], Operation | None]] = []
        places: list[int] = []  # places[j]: prepared[j]'s place among the partitions
        # Bounds the searches of _first_round before every partition had its
        # witnesses, so that they cannot delay an easy failure much.
        early_states = _EARLY_STATES
        for n, (key, ops) in enumerate(groups.items()):
            witness, stuck = greedy_pass(ops, m)
            if witness is not None:
                results[n] = PartitionResult(key, "linearizable", len(ops), 0, tuple(witness), ())
                continue
            witness, helped = help_pass(stuck, deadline=deadline, max_states=max_states)
            if witness is not None:
                results[n] = PartitionResult(
                    key, "linearizable", len(ops), helped, tuple(witness), ()
                )
                continue
            impossible = _impossible(ops, m)
            # A small partition the pass could not linearize, with others
            # after it, is often a failing one: its first round (witnesses,
            # a small search) costs less than the passes over the partitions
            # after it, and it is done once either way.
            if n + 1 < len(groups) and len(ops) <= _EARLY_WITNESS_OPS:
                early, spent = _first_round(
                    key, ops, m, impossible, deadline, max_states, early_states
                )
                early_states -= spent
                if early is not None:
                    results[n] = early
                    if early.verdict == "linearizable":
                        continue
                    prepared.clear()  # (the others are left unchecked)
                    break
            places.append(n)
            prepared.append((key, ops, impossible))
    decided: dict[int, PartitionResult] = {}
    _decide(prepared, m, deadline, max_states, decided)
    for j, result in decided.items():
        results[places[j]] = result
    for n, key in enumerate(groups):
        if n not in results:  # left unchecked: another partition already failed
            results[n] = PartitionResult(key, "unknown", len(groups[key]), 0, (), (), "not-checked")
    seconds = time.monotonic() - started
    ordered = [results[n] for n in range(len(groups))]
    return _combine(m, count, seconds, ordered, treated)


def _first_round(
    key: Hashable,
    ops: list[Operation],
    m: Model,
    impossible: Operation | None,
    deadline: float | None,
    max_states: int | None,
    allowance: int,
) -> tuple[PartitionResult | None, int]:
    """One partition's first round on its own: the witnesses without a search
    (an impossible operation, a lost growth) and, for a partition of at most
    ``_EARLY_SEARCH_OPS`` operations (whose search costs little), a search
    within the first round's budget and, if that does not decide, the
    stale-read witness. Returns the verdict, or ``None`` when the partition
    is still undecided (or the first budget is ``max_states`` itself: the
    rounds decide), with the states the search cached (at most
    ``allowance``: none when it is below the first round's budget)."""
    n = len(ops)
    if impossible is not None:
        return PartitionResult(key, "not-linearizable", n, 0, (), (impossible,), "impossible"), 0
    lost = _lost_growth(ops, m)
    if lost:
        return PartitionResult(key, "not-linearizable", n, 0, (), lost, "lost"), 0
    if n > _EARLY_SEARCH_OPS or allowance < _FIRST_BUDGET:
        return None, 0
    if max_states is not None and max_states <= _FIRST_BUDGET:
        return None, 0
    out = search(ops, m, deadline=deadline, max_states=_FIRST_BUDGET)
    if out.verdict != "unknown":
        return _from_search(key, ops, out), out.states
    stale = _stale(ops, m)
    if stale:
        return PartitionResult(
            key, "not-linearizable", n, out.states, (), stale, "stale"
        ), out.states
    return None, out.states


def _from_search(key: Hashable, ops: list[Operation], out: SearchOutcome) -> PartitionResult:
    """A partition's result from its search's outcome."""
    unplaceable: tuple[Operation, ...] = ()
    if out.blocked is not None and out.verdict != "linearizable":
        unplaceable = (out.blocked, *_concurrent(out.blocked, out.candidates))
    return PartitionResult(
        key=key,
        verdict=out.verdict,
        operation_count=len(ops),
        states=out.states,
        linearized=tuple(out.linearized),
        unplaceable=unplaceable,
        reason=out.reason,
    )


def _decide(
    prepared: list[tuple[Hashable, list[Operation], Operation | None]],
    m: Model,
    deadline: float | None,
    max_states: int | None,
    results: dict[int, PartitionResult],
) -> None:
    """Decide the partitions no greedy pass linearized, into ``results`` (by
    place in ``prepared``): an impossible operation or a lost growth first
    (no search), then the searches (:func:`_search_partitions`)."""
    for n, (key, ops, impossible) in enumerate(prepared):
        if impossible is not None:
            results[n] = PartitionResult(
                key, "not-linearizable", len(ops), 0, (), (impossible,), "impossible"
            )
            break
    else:
        for n, (key, ops, _) in enumerate(prepared):
            with gc_paused():
                lost = _lost_growth(ops, m)
            if lost:
                results[n] = PartitionResult(key, "not-linearizable", len(ops), 0, (), lost, "lost")
                break
        else:
            _search_partitions(prepared, m, deadline, max_states, results)


_FIRST_BUDGET: Final = 1_000  # states per partition in the first round
_EARLY_WITNESS_OPS: Final = 1_000  # see check_operations
_EARLY_SEARCH_OPS: Final = 100  # see _first_round
_EARLY_STATES: Final = 50_000  # states all of _first_round's searches may cache (~1 s)
_CHAIN_PER_STATE: Final = 50  # closure steps of _forced_order worth one search state
_BUDGET_GROWTH: Final = 4


def _search_partitions(
    prepared: list[tuple[Hashable, list[Operation], Operation | None]],
    model: Model,
    deadline: float | None,
    max_states: int | None,
    results: dict[int, PartitionResult],
) -> None:
    """Search the partitions in rounds of growing state budgets, into ``results``.

    One hard partition must not hide an easy failure: every partition is
    first searched with a small budget, then (after a look for a stale read,
    :func:`_stale`, and once the budget makes a search cost more than it, for
    one through a chain of forced orders, :func:`_forced_order`) the
    undecided ones again with a budget ``_BUDGET_GROWTH``
    times larger, up to ``max_states``, stopping at the first
    non-linearizable one. A search that runs out of budget is
    discarded (memory is bounded by one search at a time) and restarted
    later; the geometric growth keeps the repeated work below a third of the
    final search's.
    """
    budget: int | None = _FIRST_BUDGET
    pending = list(range(len(prepared)))
    chained: set[int] = set()  # partitions _forced_order looked at

    def witness(n: int, states: int, final: bool) -> bool:
        """Look for a stale read without a search; true and into ``results``
        if found. The chain of forced orders is looked for once per
        partition: when a search ran out of ``max_states``, or once the next
        round's budget makes the search cost more than the chain's closure
        (about ``len(ops) ** 2`` steps: ``_CHAIN_PER_STATE`` per state)."""
        key, ops, _ = prepared[n]
        found, reason = _stale(ops, model), "stale"
        cheap = budget is None or len(ops) ** 2 <= _CHAIN_PER_STATE * budget
        if not found and (final or cheap) and n not in chained:
            chained.add(n)
            found, reason = _forced_order(ops, model), "forced-order"
        if found:
            results[n] = PartitionResult(
                key, "not-linearizable", len(ops), states, (), found, reason
            )
        return bool(found)

    first = True
    while pending:
        if not first:
            # What a small search did not decide may be a stale read, which
            # a cheap witness proves (with less evidence than a search).
            for n in pending:
                if witness(n, 0, False):
                    return
        first = False
        final = budget is None or (max_states is not None and budget >= max_states)
        cap = max_states if final else budget
        undecided = []
        for n in pending:
            key, ops, _ = prepared[n]
            if deadline is not None and time.monotonic() > deadline:
                results[n] = PartitionResult(key, "unknown", len(ops), 0, (), (), "timeout")
                continue
            out = search(ops, model, deadline=deadline, max_states=cap)
            if out.verdict == "unknown" and out.reason == "max_states" and not final:
                undecided.append(n)
                continue
            # (after a time-out, only the cheap witness: the time is up)
            if out.verdict == "unknown" and witness(n, out.states, out.reason == "max_states"):
                return
            results[n] = _from_search(key, ops, out)
            if out.verdict == "not-linearizable":
                return
        if final or budget is None:
            return
        pending = undecided
        budget *= _BUDGET_GROWTH


def _partitions(
    operations: Sequence[Operation], model: Model
) -> tuple[dict[Hashable, list[Operation]], Treated]:
    """Group the operations that can matter by partition, and count the rest.

    Failed operations took no effect and are left out, unless the model keeps
    them; so are ``info`` operations that cannot change the state (a read
    that timed out). A model without its own ``partition`` is checked key by
    key when the operations carry keys (Jepsen's independent histories).
    """
    keep = model.keep_failed
    read_only = model.read_only
    part = model.partition
    if part is None and any(op.key is not None for op in operations):
        part = _by_key
    groups: dict[Hashable, list[Operation]] = {}
    ignored = indeterminate = reincarnated = 0
    by_key = part is _by_key or part is _models_by_key
    for op in operations:
        if op.incarnation:
            reincarnated += 1
        status = op.status
        if status != "ok":
            if status == "fail" and (keep is None or not keep(op)):
                ignored += 1
                continue
            if status == "info":
                if read_only is not None and read_only(op):
                    ignored += 1
                    continue
                indeterminate += 1
        # (the common partitions inlined: one object, or by key)
        key = op.key if by_key else None if part is None else part(op)
        group = groups.get(key)
        if group is None:
            groups[key] = [op]
        else:
            group.append(op)
    if not groups and part is None:
        groups[None] = []
    return groups, Treated(indeterminate, ignored, reincarnated)


def _by_key(op: Operation) -> Hashable:
    key: Hashable = op.key
    return key


_NEVER: Final = float("inf")
_CLOSURE_CAP: Final = 256  # states
_CLOSURE_STEPS: Final = 4_000  # step() calls


def _impossible(ops: Sequence[Operation], model: Model) -> Operation | None:
    """A completed operation that no state reachable from ``model.init`` allows.

    The states reachable by applying the partition's operations in *any* order,
    any number of times, contain every state of every linearization. When that
    closure is small (registers, locks: it is the set of values written) and
    some completed operation is allowed in none of its states, the history is
    not linearizable, and no search is needed to say so. Returns the first such
    operation, or ``None`` (also when the closure exceeds a small bound).
    """
    skey = model.state_key
    read_only = model.read_only
    same = model.equivalence
    # One operation per kind (same effect, output and status): kinds[i] is ops[i]'s.
    kinds: list[Hashable] = []
    distinct: dict[Hashable, Operation] = {}
    for op in ops:
        effect = same(op) if same is not None else (op.f, op.key, op.value, op.process)
        kind: Hashable = (effect, op.output, op.status)
        kinds.append(kind)
        if kind not in distinct:
            distinct[kind] = op
    changers = [op for op in distinct.values() if read_only is None or not read_only(op)]
    # With a register view (declared for every kind), an operation that needs
    # value v is allowed in no state but v, and leads to the value it sets.
    needs: dict[Hashable, Any] = {}
    view = model.register_view
    if view is not None and skey is None:
        for kind, op in distinct.items():
            need, sets = view(op)
            if sets is UNKNOWN:
                needs = {}
                break
            needs[kind] = need
    if needs:
        assert view is not None
        states = _closure_by_view(model, changers, view)
    else:
        states = _closure_by_steps(model, changers)
    if states is None:
        return None
    state_of = {s: s for s in states} if needs else {}
    # Each kind is stepped once, on its first operation (the same step on every state).
    possible: dict[Hashable, bool] = {}
    for op, kind in zip(ops, kinds, strict=True):
        if op.status == "info":
            continue
        ok = possible.get(kind)
        if ok is None:
            need = needs.get(kind, NOTHING)
            if need is NOTHING:
                ok = any(any(True for _ in model.step(s, op)) for s in states)
            else:
                only = state_of.get(need, NOTHING)
                ok = only is not NOTHING and any(True for _ in model.step(only, op))
            possible[kind] = ok
        if not ok:
            return op
    return None


def _closure_by_steps(model: Model, changers: list[Operation]) -> list[Any] | None:
    """The states reachable from ``model.init`` by ``changers`` in any order, any
    number of times (breadth first); ``None`` past ``_CLOSURE_CAP`` states or
    when ``states x changers`` exceeds ``_CLOSURE_STEPS``."""
    skey = model.state_key
    seen = {model.init if skey is None else skey(model.init)}
    states = [model.init]
    frontier = deque([model.init])
    budget = _CLOSURE_STEPS
    while frontier:
        state = frontier.popleft()  # breadth first: short states first
        budget -= len(changers)
        if budget < 0:
            return None
        for op in changers:
            for nxt in model.step(state, op):
                k = nxt if skey is None else skey(nxt)
                if k not in seen:
                    if len(seen) >= _CLOSURE_CAP:
                        return None
                    seen.add(k)
                    states.append(nxt)
                    frontier.append(nxt)
    return states


def _closure_by_view(
    model: Model, changers: list[Operation], view: Callable[[Operation], tuple[Any, Any]]
) -> list[Any] | None:
    """:func:`_closure_by_steps`'s closure (and bounds), from the register view.

    By the view's contract a changer that needs ``v`` is allowed only in state
    ``v``, and every state it leads to equals the value it sets: so each
    changer is stepped in one state that allows it, not in every state. A
    changer that needs no value is stepped in the states reached so far, each
    at most once, until one allows it. States are hashable (no ``state_key``).
    """
    states = [model.init]
    reached = {model.init: model.init}  # value -> the state object
    # per waiting changer: (op, the value it needs, states already tried)
    waiting = [(op, view(op)[0], 0) for op in changers]
    grew = True
    while grew:
        grew = False
        still: list[tuple[Operation, Any, int]] = []
        for op, need, tried in waiting:
            if need is not NOTHING:
                tries = [reached[need]] if need in reached else []
            else:
                tries = states[tried:]
                tried = len(states)
            results: tuple[Any, ...] = ()
            for state in tries:
                results = tuple(model.step(state, op))
                if results:
                    break
            if not results:
                still.append((op, need, tried))
                continue
            for nxt in results:
                if nxt not in reached:
                    if len(reached) >= _CLOSURE_CAP:
                        return None
                    reached[nxt] = nxt
                    states.append(nxt)
                    grew = True
        waiting = still
    if len(states) * len(changers) > _CLOSURE_STEPS:
        return None  # the bound _closure_by_steps applies
    return states


_LOST_LOOKBACK: Final = 8  # growers looked at per read, the latest returned first


def _lost_growth(ops: Sequence[Operation], model: Model) -> tuple[Operation, ...]:
    """A read that lost a growth (an append), found without a search.

    For models whose operations grow the state, read it, or reset it (the
    ``grows``, ``read_only`` and ``retains`` hints: ``kv`` with appends,
    ``set``): if a growing operation ``a`` returned before a read ``r`` was
    invoked, then ``a`` comes before ``r`` in every linearization; if moreover
    no operation that may undo growth (any other state-changing operation:
    a ``put``) can fall between them — each one that ``r`` does not precede
    returned before ``a`` was invoked —, only growth happens between ``a`` and
    ``r``, so ``r`` must show ``a``'s effect. When ``retains(r, a)`` says it
    does not, the history is not linearizable. Returns ``(r, a)``, or ``()``.

    For each read only the ``_LOST_LOOKBACK`` growers that returned last before
    it began are looked at, so the cost is ``O(n log n)``; a lost growth
    hidden further back is left to the search.
    """
    retains = model.retains
    grows = model.grows
    read_only = model.read_only
    if retains is None or grows is None or read_only is None:
        return ()
    reads: list[Operation] = []
    growers: list[tuple[int, int, Operation]] = []  # (returned, invoked, op)
    fences: list[tuple[int, float]] = []  # state changers that may undo growth: (invoked, end)
    for op in ops:
        returned = op.complete_at if op.status == "ok" else None
        if read_only(op):
            if returned is not None:
                reads.append(op)
        elif grows(op):
            if returned is not None:
                growers.append((returned, op.invoke_at, op))
        else:
            fences.append((op.invoke_at, _NEVER if returned is None else returned))
    if not reads or not growers:
        return ()
    growers.sort(key=lambda g: g[0])
    ends = [g[0] for g in growers]
    fences.sort()
    fence_invoked = [f[0] for f in fences]
    # latest[k]: the latest end among the first k + 1 fences by invocation.
    latest: list[float] = []
    for _, end in fences:
        latest.append(max(end, latest[-1]) if latest else end)
    for r in reads:
        assert r.complete_at is not None
        k = bisect.bisect_left(fence_invoked, r.complete_at)  # fences r does not precede
        fence = latest[k - 1] if k else -1
        i = bisect.bisect_left(ends, r.invoke_at) - 1  # growers that precede r
        for _ in range(_LOST_LOOKBACK):
            if i < 0 or ends[i] <= fence:
                break  # (a grower that returned before the fence ended began before it)
            _, invoked, a = growers[i]
            if invoked > fence and not retains(r, a):
                return (r, a)
            i -= 1
    return ()


def _stale(ops: Sequence[Operation], model: Model) -> tuple[Operation, ...]:
    """A stale read, found without a search (for models with ``register_view``).

    An operation ``r`` needs the value ``v`` (a read of ``v``, a ``cas`` from
    ``v``). Only the operations that set ``v`` and were invoked before ``r``
    returned (and the initial state, when it is ``v``) can give ``r`` its
    value. If every one of them returned before some operation ``c`` was
    invoked, and ``c`` leaves the state at another value (a write of it, a
    read of it) and returned before ``r`` was invoked, then ``c`` comes after
    every such setter and before ``r`` in any linearization, and nothing can
    set ``v`` again in between: not linearizable. Returns ``(r, c, the last
    setter of v)`` (without the setter when ``v`` is the initial value) for
    the first such ``r``, or ``()``. Runs in ``O(n log n)``.
    """
    view = model.register_view
    if view is None:
        return ()
    views = [view(op) for op in ops]
    if any(sets is UNKNOWN for _, sets in views):
        return ()
    init = model.init
    try:
        hash(init)
    except TypeError:  # an unhashable initial state is no register value
        return ()
    # Per value: its setters in order of invocation, with the running latest
    # end (None for the initial state; a setter that never returned may take
    # effect at any time: its end is _NEVER).
    setters: dict[Hashable, tuple[list[int], list[tuple[float, Operation | None]]]] = {}
    for op, (_, sets) in zip(ops, views, strict=True):
        if sets is NOTHING:
            continue
        end = _NEVER if op.status != "ok" or op.complete_at is None else op.complete_at
        invoked, latest = setters.setdefault(sets, ([], []))
        if latest and latest[-1][0] >= end:
            latest.append(latest[-1])
        else:
            latest.append((end, op))
        invoked.append(op.invoke_at)
    # Per operation needing a value: the latest end among the setters that
    # may give it (the initial state ends at -1).
    queries: list[tuple[float, int, Hashable]] = []
    chosen: dict[int, Operation | None] = {}
    for n, (r, (need, _)) in enumerate(zip(ops, views, strict=True)):
        if need is NOTHING or r.status != "ok" or r.complete_at is None:
            continue
        invoked, latest = setters.get(need, ([], []))
        k = bisect.bisect_left(invoked, r.complete_at)
        end, setter = latest[k - 1] if k else (-1.0, None)
        if setter is None and need != init:
            continue  # nothing can set it: _impossible's business
        if end == _NEVER:
            continue
        queries.append((end, n, need))
        chosen[n] = setter
    # Operations known to leave the state at a value: (invoked, returned, value, op).
    leaves = []
    for op, (need, sets) in zip(ops, views, strict=True):
        if op.status == "ok" and op.complete_at is not None:
            value = sets if sets is not NOTHING else need
            if value is not NOTHING:
                leaves.append((op.invoke_at, op.complete_at, value, op))
    leaves.sort(key=lambda t: -t[0])
    queries.sort(key=lambda t: -t[0])
    # Sweep the queries' ends downwards, adding the operations invoked after
    # each; keep the two earliest-returning with distinct values.
    best: list[tuple[int, Hashable, Operation]] = []
    found: list[tuple[int, Operation]] = []  # (index of r, c)
    j = 0
    for end, n, v in queries:
        while j < len(leaves) and leaves[j][0] > end:
            _, ret, value, op = leaves[j]
            j += 1
            best.append((ret, value, op))
            best.sort(key=lambda t: t[0])
            kept: list[tuple[int, Hashable, Operation]] = []
            for b in best:
                if all(b[1] != x[1] for x in kept):
                    kept.append(b)
                if len(kept) == 2:
                    break
            best = kept
        for ret, value, op in best:
            if value != v:
                if ret < ops[n].invoke_at:
                    found.append((n, op))
                break
    if not found:
        return ()
    n, c = min(found, key=lambda t: t[0])
    setter = chosen[n]
    return (ops[n], c) if setter is None else (ops[n], c, setter)


_CHAIN_WORK: Final = 8_000_000  # (about a second)  # bound on the closure's steps in _forced_order


def _forced_order(ops: Sequence[Operation], model: Model) -> tuple[Operation, ...]:
    """A stale read through a chain of forced orders (for models with ``register_view``).

    :func:`_stale` looks for one operation ``c`` that real time alone puts
    after every setter of a read's value and before the read. Here ``c`` may
    be further away: the *forced order* ``a => b`` (``a`` precedes ``b`` in
    every linearization) is the transitive closure of

    * real time: ``a`` returned ``ok`` before ``b`` was invoked;
    * pinned reads: ``r`` needs a value ``v`` (a read of ``v``, a ``cas``
      from ``v``) that only ``w`` can set (``v`` is not the initial state), so
      ``w`` took effect (even if it ended ``info``) and ``w => r``; and
      nothing that leaves another value (sets it, or reads it) falls between
      them: so such an ``x`` with ``x => r`` has ``x => w``, and one with
      ``w => x`` has ``r => x``.

    Only operations that certainly took effect are in the order (``ok`` ones,
    and ``info`` setters a pinned read forces). Then an operation ``r``
    needing ``v`` is impossible when some ``c`` that leaves another value has
    every setter of ``v`` forced before it and is forced before ``r`` (nothing
    can set ``v`` again in between), and the history is not linearizable when
    the order has a cycle (``a => a``). Returns ``(r, c, the setters of v...)``
    or, for a cycle, the cycle closed, ``(a, b, ..., a)``: the operations
    forced both before and after ``a``, in order of invocation (any two of
    them are forced before each other); ``()`` when neither is found or the
    closure would take more than ``_CHAIN_WORK`` steps.
    """
    view = model.register_view
    if view is None:
        return ()
    views = [view(op) for op in ops]
    if any(sets is UNKNOWN for _, sets in views):
        return ()
    n = len(ops)
    init = model.init
    invoked = [op.invoke_at for op in ops]  # ascending: ops are in order of invocation
    returned = [op.complete_at if op.status == "ok" else None for op in ops]
    setters: dict[Hashable, list[int]] = {}
    for i, (_, sets) in enumerate(views):
        if sets is not NOTHING:
            setters.setdefault(sets, []).append(i)
    took_effect = [r is not None for r in returned]
    pinned: list[tuple[int, int, Hashable]] = []  # (the only setter, the op needing it, value)
    for r, (need, _) in enumerate(views):
        if need is NOTHING or returned[r] is None or need == init:
            continue
        only = setters.get(need, ())
        if len(only) == 1 and only[0] != r:
            pinned.append((only[0], r, need))
            took_effect[only[0]] = True
    if not pinned:
        return ()
    effective = 0
    leaves: dict[int, Hashable] = {}  # effective op -> the value it leaves, if one
    for i, (need, sets) in enumerate(views):
        if took_effect[i]:
            effective |= 1 << i
            value = sets if sets is not NOTHING else need
            if value is not NOTHING:
                leaves[i] = value
    # after[a]: the operations forced after a. Invariant: transitively closed
    # (b in after[a] implies after[b] <= after[a]); real time's suffixes are.
    everything = (1 << n) - 1
    after = [0] * n
    for a in range(n):
        end = returned[a]
        if end is not None:
            k = bisect.bisect_right(invoked, end)
            after[a] = (everything >> k << k) & effective
    work = 0

    def add(a: int, b: int) -> bool:
        """Add ``a => b`` (keeping the closure); false past the work bound."""
        nonlocal work
        work += n
        gained = (1 << b) | after[b]
        for p in range(n):
            if p == a or (after[p] >> a) & 1:
                after[p] |= gained
        return work <= _CHAIN_WORK

    # Leaving another value than v: a bitset per pinned value.
    other: dict[Hashable, int] = {}
    for _, _, v in pinned:
        if v not in other:
            other[v] = sum(1 << i for i, u in leaves.items() if u != v)
    changed = True
    while changed:
        changed = False
        for w, r, v in pinned:
            if not (after[w] >> r) & 1:
                changed = True
                if not add(w, r):
                    return ()
            others = other[v]
            for x in range(n):  # x => r, x leaves another value: x => w
                if (others >> x) & 1 and (after[x] >> r) & 1 and not (after[x] >> w) & 1:
                    changed = True
                    if not add(x, w):
                        return ()
            late = after[w] & others & ~after[r]  # w => x: r => x
            while late:
                x = (late & -late).bit_length() - 1
                late &= late - 1
                if r != x:
                    changed = True
                    if not add(r, x):
                        return ()
            work += n
            if work > _CHAIN_WORK:
                return ()
    for a in range(n):
        if (after[a] >> a) & 1:
            # The cycle through a: the operations forced both after and
            # before it (each of them is forced before every other), in
            # order of invocation from a (the first one on it), closed.
            cycle = [ops[b] for b in range(a + 1, n) if (after[a] >> b) & 1 and (after[b] >> a) & 1]
            return (ops[a], *cycle, ops[a])
    for r, (need, _) in enumerate(views):
        if need is NOTHING or returned[r] is None:
            continue
        own = setters.get(need, [])
        if not all(took_effect[s] for s in own) or (need != init and not own):
            continue  # an info setter may take effect late; no setter: _impossible's
        before_all = effective
        for s in own:
            before_all &= after[s]
        for c in range(n):
            if (before_all >> c) & 1 and (after[c] >> r) & 1 and leaves.get(c, need) != need:
                return (ops[r], ops[c], *(ops[s] for s in own))
    return ()


def _concurrent(blocked: Operation, candidates: list[Operation]) -> list[Operation]:
    # Candidates: every operation invoked before the blocked one returned and
    # not yet linearized. Info operations stay candidates for ever; keep only
    # those that were still running when the blocked operation was invoked.
    out = []
    for op in candidates:
        if op is blocked:
            continue
        if op.status == "info":
            end = op.complete_at if op.complete_at is not None else op.invoke_at
            if end < blocked.invoke_at:
                continue
        out.append(op)
    return out


def _combine(
    model: Model, count: int, seconds: float, results: list[PartitionResult], treated: Treated
) -> LinearizabilityResult:
    states = sum(r.states for r in results)
    parts = tuple(results)
    for verdict in ("not-linearizable", "unknown"):
        for r in results:
            if r.verdict == verdict:
                return LinearizabilityResult(
                    verdict=r.verdict,
                    model=model.name,
                    operation_count=count,
                    seconds=seconds,
                    states=states,
                    partitions=parts,
                    failing_key=r.key,
                    linearized=r.linearized,
                    unplaceable=r.unplaceable,
                    reason=r.reason,
                    treated=treated,
                )
    linearized = results[0].linearized if len(results) == 1 else ()
    return LinearizabilityResult(
        verdict="linearizable",
        model=model.name,
        operation_count=count,
        seconds=seconds,
        states=states,
        partitions=parts,
        linearized=linearized,
        treated=treated,
    )
