"""A greedy witness: the cheap proof that most partitions are linearizable.

Theory of operation. A linearization is any order of the operations that
respects real time and the model; finding *one* proves the partition
linearizable, whatever order the search would have found. Most partitions of
real histories (and every partition with little concurrency: a key of a big
key-value history, a register with a few clients) are linearized by a greedy
pass without any backtracking, at a fraction of the cost of setting up the
search (its entry list, bitsets and cache):

* The calls and returns are visited in history order. An operation is
  *pending* from its call until it is linearized; once it has returned it is
  *due*: it must be linearized before the next call (real time: whatever is
  invoked after its return comes after it).
* Before each call the due operations are *settled*: those the state allows
  without changing it (reads) first; a read the state does not allow is
  enabled by one pending operation after which it is allowed (one step of
  look-ahead, the due ones first, ``info`` operations included: they may take
  effect at any instant after their invocation); of several due operations
  that change the state, with a register view, those setting a value no
  pending read (nor the operation about to be called) needs go first, so the
  value left is the one they need. When nothing fits, the last
  ``_REORDER_WINDOW`` operations placed are reordered (:meth:`_Greedy.reorder`:
  one moved, then their orders depth first), each order kept only if real
  time allows it and the model replays it: two concurrent writes whose order
  only a later read shows. When that fails too, the pass is stuck:
  :func:`help_pass` may take it on with small searches, else the search
  decides.
* Before the state changes, the pending read-only operations the current
  state allows are linearized (doing so loses nothing: the search's *forced
  moves*); otherwise a read of the value being overwritten would find it gone
  at its own return.

Every operation is linearized while pending, before any call that follows
its return, where the model allows it (a reordering keeps that, and a help's
search orders operations by the same rule); so a completed pass is a
linearization: the pass is sound by construction, and only its *failure*
says nothing (the search then starts from scratch). Its cost is bounded by
``_STEPS_PER_OPERATION`` calls of ``step`` per operation (reorderings
included), and its helps' by ``_HELPS_STATES`` search states.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Final

from ._models import NOTHING, Model
from ._ops import Operation
from ._wgl import search

__all__ = ["Stuck", "greedy_linearization", "greedy_pass", "help_pass"]

_STEPS_PER_OPERATION: Final = 8  # the pass's budget of step() calls, per operation
_STUCK: Final = object()  # no state: the model does not allow a step, or no order found
_REARRANGE_STEPS: Final = 256  # step() calls one rearrange() may spend
_REORDER_WINDOW: Final = 8  # the last operations placed that reorder() may move
_PREFIX_KEPT_BACK: Final = 16  # see greedy_pass
_HORIZON: Final = 16  # calls past the one the pass got stuck at that a help reaches
_HELP_STATES: Final = 512  # states of one help
_HELPS: Final = 8  # helps per pass
_HELPS_STATES: Final = 2_048  # states all the helps of a pass may cache
_HELPED_PEAK: Final = 12  # the most operations running at once where the pass is helped


def greedy_linearization(ops: Sequence[Operation], model: Model) -> list[Operation] | None:
    """A linearization of ``ops`` found without backtracking, or ``None``.

    Args:
        ops: one partition's operations, in order of invocation, failed
            no-ops already dropped (as the search takes them).
        model: the sequential specification.

    Returns:
        Every completed operation of ``ops`` (and the ``info`` ones the pass
        used), in a linearization order; ``None`` when the greedy pass got
        stuck or ran out of its budget (which says nothing about the verdict).
    """
    return _Greedy(ops, model).run()


def greedy_pass(ops: Sequence[Operation], model: Model) -> tuple[list[Operation] | None, Stuck]:
    """:func:`greedy_linearization`, and where the pass got stuck (for
    :func:`help_pass`): ``(witness, stuck)``, the witness ``None`` when stuck."""
    greedy = _Greedy(ops, model)
    return greedy.run(), greedy


def help_pass(
    stuck: Stuck,
    *,
    deadline: float | None = None,
    max_states: int | None = None,
) -> tuple[list[Operation] | None, int]:
    """Help a stuck greedy pass on by small searches: ``(witness or None,
    the states those searches cached)``.

    On a register-like partition (see :func:`_helpable`), what the pass
    placed but its last ``_PREFIX_KEPT_BACK`` operations is kept (a
    linearization of them that respects real time with the others), and a
    search orders the rest of the operations invoked up to ``_HORIZON`` calls
    after the one it got stuck at, from the state the kept ones leave,
    within ``_HELP_STATES`` states (and ``max_states``, by ``deadline``; the
    helps of one pass share ``min(len(ops), _HELPS_STATES)`` states); the pass
    goes on after them. Every piece respects real time and the model, so a
    witness found so is a linearization; a search that fails says nothing
    (the kept part may be the wrong one), and the pass gives up (``None``):
    the checker decides.
    """
    greedy = stuck
    ops = greedy.ops
    model = greedy.model
    states = 0
    if not _helpable(ops, model):
        return None, states
    budget = min(len(ops), _HELPS_STATES)
    for _ in range(_HELPS):
        cut = max(0, len(greedy.out) - _PREFIX_KEPT_BACK)
        state = greedy.trail[cut] if cut < len(greedy.out) else greedy.state
        greedy.cut_state = state
        horizon = min(len(ops), greedy.at + _HORIZON)
        # the operations invoked before the horizon and not kept: the last
        # ones placed, the pending ones, and the calls up to the horizon
        places = {greedy.position(op) for op in greedy.out[cut:]}
        places.update(greedy.pending)
        places.update(range(greedy.at, horizon))
        window = sorted(places)
        cap = min(_HELP_STATES, budget - states)
        if max_states is not None:
            cap = min(cap, max_states)
        if cap <= 0:
            break
        found = search(
            [ops[i] for i in window], model, deadline=deadline, max_states=cap, initial=state
        )
        states += found.states
        if found.verdict != "linearizable":
            return None, states
        if horizon == len(ops):
            return [*greedy.out[:cut], *found.linearized], states
        witness = greedy.run(greedy.resume(cut, found.linearized, window))
        if witness is not None:
            return witness, states
    return None, states


def _helpable(ops: Sequence[Operation], model: Model) -> bool:
    """Whether the pass is helped on ``ops``: with a register view and no
    growing operation (values for states: a small search that starts from a
    wrong kept part meets an operation needing a value nothing can set any
    more at once; on appends it wanders, measured at 5-12 ms per failed help
    on a 200-operation key), and at most ``_HELPED_PEAK`` operations running
    at once. (A cost rule only: a help is sound on any partition.)"""
    view = model.register_view
    if view is None or model.state_key is not None:
        return False
    grows = model.grows
    if grows is not None and any(grows(op) for op in ops):
        return False
    return _peak_running(ops) <= _HELPED_PEAK


def _peak_running(ops: Sequence[Operation]) -> int:
    """The most completed operations of ``ops`` running at once."""
    ends = sorted(
        op.complete_at for op in ops if op.status != "info" and op.complete_at is not None
    )
    peak = started = done = 0
    for op in ops:
        while done < len(ends) and ends[done] < op.invoke_at:
            done += 1
        if op.status != "info" and op.complete_at is not None:
            started += 1
            peak = max(peak, started - done)
    return peak


class _Greedy:
    """The state of one greedy pass; :meth:`run` is the loop, the other methods its steps."""

    def __init__(self, ops: Sequence[Operation], model: Model) -> None:
        self.ops = ops
        self.model = model
        self.rets: list[int] | None = None  # run()'s, built once
        self.local: dict[int, int] | None = None  # resume()'s, built once
        self.cut_state: Any = None  # the state before out[cut] (help_pass)
        self.step = model.step
        self.read_only = model.read_only
        # With a register view (and hashable states), a read-only operation
        # that needs value v is allowed by no state but v.
        self.view = model.register_view if model.state_key is None else None
        self.budget = _STEPS_PER_OPERATION * len(ops) + 16
        self.init: Any = model.init
        self.state: Any = model.init
        self.at = 0  # the call run() got to (len(ops): the end)
        self.out: list[Operation] = []
        # Invariant: trail[n] is the state just before out[n] (for reorder()).
        self.trail: list[Any] = []
        # Invariant: ``pending`` holds the positions (in ``ops``) of the
        # operations invoked so far and not yet in ``out``, in order of
        # invocation, and ``due`` those of them that returned: they must be
        # in ``out`` before the next invocation. ``reads`` and ``reads_of[v]``
        # hold the read-only ones of ``pending`` (by the value they need,
        # with a view), and ``read_only_pending`` the positions of both.
        self.pending: dict[int, Operation] = {}
        self.due: dict[int, Operation] = {}
        self.reads: dict[int, Operation] = {}
        self.reads_of: dict[Hashable, dict[int, Operation]] = {}
        self.read_only_pending: set[int] = set()

    def invoke(self, i: int) -> None:
        """``ops[i]`` is invoked: it may be linearized from now on."""
        op = self.ops[i]
        self.pending[i] = op
        read_only = self.read_only
        if read_only is not None and op.status != "info" and read_only(op):
            self.read_only_pending.add(i)
            need = self.view(op)[0] if self.view is not None else NOTHING
            if need is NOTHING:
                self.reads[i] = op
            else:
                self.reads_of.setdefault(need, {})[i] = op

    def take(self, i: int, new: Any) -> None:
        """Linearize pending ``ops[i]``, reaching state ``new``."""
        op = self.pending.pop(i)
        self.due.pop(i, None)
        if i in self.read_only_pending:
            self.read_only_pending.discard(i)
            if self.reads.pop(i, None) is None:
                assert self.view is not None
                del self.reads_of[self.view(op)[0]][i]
        self.trail.append(self.state)
        self.out.append(op)
        self.state = new

    def flush(self) -> bool:
        """Linearize the pending reads the current state allows, before it
        changes (placing them loses nothing); false past the budget."""
        state = self.state
        step = self.step
        waiting = self.reads_of.get(state) if self.view is not None else None
        for group in (waiting, self.reads):
            if not group:
                continue
            for i, op in list(group.items()):
                self.budget -= 1
                for _ in step(state, op):
                    self.take(i, state)
                    break
        return self.budget >= 0

    def move(self, i: int, new: Any) -> bool:
        """Linearize ``ops[i]`` (if still pending) reaching ``new``, flushing
        the reads first when the state changes; false past the budget."""
        if new != self.state and (self.reads or self.reads_of) and not self.flush():
            return False
        if i in self.pending:  # (a flush places read-only operations only)
            self.take(i, new)
        return True

    def enable(self, r: int) -> bool:
        """Linearize one pending operation after which ``ops[r]`` is allowed,
        then ``ops[r]``; false when there is none (or past the budget). The
        operations that must go first (returned) are tried first."""
        step = self.step
        op_r = self.ops[r]
        state = self.state
        for group in (self.due, self.pending):
            for y, op_y in list(group.items()):
                if y == r or y in self.read_only_pending:
                    continue  # (a read-only operation cannot enable r)
                self.budget -= 1
                if self.budget < 0:
                    return False
                for s1 in step(state, op_y):
                    for s2 in step(s1, op_r):
                        return self.move(y, s1) and self.move(r, s2)
        return False

    def reorder(self, r: int) -> bool:
        """Reorder the last operations placed so that the state left allows
        ``ops[r]`` (a read-only operation the state does not allow, which no
        pending operation enables); false when no move below does.

        The moves: one of the last ``_REORDER_WINDOW`` operations of ``out``
        moved to the end, or the last one moved back among them (two
        writes that ran concurrently, whose order only a later read shows).
        A move must keep real time (an operation never follows one invoked
        after it returned), and the new order is replayed with ``step`` from
        the state before the window, so that ``out`` stays a linearization
        of what it holds. Each step counts against the budget."""
        out = self.out
        start = max(0, len(out) - _REORDER_WINDOW)
        window = out[start:]
        last = len(window) - 1
        if last < 1:
            return False
        view = self.view
        op_r = self.ops[r]
        need = view(op_r)[0] if view is not None else NOTHING
        moves: list[list[Operation]] = []
        for m in range(last - 1, -1, -1):
            moved = window[m]
            if need is not NOTHING and view is not None and view(moved)[1] != need:
                continue  # it would not leave the value r needs
            if _returned_before(moved, window[m + 1 :]):
                continue  # it returned before one it would follow was invoked
            moves.append([*window[:m], *window[m + 1 :], moved])
        moved = window[last]
        for m in range(last - 1, -1, -1):
            if any(_returned_before(op, (moved,)) for op in window[m:last]):
                break  # (and so for every place further back)
            moves.append([*window[:m], moved, *window[m:last]])
        step = self.step
        for order in moves:
            state = self.trail[start]
            states = []
            for op in order:
                self.budget -= 1
                states.append(state)
                nxt = next(iter(step(state, op)), _STUCK)
                if nxt is _STUCK:
                    break
                state = nxt
            else:
                self.budget -= 1
                if any(True for _ in step(state, op_r)):
                    out[start:] = order
                    self.trail[start:] = states
                    self.state = state
                    return True
            if self.budget < 0:
                return False
        return self.rearrange(r)

    def rearrange(self, r: int) -> bool:
        """Place ``ops[r]`` among the last ``_REORDER_WINDOW`` operations placed
        (``out[start:]``), by trying their
        orders depth first (the current one first), each operation after
        those real time puts before it and where the model allows it, within
        ``_REARRANGE_STEPS`` steps (and the budget); false when none is found."""
        out = self.out
        start = max(0, len(out) - _REORDER_WINDOW)
        op_r = self.ops[r]
        items = [*out[start:], op_r]
        n = len(items)
        # before[b]: the items that must precede item b (returned before it began)
        before = [0] * n
        for a, op_a in enumerate(items):
            if op_a.status != "info" and op_a.complete_at is not None:
                end = op_a.complete_at
                for b, op_b in enumerate(items):
                    if end < op_b.invoke_at:
                        before[b] |= 1 << a
        step = self.step
        full = (1 << n) - 1
        spent = 0
        order: list[Operation] = []
        states: list[Any] = []

        def place(placed: int, state: Any) -> Any:
            nonlocal spent
            if placed == full:
                return state
            for b in range(n):
                if (placed >> b) & 1 or before[b] & ~placed:
                    continue
                spent += 1
                if spent > _REARRANGE_STEPS:
                    return _STUCK
                for nxt in step(state, items[b]):
                    order.append(items[b])
                    states.append(state)
                    found = place(placed | (1 << b), nxt)
                    if found is not _STUCK:
                        return found
                    order.pop()
                    states.pop()
                    break
                if spent > _REARRANGE_STEPS:
                    return _STUCK
            return _STUCK

        final = place(0, self.trail[start] if start < len(out) else self.state)
        self.budget -= spent
        if final is _STUCK or self.budget < 0:
            return False
        self.take(r, self.state)
        out[start:] = order
        self.trail[start:] = states
        self.state = final
        return True

    def wanted(self, nxt: int) -> set[Hashable]:
        """With a register view: the values the pending reads and ``ops[nxt]``
        (the operation about to be invoked, ``-1`` for none) need."""
        wanted = set(self.reads_of)
        view = self.view
        if nxt >= 0 and view is not None:
            wanted.add(view(self.ops[nxt])[0])
        return wanted

    def settle(self, nxt: int) -> bool:
        """Linearize every returned operation, before ``ops[nxt]`` is invoked.

        Read-only ones the state allows go first; a read the state does not
        allow is enabled by one pending operation (:meth:`enable`); of the
        others, with a register view, the ones whose value nobody reading
        needs go first, so that the state left is the one the pending reads
        (and ``ops[nxt]``) need. False when stuck or past the budget."""
        step = self.step
        due = self.due
        if len(due) == 1:  # the common case, without the bookkeeping below
            ((i, op),) = due.items()
            self.budget -= 1
            for new in step(self.state, op):
                return self.move(i, new) and self.budget >= 0
        wanted: set[Hashable] | None = None
        while due:
            state = self.state
            blocked = -1
            changers: list[tuple[int, Any]] = []
            for i, op in list(due.items()):
                self.budget -= 1
                for new in step(state, op):
                    if new == state:
                        self.take(i, new)
                    else:
                        changers.append((i, new))
                    break
                else:
                    if i in self.read_only_pending and blocked < 0:
                        blocked = i
            if self.budget < 0:
                return False
            if blocked >= 0:
                if not self.enable(blocked) and not self.reorder(blocked):
                    return False
                continue
            if not changers:
                if due:
                    # a state-changing operation the state does not allow
                    if not self.rearrange(next(iter(due))):
                        return False
                    continue
                break
            i, new = changers[0]
            if len(changers) > 1 and self.view is not None:
                if wanted is None:
                    wanted = self.wanted(nxt)
                for j, s1 in changers:
                    if s1 not in wanted:
                        i, new = j, s1
                        break
            if not self.move(i, new):
                return False
        return True

    def position(self, op: Operation) -> int:
        """``op``'s place in ``ops``."""
        local = self.local
        if local is None:
            local = self.local = {o.index: n for n, o in enumerate(self.ops)}
        return local[op.index]

    def resume(self, cut: int, placed: Sequence[Operation], window: Sequence[int]) -> int:
        """Start again after ``out[:cut]`` and then ``placed`` (together a
        linearization of some operations that respects real time with the
        others; ``placed`` ordered from ``window``, the places of the other
        operations invoked before the horizon), from the call after the last
        of them; returns that call's index (for :meth:`run`). The operations
        of the window not placed are pending again; the budget is the rest's."""
        del self.out[cut:]
        del self.trail[cut:]
        # the states before each one placed, replayed (each step its first result)
        s = self.cut_state
        for op in placed:
            self.out.append(op)
            self.trail.append(s)
            s = next(iter(self.step(s, op)))
        self.state = s
        done = {self.position(op) for op in placed}
        # Every operation before ``at`` is kept or in the window; so is every
        # one placed: the pass goes on after both.
        first = max(self.at, max(done) + 1) if done else self.at
        self.pending = {}
        self.due = {}
        self.reads = {}
        self.reads_of = {}
        self.read_only_pending = set()
        for i in window:
            if i < first and i not in done:
                self.invoke(i)
        self.budget = _STEPS_PER_OPERATION * (len(self.ops) - first) + 16
        return first

    def run(self, first: int = 0) -> list[Operation] | None:
        """The pass over the history's calls and returns, in order, from the
        call ``ops[first]`` on (where it gets stuck: ``self.at``).

        The common steps (a call, a return, a call with one operation due
        that is not read-only) are inlined: this loop runs once per
        operation of every partition, before any search."""
        ops = self.ops
        # The returns in history order (positions are distinct), merged
        # below with the calls, which ``ops`` lists in order already.
        rets = self.rets
        if rets is None:
            rets = [
                i for i, op in enumerate(ops) if op.status != "info" and op.complete_at is not None
            ]
            rets.sort(key=lambda i: ops[i].complete_at)  # type: ignore[arg-type,return-value]
            self.rets = rets
        n_rets = len(rets)
        r = 0
        ret_at = ops[rets[0]].complete_at if n_rets else None
        pending = self.pending
        due = self.due
        out = self.out
        trail = self.trail
        step = self.step
        read_only = self.read_only
        read_only_pending = self.read_only_pending
        view = self.view
        reads = self.reads
        reads_of = self.reads_of
        for i in range(first, len(ops)):
            op = ops[i]
            self.at = i
            at = op.invoke_at
            while ret_at is not None and ret_at < at:  # returns before this call
                j = rets[r]
                if j in pending:
                    due[j] = ops[j]
                r += 1
                ret_at = ops[rets[r]].complete_at if r < n_rets else None
            if due:
                settled = False
                if len(due) == 1:
                    # settle()'s common case, inlined: one operation due,
                    # which the state allows
                    ((j, op_j),) = due.items()
                    for new in step(self.state, op_j):
                        self.budget -= 1
                        if new != self.state and (reads or reads_of) and not self.flush():
                            return None
                        if j in pending:  # (a flush places read-only operations only)
                            del pending[j]
                            del due[j]
                            if j in read_only_pending:
                                read_only_pending.discard(j)
                                if reads.pop(j, None) is None:
                                    assert view is not None
                                    del reads_of[view(op_j)[0]][j]
                            trail.append(self.state)
                            out.append(op_j)
                            self.state = new
                        if self.budget < 0:
                            return None
                        settled = True
                        break
                if not settled and not self.settle(i):
                    return None
            # invoke(i), inlined
            pending[i] = op
            if read_only is not None and op.status != "info" and read_only(op):
                read_only_pending.add(i)
                need = view(op)[0] if view is not None else NOTHING
                if need is NOTHING:
                    reads[i] = op
                else:
                    group = reads_of.get(need)
                    if group is None:
                        reads_of[need] = {i: op}
                    else:
                        group[i] = op
        self.at = len(ops)
        while r < n_rets:
            j = rets[r]
            if j in pending:
                due[j] = ops[j]
            r += 1
        if due and not self.settle(-1):
            return None
        return out


def _returned_before(op: Operation, later: Sequence[Operation]) -> bool:
    """Whether ``op`` returned before one of ``later`` was invoked (so it
    must precede it)."""
    if op.status == "info" or op.complete_at is None:
        return False  # (an info operation never returned)
    end = op.complete_at
    return any(end < other.invoke_at for other in later)


Stuck = _Greedy
"""A greedy pass that got stuck, as :func:`greedy_pass` returns it."""
