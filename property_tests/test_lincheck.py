"""The WGL checker agrees with the exhaustive one on generated histories.

Histories come from a simulated run: up to four clients issue up to seven
operations against one atomic object, each taking effect (or not) at a point
between its invocation and completion. Hypothesis then perturbs them: a read
returns another value, a completion flips between ``ok`` and ``fail``, an
operation ends ``info`` whether or not it took effect, a client crashes with
its operation outstanding. So both verdicts occur, with every kind of
completion, and the reachability tests below prove that they do.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st

from trio_foundation.verify.history import HistoryEvent
from trio_foundation.verify.lincheck import (
    MODELS,
    LinearizabilityResult,
    Model,
    Operation,
    _witness,
    check_exhaustively,
    check_history,
    check_operations,
    pair_operations,
)
from trio_foundation.verify.lincheck._check import (
    _closure_by_steps,
    _closure_by_view,
    _partitions,
)
from trio_foundation.verify.lincheck._models import UNKNOWN

VALUES = 3  # a small domain makes coincidences (and hard cases) likely


_OPS: dict[str, list[str]] = {
    "register": ["read", "write"],
    "cas-register": ["read", "write", "cas"],
    "cas-register-keyed": ["read", "write", "cas"],
    "kv": ["get", "put"],
    "kv-append": ["get", "put", "append"],
    "queue": ["enqueue", "dequeue"],
    "unordered-queue": ["enqueue", "dequeue"],
    "mutex": ["acquire", "release"],
    "lock": ["acquire", "release"],
    "set": ["add", "read"],
}
_KEYED = ("kv", "kv-append", "cas-register-keyed")


def _model(name: str) -> Model:
    """The checked model of a generator's model name."""
    if name == "kv-append":
        return MODELS["kv"].with_initial("")  # Porcupine's: strings, "" initially
    if name == "cas-register-keyed":
        return MODELS["cas-register"]  # keyed: checked key by key
    return MODELS[name]


def _apply(model: str, f: str, value: Any, cur: Any, client: Any, draw: st.DrawFn) -> Any:
    """Run ``f`` on the atomic object: returns ``(new state, (type, output))``."""
    if f in ("read", "get"):
        if model == "set":
            return cur, ("ok", sorted(cur or ()))
        return cur, ("ok", cur)
    if f in ("write", "put"):
        return value, ("ok", value)
    if f == "append":
        return (cur or "") + value, ("ok", value)
    if f == "cas":
        return (value[1], ("ok", value)) if cur == value[0] else (cur, ("fail", value))
    if f == "add":
        return (cur or frozenset()) | {value}, ("ok", value)
    if f == "enqueue":
        return (*(cur or ()), value), ("ok", value)
    if f == "dequeue":
        if not cur:
            return (), ("ok", None)
        n = 0 if model == "queue" else draw(st.integers(0, len(cur) - 1))
        return cur[:n] + cur[n + 1 :], ("ok", cur[n])
    if f == "acquire":
        return (client, ("ok", None)) if cur is None else (cur, ("fail", None))
    # release
    if model == "mutex":
        return (None, ("ok", None)) if cur is not None else (cur, ("fail", None))
    return (None, ("ok", None)) if cur == client else (cur, ("fail", None))


