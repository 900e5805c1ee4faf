"""Sequential specifications ("models") the checker linearizes against.

A model is a pure description of one object: its initial state and a ``step``
function that, given a state and an operation (with its input and, when it
completed ``ok`` or ``fail``, its output), returns every state the object could
be in after that operation. An empty result means the operation cannot have
happened in that state. States must be hashable: the search caches
``(linearized operations, state)`` pairs.

How completions reach ``step``:

* ``ok``: ``op.output`` is what the operation returned; check it.
* ``info``: the outcome is unknown; ``op.output`` is ``None``. Return the states
  the operation *could* produce if it took effect. The checker also considers
  the operation never taking effect, so "no effect" need not be returned.
* ``fail``: the operation took no effect, so the checker drops it before the
  search, unless the model's ``keep_failed`` says it still tells something
  (``cas-register``: a failed ``cas`` read a value other than the expected one).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, Final, final

import attrs

from ._ops import Operation, freeze

__all__ = ["MODELS", "NOTHING", "UNKNOWN", "Model", "StepFunction"]

NOTHING: Final = ("<nothing>",)
"""In a ``register_view``: the operation needs no particular value / sets none."""
UNKNOWN: Final = ("<unknown>",)
"""In a ``register_view``: the operation may change the state in a way no value says."""

StepFunction = Callable[[Any, Operation], Iterable[Any]]


@final
@attrs.frozen
class Model:
    """A sequential specification.

    Attributes:
        name: the model's name, as the CLI's ``--model`` takes it.
        init: the initial state (hashable, or made hashable by ``state_key``).
        step: ``step(state, op)`` returns the possible next states (an iterable;
            empty when ``op`` cannot happen in ``state``). Must be pure.
        partition: ``partition(op)`` returns the key of the independent
            sub-object ``op`` touches (e.g. ``op.key``); each partition is
            checked on its own and the verdict is their conjunction. ``None``:
            the whole history is one object.
        keep_failed: ``keep_failed(op)`` is true for a ``fail`` operation that
            still constrains the history and must be linearized (its ``step``
            sees ``status == "fail"``). ``None``: every failed operation is
            dropped, as having taken no effect.
        state_key: maps a state to the hashable value the search caches it
            under; ``None`` when states are hashable already.
        operations: the operation names the model understands; a history with
            any other ``f`` is rejected up front. Empty: no check.
        description: one line for ``--help`` and documentation.
        read_only: optional hint, ``read_only(op)`` is true when ``op`` can never
            change the state (every state ``step`` returns is the one it was
            given). The search then linearizes such an operation as soon as it
            is enabled and never tries alternatives to it, which is safe and
            prunes most of the search. ``None``: no operation is assumed read-only.
        equivalence: optional hint: two operations with equal
            ``equivalence(op)`` keys, equal ``output`` and equal ``status`` have
            the same ``step`` on every state (so the key must cover everything
            else ``step`` reads, e.g. the process for ``lock``). The search then
            tries only one of several interchangeable ``info`` operations, and
            the reachable-state precheck steps each kind of operation once.
            ``None``: the key is ``(f, key, value, process)``.
        grows: optional hint, ``grows(op)`` is true when ``op`` only ever
            *grows* the state, in the order ``may_grow_into`` knows (appends).
        may_grow_into: optional hint, with ``grows``: ``may_grow_into(state,
            op)`` is false when no sequence of growing operations leads from
            ``state`` to a state that allows ``op`` (a read of a string that
            does not start with the current one). It must be true when unsure;
            a wrong false makes verdicts wrong. The search uses it to abandon a
            node whose most urgent operation can no longer happen.
        first_growth: optional hint, with ``may_grow_into``:
            ``first_growth(state, op, grower)`` is false when growing operation
            ``grower`` cannot be the first growth on the way from ``state`` to
            a state allowing ``op`` (the string a read returned does not go on
            with what ``grower`` appends). Must be true when unsure.
        resets: optional hint, with ``may_grow_into``: ``resets(op)`` is true
            when the states ``op`` leads to do not depend on the state it is
            applied to (a ``put``). The search then also considers the states
            such an operation sets, followed by growth.
        retains: optional hint, with ``grows`` and ``read_only``:
            ``retains(read, grower)`` is false when the output of ``read`` (an
            ``ok`` read-only operation) cannot be a state reached from one
            right after ``grower`` by growing operations alone (a string
            read that does not contain the string an append appended). Must be
            true when unsure. The checker then looks, before any search, for a
            read that lost a growth: see ``reason == "lost"`` in
            :class:`~trio_foundation.verify.lincheck.LinearizabilityResult`.
        register_view: optional hint for register-like models:
            ``register_view(op)`` returns ``(needs, sets)``: the value the state
            must equal just before ``op`` (or :data:`NOTHING`), and the value
            the state equals after ``op`` when ``op`` changes it (or
            :data:`NOTHING` when ``op`` never changes the state, or
            :data:`UNKNOWN`, which turns the hint off for the partition). Every
            change of state must be declared. The search then abandons a node
            where an operation still to come needs a value that is not the
            current one and that no operation still to come can set.
        state_from_json: turns an initial value given as (frozen) JSON data
            into a state, for :meth:`with_initial` (``set``: a list becomes a
            frozenset). ``None``: the frozen JSON is the state.
    """

    name: str
    init: Any
    step: StepFunction
    partition: Callable[[Operation], Hashable] | None = None
    keep_failed: Callable[[Operation], bool] | None = None
    state_key: Callable[[Any], Hashable] | None = None
    operations: frozenset[str] = frozenset()
    description: str = ""
    read_only: Callable[[Operation], bool] | None = None
    equivalence: Callable[[Operation], Hashable] | None = None
    state_from_json: Callable[[Any], Any] | None = None
    grows: Callable[[Operation], bool] | None = None
    may_grow_into: Callable[[Any, Operation], bool] | None = None
    resets: Callable[[Operation], bool] | None = None
    first_growth: Callable[[Any, Operation, Operation], bool] | None = None
    retains: Callable[[Operation, Operation], bool] | None = None
    register_view: Callable[[Operation], tuple[Any, Any]] | None = None

    def with_initial(self, value: Any) -> Model:
        """This model starting from ``value`` (every key's, for a per-key model).

        Args:
            value: JSON data (``None``, a number, a string, a list, ...), e.g.
                ``""`` so that ``kv`` is Porcupine's key-value model.

        Returns:
            A copy of the model with its initial state replaced.

        Raises:
            ValueError: if the model cannot start from ``value``.
        """
        frozen = freeze(value)
        init = frozen if self.state_from_json is None else self.state_from_json(frozen)
        return attrs.evolve(self, init=init)


_NONE: Final[tuple[()]] = ()


def _register_step(state: Any, op: Operation) -> Iterable[Any]:
    f = op.f
    if f == "read":
        if op.status != "ok" or op.output == state:
            return (state,)
        return _NONE
    # write
    return (op.value,)


def _cas_register_step(state: Any, op: Operation) -> Iterable[Any]:
    f = op.f
    if f == "read":
        if op.status != "ok" or op.output == state:
            return (state,)
        return _NONE
    if f == "write":
        return (op.value,)
    # cas [expected, new]
    expected, new = _pair(op)
    if op.status == "fail":
        return _NONE if state == expected else (state,)
    return (new,) if state == expected else _NONE


def _register_view(op: Operation) -> tuple[Any, Any]:
    f = op.f
    ok = op.status == "ok"
    if f in ("read", "get"):
        if not ok or op.output == ():  # (kv: a missing key reads as [] too)
            return NOTHING, NOTHING
        return op.output, NOTHING
    if f in ("write", "put"):
        return NOTHING, op.value
    if f == "cas":
        expected, new = _pair(op)
        if op.status == "fail":
            return NOTHING, NOTHING
        return (expected if ok else NOTHING), new
    return NOTHING, UNKNOWN  # append


def _pair(op: Operation) -> tuple[Any, Any]:
    value = op.value
    if not isinstance(value, tuple) or len(value) != 2:
        raise ValueError(f"{op.f} needs value [expected, new], got {value!r} ({op.describe()})")
    return value[0], value[1]


def _kv_step(state: Any, op: Operation) -> Iterable[Any]:
    f = op.f
    if f == "get" or f == "read":
        if op.status != "ok":
            return (state,)
        out = op.output
        if out == state or (state is None and out == ()):
            return (state,)
        return _NONE
    if f == "put" or f == "write":
        return (op.value,)
    # append
    if state is None:
        return ((op.value,),)
    if isinstance(state, tuple):
        return ((*state, op.value),)
    if isinstance(state, str) and isinstance(op.value, str):
        return (state + op.value,)
    return _NONE


def _kv_may_grow_into(state: Any, op: Operation) -> bool:
    # Appends only extend a string or a list: a read must extend the state.
    if op.status != "ok" or op.f not in ("get", "read"):
        return True
    out = op.output
    if isinstance(state, str):
        return not isinstance(out, str) or out.startswith(state)
    if isinstance(state, tuple) and isinstance(out, tuple):
        return out[: len(state)] == state
    return True


def _kv_first_growth(state: Any, op: Operation, grower: Operation) -> bool:
    out = op.output
    value = grower.value
    if isinstance(state, str) and isinstance(out, str) and isinstance(value, str):
        return out.startswith(value, len(state))
    if isinstance(out, tuple) and (state is None or isinstance(state, tuple)):
        n = 0 if state is None else len(state)
        return len(out) > n and out[n] == value
    return True


def _kv_retains(read: Operation, grower: Operation) -> bool:
    # After an append the value is a string ending with, or a list ending in,
    # what it appended; appends keep it there.
    out = read.output
    value = grower.value
    if out is None:
        return False  # an appended key is never missing
    if isinstance(out, str):
        return not isinstance(value, str) or value in out
    if isinstance(out, tuple):
        return value in out
    return True


def _set_retains(read: Operation, grower: Operation) -> bool:
    out = read.output
    return not isinstance(out, tuple) or grower.value in out


def _set_may_grow_into(state: Any, op: Operation) -> bool:
    if op.status != "ok" or op.f != "read" or not isinstance(op.output, tuple):
        return True
    return state <= frozenset(op.output)  # type: ignore[no-any-return]


def _lock_owner(op: Operation) -> Any:
    if op.value is not None:
        return op.value
    # A process number reused after a crash is another client.
    return op.process if op.incarnation == 0 else op.client


def _mutex_step(state: Any, op: Operation) -> Iterable[Any]:
    # Knossos's mutex: a boolean, any process may release.
    if op.f == "acquire":
        return _NONE if state else (True,)
    return (False,) if state else _NONE


def _mutex_state(value: Any) -> Any:
    if not isinstance(value, bool):
        raise ValueError(f"a mutex starts free (false) or held (true), got {value!r}")
    return value


def _lock_step(state: Any, op: Operation) -> Iterable[Any]:
    owner = _lock_owner(op)
    if op.f == "acquire":
        return (owner,) if state is None else _NONE
    # release
    return (None,) if state == owner else _NONE


def _counter_step(state: Any, op: Operation) -> Iterable[Any]:
    if op.f == "read":
        if op.status != "ok" or op.output == state:
            return (state,)
        return _NONE
    delta = op.value
    if not isinstance(delta, int | float) or isinstance(delta, bool):
        raise ValueError(f"add needs a numeric value, got {delta!r} ({op.describe()})")
    return (state + delta,)


def _set_step(state: Any, op: Operation) -> Iterable[Any]:
    if op.f == "read":
        if op.status != "ok":
            return (state,)
        out = op.output
        seen = frozenset(out) if isinstance(out, tuple) else None
        return (state,) if seen == state else _NONE
    return (state | {op.value},)


def _multiset(items: Iterable[tuple[Any, int]]) -> frozenset[tuple[Any, int]]:
    return frozenset((v, c) for v, c in items if c > 0)


def _unordered_queue_step(state: Any, op: Operation) -> Iterable[Any]:
    # The state is a multiset: a frozenset of (value, count) pairs.
    counts = dict(state)
    if op.f == "enqueue":
        counts[op.value] = counts.get(op.value, 0) + 1
        return (_multiset(counts.items()),)
    if op.status != "ok":  # a crashed dequeue removed some element
        return [
            _multiset({**counts, v: c - 1}.items()) for v, c in sorted(counts.items(), key=repr)
        ]
    out = op.output
    if out is None:
        return (state,) if not counts else _NONE
    if counts.get(out, 0) == 0:
        return _NONE
    counts[out] -= 1
    return (_multiset(counts.items()),)


def _unordered_queue_state(value: Any) -> Any:
    if not isinstance(value, tuple):
        raise ValueError(f"an unordered queue starts from a list of elements, got {value!r}")
    counts: dict[Any, int] = {}
    for v in value:
        counts[v] = counts.get(v, 0) + 1
    return _multiset(counts.items())


def _queue_state(value: Any) -> Any:
    if not isinstance(value, tuple):
        raise ValueError(f"a queue starts from a list of elements, got {value!r}")
    return value


def _set_state(value: Any) -> Any:
    if not isinstance(value, tuple):
        raise ValueError(f"a set starts from a list of elements, got {value!r}")
    return frozenset(value)


def _queue_step(state: Any, op: Operation) -> Iterable[Any]:
    if op.f == "enqueue":
        return ((*state, op.value),)
    # dequeue
    if op.status != "ok":
        return (state[1:],) if state else _NONE
    out = op.output
    if out is None:
        return (state,) if not state else _NONE
    return (state[1:],) if state and state[0] == out else _NONE


def _by_key(op: Operation) -> Hashable:
    key: Hashable = op.key
    return key


def _is_cas(op: Operation) -> bool:
    return op.f == "cas"


def _reads(*names: str) -> Callable[[Operation], bool]:
    def read_only(op: Operation) -> bool:
        return op.f in names

    return read_only


def _read_or_failed_cas(op: Operation) -> bool:
    return op.f == "read" or (op.f == "cas" and op.status == "fail")


def _same_effect(op: Operation) -> Hashable:
    return (op.f, op.key, op.value)


def _same_lock_effect(op: Operation) -> Hashable:
    return (op.f, _lock_owner(op))


_BUILTIN: Final = (
    Model(
        name="register",
        init=None,
        step=_register_step,
        operations=frozenset({"read", "write"}),
        read_only=_reads("read"),
        equivalence=_same_effect,
        register_view=_register_view,
        description="a single register: write(v), read -> v; initially null",
    ),
    Model(
        name="cas-register",
        init=None,
        step=_cas_register_step,
        keep_failed=_is_cas,
        operations=frozenset({"read", "write", "cas"}),
        read_only=_read_or_failed_cas,
        equivalence=_same_effect,
        register_view=_register_view,
        description="a register with cas([expected, new]); a failed cas saw another value",
    ),
    Model(
        name="kv",
        init=None,
        step=_kv_step,
        partition=_by_key,
        operations=frozenset({"get", "put", "append", "read", "write"}),
        read_only=_reads("get", "read"),
        equivalence=_same_effect,
        grows=_reads("append"),
        may_grow_into=_kv_may_grow_into,
        resets=_reads("put", "write"),
        first_growth=_kv_first_growth,
        retains=_kv_retains,
        register_view=_register_view,
        description="a map checked per key: put(v), append(v) to a list, get -> v",
    ),
    Model(
        name="mutex",
        init=False,
        step=_mutex_step,
        operations=frozenset({"acquire", "release"}),
        equivalence=_same_effect,
        state_from_json=_mutex_state,
        description="Knossos's mutex: acquire when free, release when held (by anyone)",
    ),
    Model(
        name="lock",
        init=None,
        step=_lock_step,
        operations=frozenset({"acquire", "release"}),
        equivalence=_same_lock_effect,
        description="a mutex: acquire/release; owner = the value, or the process if null",
    ),
    Model(
        name="counter",
        init=0,
        step=_counter_step,
        operations=frozenset({"add", "read"}),
        read_only=_reads("read"),
        equivalence=_same_effect,
        description="a counter: add(delta), read -> total; initially 0",
    ),
    Model(
        name="set",
        init=frozenset(),
        step=_set_step,
        operations=frozenset({"add", "read"}),
        read_only=_reads("read"),
        equivalence=_same_effect,
        state_from_json=_set_state,
        grows=_reads("add"),
        may_grow_into=_set_may_grow_into,
        retains=_set_retains,
        description="a grow-only set: add(x), read -> [all elements]",
    ),
    Model(
        name="fifo-queue",
        init=(),
        step=_queue_step,
        operations=frozenset({"enqueue", "dequeue"}),
        equivalence=_same_effect,
        state_from_json=_queue_state,
        description="a FIFO queue: enqueue(x), dequeue -> head, or null if empty",
    ),
    Model(
        name="unordered-queue",
        init=frozenset(),
        step=_unordered_queue_step,
        operations=frozenset({"enqueue", "dequeue"}),
        equivalence=_same_effect,
        state_from_json=_unordered_queue_state,
        description="a queue in no order: dequeue -> any element enqueued, or null if empty",
    ),
)
_ALIASES: Final = {"fifo-queue": ("queue",)}  # model -> other names

_BY_NAME: Final = {m.name: m for m in _BUILTIN} | {
    alias: attrs.evolve(m, name=alias) for m in _BUILTIN for alias in _ALIASES.get(m.name, ())
}
_ORDER: Final = (
    *("register", "cas-register", "mutex", "fifo-queue", "queue", "unordered-queue", "set", "kv"),
    *("lock", "counter"),
)
MODELS: Final[Mapping[str, Model]] = MappingProxyType({name: _BY_NAME[name] for name in _ORDER})
"""The built-in models by name: Jepsen's and Knossos's family (register,
cas-register, mutex, fifo-queue or queue, unordered-queue, set, kv) and lock
(a mutex with owners), counter."""