@st.composite
def histories(draw: st.DrawFn, model: str) -> list[HistoryEvent]:
    """A concurrent history of up to 7 operations for ``model``.

    Clients crash (an ``info`` completion, or an operation left outstanding);
    with ``reuse``, a crashed client's process number issues more operations,
    as a fresh client (Jepsen's logs).
    """
    n_ops = draw(st.integers(1, 7))
    procs = draw(st.integers(1, 4))
    reuse = draw(st.booleans())
    keys = ["a", "b"] if model in _KEYED else [None]
    state: dict[Any, Any] = {}
    events: list[HistoryEvent] = []
    running: dict[int, dict[str, Any]] = {}
    crashed: set[int] = set()
    incarnation = dict.fromkeys(range(procs), 0)
    issued = 0
    while True:
        moves = [
            ("invoke", p)
            for p in range(procs)
            if p not in running and (reuse or p not in crashed) and issued < n_ops
        ]
        moves += [("apply", p) for p, o in running.items() if not o["applied"]]
        moves += [("complete", p) for p in running]
        if not moves:
            break
        kind, p = draw(st.sampled_from(moves))
        if kind == "invoke":
            f = draw(st.sampled_from(_OPS[model]))
            value: Any = None
            if f in ("write", "put", "enqueue", "add"):
                value = draw(st.integers(0, VALUES - 1))
                if model == "kv-append":
                    value = "xyz"[value]
            elif f == "append":
                value = draw(st.sampled_from(["x", "y", "z"]))
            elif f == "cas":
                value = [draw(st.integers(0, VALUES - 1)), draw(st.integers(0, VALUES - 1))]
            key = draw(st.sampled_from(keys))
            running[p] = {"f": f, "value": value, "key": key, "applied": False, "out": None}
            events.append(HistoryEvent(p, "invoke", f, value, key=key))
            issued += 1
        elif kind == "apply":
            o = running[p]
            o["applied"] = True
            cur = state.get(o["key"], "" if model == "kv-append" else None)
            client = (p, incarnation[p]) if incarnation[p] else p
            state[o["key"]], o["out"] = _apply(model, o["f"], o["value"], cur, client, draw)
        else:
            o = running.pop(p)
            etype, out = o["out"] if o["applied"] else ("fail", o["value"])
            # Perturb: any completion may end "info"; an unapplied op may claim
            # "ok"; an applied one "fail"; a read may return another value.
            info_weight = 3 if "queue" in model else 1  # queues need runs of info ops
            etype = draw(
                st.sampled_from(
                    [etype] * 6 + ["info"] * info_weight + ["ok" if etype == "fail" else "fail"]
                )
            )
            if (
                o["f"] in ("read", "get", "dequeue")
                and etype == "ok"
                and draw(st.integers(0, 5)) == 0
            ):
                if model == "set":
                    out = sorted(draw(st.sets(st.integers(0, VALUES - 1))))
                elif model == "kv-append":
                    out = draw(st.sampled_from(["", "x", "xy", "yx", "z", "xyz"]))
                else:
                    out = draw(st.sampled_from([None, *range(VALUES)]))
            if etype == "info" and draw(st.booleans()):
                out = draw(st.integers(0, VALUES - 1))  # noise: info values carry nothing
            events.append(HistoryEvent(p, etype, o["f"], out, key=o["key"]))
            if etype == "info":
                crashed.add(p)
                incarnation[p] += 1
        # A client may crash with its operation outstanding (no completion).
        if running and draw(st.integers(0, 30)) == 0:
            victim = next(iter(running))
            if running[victim]["applied"] or draw(st.booleans()):
                del running[victim]
                crashed.add(victim)
                reuse = False  # an outstanding operation: its number is never reused
    return events


def _assert_sequentially_valid(
    result: LinearizabilityResult, model: str, events: list[HistoryEvent]
) -> None:
    m = _model(model)
    for part in result.partitions:
        _assert_valid_order(part.linearized, m)
    if result.verdict == "linearizable":
        # The witnesses hold every operation that must take effect (ok, or a
        # failed one the model keeps), whether a search or the greedy pass
        # found them.
        needed = {
            o.index
            for o in pair_operations(events)
            if o.status == "ok" or (o.status == "fail" and m.keep_failed and m.keep_failed(o))
        }
        witnessed = {o.index for part in result.partitions for o in part.linearized}
        assert needed <= witnessed, sorted(needed - witnessed)


def _assert_valid_order(linearized: tuple[Operation, ...], m: Model) -> None:
    # The witness (or the longest prefix) replays on the model and respects
    # real time: nothing placed before an operation completed after it began.
    states: set[Any] = {m.init}
    for n, o in enumerate(linearized):
        states = {s2 for s in states for s2 in m.step(s, o)}
        assert states, o.describe()
        for later in linearized[n + 1 :]:
            assert (
                later.complete_at is None
                or later.complete_at > o.invoke_at
                or (later.status == "info")
            )


def _agree(events: list[HistoryEvent], model: str) -> None:
    result = check_history(events, _model(model))
    assert result.verdict == check_exhaustively(events, _model(model)), events
    _assert_sequentially_valid(result, model, events)
    if result.verdict == "not-linearizable":
        assert result.unplaceable and result.unplaceable[0].status != "info"


_AGREE = settings(max_examples=2500, suppress_health_check=[HealthCheck.too_slow], deadline=None)


@_AGREE
@given(histories("register"))
def test_register_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "register")


@_AGREE
@given(histories("cas-register"))
def test_cas_register_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "cas-register")


@settings(max_examples=500, deadline=None)
@given(histories("kv"))
def test_kv_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "kv")


@settings(max_examples=800, deadline=None)
@given(histories("queue"))
def test_queue_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "queue")


@settings(max_examples=500, deadline=None)
@given(histories("kv-append"))
def test_kv_with_string_append_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "kv-append")


@settings(max_examples=400, deadline=None)
@given(histories("cas-register-keyed"))
def test_keyed_cas_register_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "cas-register-keyed")


@settings(max_examples=500, deadline=None)
@given(histories("unordered-queue"))
def test_unordered_queue_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "unordered-queue")


@settings(max_examples=400, deadline=None)
@given(histories("mutex"))
def test_mutex_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "mutex")


@settings(max_examples=400, deadline=None)
@given(histories("lock"))
def test_lock_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "lock")


@settings(max_examples=400, deadline=None)
@given(histories("set"))
def test_set_agrees_with_exhaustive(events: list[HistoryEvent]) -> None:
    _agree(events, "set")


def test_reachable_reused_process_numbers_both_verdicts() -> None:
    # The renumbering after a crash is exercised: a process number issues an
    # operation after its own info completion, in histories of both verdicts.
    def reused(ev: list[HistoryEvent]) -> bool:
        crashed = set()
        for e in ev:
            if e.type == "invoke" and e.process in crashed:
                return True
            if e.type == "info":
                crashed.add(e.process)
        return False

    for wanted in ("linearizable", "not-linearizable"):
        assert find(
            histories("lock"),
            lambda ev, w=wanted: reused(ev) and _verdict("lock", ev) == w,  # type: ignore[misc]
            settings=_FIND,
        )


# --- reachability: the generator produces both verdicts, with the hard parts ---


# Search only: shrinking the example found would cost more than finding it.
_FIND = settings(max_examples=5000, database=None, phases=[Phase.generate])


def _verdict(model: str, events: list[HistoryEvent]) -> str:
    return check_history(events, _model(model)).verdict


def test_reachable_linearizable_with_info_and_failed_cas() -> None:
    found = find(
        histories("cas-register"),
        lambda ev: (
            _verdict("cas-register", ev) == "linearizable"
            and any(e.type == "info" for e in ev)
            and any(e.type == "fail" and e.f == "cas" for e in ev)
            and len({e.process for e in ev}) >= 2
        ),
        settings=_FIND,
    )
    assert found


def test_reachable_greedy_witness_and_its_failure_on_linearizable_histories() -> None:
    # The agreement tests above cover the greedy pass (check_history runs it
    # first): both of its outcomes occur on linearizable histories with
    # concurrent operations and info ones — a witness found without a search,
    # and a pass that got stuck, so that the search decided.
    def concurrent(ev: list[HistoryEvent]) -> bool:
        open_ops = 0
        for e in ev:
            open_ops += 1 if e.type == "invoke" else -1
            if open_ops >= 2:
                return True
        return False

    def greedy(ev: list[HistoryEvent], model: str) -> bool | None:
        result = check_history(ev, _model(model))
        if result.verdict != "linearizable" or not concurrent(ev):
            return None
        parts = result.partitions
        return all(p.states == 0 for p in parts) and any(p.linearized for p in parts)

    for model in ("cas-register", "kv-append"):
        for wanted in (True, False):
            assert find(
                histories(model),
                lambda ev, w=wanted, m=model: (  # type: ignore[misc]
                    any(e.type == "info" for e in ev) and greedy(ev, m) is w
                ),
                settings=_FIND,
            )


def test_reachable_not_linearizable_with_concurrency() -> None:
    def concurrent(ev: list[HistoryEvent]) -> bool:
        open_ops = 0
        for e in ev:
            open_ops += 1 if e.type == "invoke" else -1
            if open_ops >= 2:
                return True
        return False

    found = find(
        histories("cas-register"),
        lambda ev: (
            _verdict("cas-register", ev) == "not-linearizable"
            and concurrent(ev)
            and any(e.type == "info" for e in ev)
        ),
        settings=_FIND,
    )
    assert found


def test_reachable_register_both_verdicts() -> None:
    for wanted in ("linearizable", "not-linearizable"):
        assert find(
            histories("register"),
            lambda ev, w=wanted: len(ev) >= 8 and _verdict("register", ev) == w,  # type: ignore[misc]
            settings=_FIND,
        )


# --- soundness at scale: simulated histories are linearizable by construction ---


def simulated(
    seed: int, model: str, n_ops: int, procs: int, info: float, values: int
) -> list[HistoryEvent]:
    """Clients against one atomic register; each op takes effect at a random
    instant inside its interval (or, for some ``info`` ones, never)."""
    import heapq
    import random

    rng = random.Random(seed)
    state: Any = None
    events: list[HistoryEvent] = []
    heap: list[tuple[float, int, str, int]] = [(rng.random(), p, "invoke", p) for p in range(procs)]
    heapq.heapify(heap)
    pid = list(range(procs))
    running: dict[int, dict[str, Any]] = {}
    issued = seq = 0
    while heap:
        now, _, kind, slot = heapq.heappop(heap)
        seq += 1
        if kind == "invoke":
            if issued >= n_ops:
                continue
            issued += 1
            f = rng.choice(
                ["read", "write", "cas"] if model == "cas-register" else ["read", "write"]
            )
            value: Any = None
            if f == "write":
                value = rng.randrange(values)
            elif f == "cas":
                value = [rng.randrange(values), rng.randrange(values)]
            running[slot] = {"f": f, "value": value, "info": rng.random() < info}
            events.append(HistoryEvent(pid[slot], "invoke", f, value))
            at = now + rng.expovariate(1.0)
            heapq.heappush(heap, (at, seq, "apply", slot))
            heapq.heappush(heap, (at + rng.expovariate(1.0), seq, "complete", slot))
        elif kind == "apply":
            o = running[slot]
            if o["info"] and rng.random() < 0.5:
                o["out"] = ("info", None)
            elif o["f"] == "read":
                o["out"] = ("ok", state)
            elif o["f"] == "write":
                state = o["value"]
                o["out"] = ("ok", o["value"])
            elif state == o["value"][0]:
                state = o["value"][1]
                o["out"] = ("ok", o["value"])
            else:
                o["out"] = ("fail", o["value"])
        else:
            o = running.pop(slot)
            etype, out = ("info", None) if o["info"] else o["out"]
            events.append(HistoryEvent(pid[slot], etype, o["f"], out))
            if etype == "info":
                pid[slot] += procs * n_ops  # a crashed client is replaced
            heapq.heappush(heap, (now + rng.expovariate(5.0), seq, "invoke", slot))
    return events


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    model=st.sampled_from(["register", "cas-register"]),
    n_ops=st.integers(20, 500),
    procs=st.integers(1, 12),
    info=st.sampled_from([0.0, 0.05, 0.3]),
    values=st.sampled_from([2, 5, 1000]),
)
def test_simulated_histories_are_never_called_non_linearizable(
    seed: int, model: str, n_ops: int, procs: int, info: float, values: int
) -> None:
    events = simulated(seed, model, n_ops, procs, info, values)
    result = check_history(events, model, max_states=200_000)
    assert result.verdict != "not-linearizable", [e.to_json() for e in events]


def test_reachable_lost_growth_witness() -> None:
    # The witness that needs no search (reason "lost") fires on generated
    # histories, so the agreement tests above exercise it on both models.
    for model in ("kv-append", "set"):
        assert find(
            histories(model),
            lambda ev, m=model: check_history(ev, _model(m)).reason == "lost",  # type: ignore[misc]
            settings=_FIND,
        )


# --- the witnesses found without a search are sound on their own -------------
# (check_history runs the stale-read witness only on what a first search round
# leaves undecided, which small histories never are: so it is called directly.)


def _witnesses(events: list[HistoryEvent], model: str) -> list[str]:
    from trio_foundation.verify.lincheck import pair_operations
    from trio_foundation.verify.lincheck._check import (
        _forced_order,
        _lost_growth,
        _partitions,
        _stale,
    )

    m = _model(model)
    groups, _ = _partitions(pair_operations(events), m)
    found = []
    for ops in groups.values():
        if _stale(ops, m):
            found.append("stale")
        if _lost_growth(ops, m):
            found.append("lost")
        if _forced_order(ops, m):
            found.append("forced-order")
    return found


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["register", "cas-register", "kv", "kv-append", "set"]).flatmap(
        lambda model: st.tuples(st.just(model), histories(model))
    )
)
def test_witnesses_only_fire_on_non_linearizable_histories(case: tuple[str, Any]) -> None:
    model, events = case
    if _witnesses(events, model):
        assert check_exhaustively(events, _model(model)) == "not-linearizable", events


def test_reachable_stale_witness() -> None:
    for model in ("register", "cas-register"):
        assert find(
            histories(model),
            lambda ev, m=model: "stale" in _witnesses(ev, m),  # type: ignore[misc]
            settings=_FIND,
        )


def test_reachable_forced_order_witness_beyond_the_stale_one() -> None:
    # The chain of forced orders proves histories the one-step stale witness
    # does not, on both register models.
    for model in ("register", "cas-register"):
        assert find(
            histories(model),
            lambda ev, m=model: _witnesses(ev, m) == ["forced-order"],  # type: ignore[misc]
            settings=_FIND,
        )


@given(st.sampled_from(["register", "cas-register", "kv"]).flatmap(histories))
def test_register_view_closure_equals_the_stepped_closure(events: list[HistoryEvent]) -> None:
    # The precheck's closure from the register view (each changer stepped in
    # one state) must be the breadth-first closure (every changer in every
    # state), with the same give-up bounds.
    for name in ("register", "cas-register", "kv"):
        model = MODELS[name]
        try:
            ops = pair_operations(events)
            groups, _ = _partitions(ops, model)
        except ValueError:
            continue  # the history is another model's
        view = model.register_view
        assert view is not None
        for part in groups.values():
            if any(op.f not in model.operations for op in part):
                break
            if any(view(op)[1] is UNKNOWN for op in part):
                continue
            assert model.read_only is not None
            changers = [op for op in part if not model.read_only(op)]
            by_view = _closure_by_view(model, changers, view)
            by_steps = _closure_by_steps(model, changers)
            if by_view is None or by_steps is None:
                assert by_view is None and by_steps is None
            else:
                assert set(by_view) == set(by_steps)


# --- the fast paths agree with the slow ones --------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(_OPS)).flatmap(lambda m: st.tuples(st.just(m), histories(m))))
def test_one_pass_pairing_and_grouping_agree_with_two_passes(case: tuple[str, Any]) -> None:
    # check_history pairs, checks the names and groups by key in one pass;
    # check_operations takes paired operations and groups them in a second:
    # the same result, evidence, counts and partition order (but the time).
    model, events = case
    m = _model(model)
    fused = check_history(events, m)
    two = check_operations(pair_operations(events), m)
    assert attrs.evolve(fused, seconds=0.0) == attrs.evolve(two, seconds=0.0)


@st.composite
def register_runs(draw: st.DrawFn, most: int = 30) -> list[HistoryEvent]:
    """A linearizable register history of 12 to ``most`` operations by 3-5 clients:
    each write or read takes effect at a random instant of its interval,
    values from a small domain (many concurrent writes that only later
    reads order), no perturbation."""
    rnd = draw(st.randoms(use_true_random=False))
    n_ops = draw(st.integers(12, most))
    procs = draw(st.integers(3, 5))
    events: list[HistoryEvent] = []
    running: dict[int, list[Any]] = {}  # process -> [f, value, applied]
    value: Any = None
    issued = 0
    while issued < n_ops or running:
        p = rnd.randrange(procs)
        if p not in running:
            if issued < n_ops:
                f = rnd.choice(["read", "write"])
                v = rnd.randrange(VALUES) if f == "write" else None
                running[p] = [f, v, False]
                events.append(HistoryEvent(p, "invoke", f, v))
                issued += 1
        elif not running[p][2]:
            running[p][2] = True
            f, v, _ = running[p]
            if f == "write":
                value = v
            else:
                running[p][1] = value
        else:
            f, v, _ = running.pop(p)
            events.append(HistoryEvent(p, "ok", f, v))
    return events


@settings(max_examples=200, deadline=None)
@given(register_runs(most=60))
def test_greedy_witness_on_longer_register_runs(events: list[HistoryEvent]) -> None:
    # Longer than the exhaustive checker can take: the greedy pass (with its
    # reordering) either gives a valid linearization or nothing, and the
    # history is linearizable (it was run on an atomic register).
    m = MODELS["register"]
    ops = pair_operations(events)
    witness = _witness.greedy_linearization(ops, m)
    if witness is not None:
        assert {o.index for o in witness} == {o.index for o in ops}
        _assert_valid_order(tuple(witness), m)
    # ... and so does the pass helped by small searches.
    helped, stuck = _witness.greedy_pass(ops, m)
    if helped is None:
        helped, _ = _witness.help_pass(stuck)
    if helped is not None:
        assert {o.index for o in helped if o.status != "info"} == {
            o.index for o in ops if o.status != "info"
        }
        _assert_valid_order(tuple(helped), m)
    # The check's witness (the pass's, helped or not, or a search's) is a
    # linearization of every operation.
    result = check_history(events, m)
    assert result.verdict == "linearizable"
    _assert_sequentially_valid(result, "register", events)


def _helped(ev: list[HistoryEvent], succeeds: bool) -> bool:
    """Whether the pass alone got stuck and the helped pass did (not)."""
    m = MODELS["register"]
    ops = pair_operations(ev)
    alone, stuck = _witness.greedy_pass(ops, m)
    if alone is not None:
        return False
    return (_witness.help_pass(stuck)[0] is not None) is succeeds


def test_reachable_helped_greedy_pass() -> None:
    # The searches that help the pass past where it got stuck are reached.
    assert find(register_runs(most=60), lambda ev: _helped(ev, True), settings=_FIND)


@pytest.mark.slow
def test_reachable_failed_help() -> None:
    # ... and so are their failures (the pass then gives up and the check
    # decides: test_greedy_witness_on_longer_register_runs). Rare: about a
    # minute of search.
    assert find(register_runs(most=60), lambda ev: _helped(ev, False), settings=_FIND)


def test_reachable_greedy_reordering(monkeypatch: pytest.MonkeyPatch) -> None:
    # The greedy pass's reordering is reached: a history it linearizes only
    # by moving an operation it had placed (with no window to reorder, it
    # gets stuck and leaves the history to the search).
    def reordered(ev: list[HistoryEvent]) -> bool:
        m = MODELS["register"]
        ops = pair_operations(ev)
        if _witness.greedy_linearization(ops, m) is None:
            return False
        with monkeypatch.context() as patch:
            patch.setattr(_witness, "_REORDER_WINDOW", 0)
            return _witness.greedy_linearization(ops, m) is None

    assert find(register_runs(), reordered, settings=_FIND)

    # ... and its depth-first rearranging of the window, beyond single moves
    def rearranged(ev: list[HistoryEvent]) -> bool:
        m = MODELS["register"]
        ops = pair_operations(ev)
        if _witness.greedy_linearization(ops, m) is None:
            return False
        with monkeypatch.context() as patch:
            patch.setattr(_witness, "_REARRANGE_STEPS", 0)
            return _witness.greedy_linearization(ops, m) is None

    assert find(register_runs(), rearranged, settings=_FIND)
