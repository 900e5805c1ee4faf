"""The Wing-Gong/Lowe search, with state caching (as in Knossos and Porcupine).

Theory of operation. Every operation that completed (``ok``, or a ``fail``
the model keeps) contributes a *call* and a *return* entry to a doubly linked
list in history order. A search node is (linearized set, model state); its
*first return* entry marks the deadline: the operation it belongs to must be
linearized before anything that was invoked after it. The *candidates* at a
node are the unlinearized operations invoked before that deadline. The search
linearizes one candidate (lifting its entries out of the list), moves to the
new node, and backtracks at a dead end, when no candidate can be linearized.
The history is linearizable when every completed operation is linearized,
and is not when the search backtracks past the root.

What makes the easy proof come first and keeps the search small:

* **State caching.** A node that was visited before is never expanded again,
  so each (linearized set, state) pair costs at most once. The set is kept
  compressed: ``k`` operations (in order of invocation) are all linearized and
  ``w`` holds the bits above them, so the integers stay as small as the window
  of concurrent operations; ``info`` operations have their own bitset ``ib``,
  and a node is pruned when it was visited with a subset of its ``info``
  operations used (having more of them used up leaves fewer ways on).
* **Read-only operations first.** If a candidate can never change the state
  (the model's ``read_only`` hint) and the state allows it, linearizing it now
  loses nothing: any linearization that places it later can place it here.
  Such a move is *forced*: when its subtree fails, so does the node.
* **Earliest deadline first.** Otherwise completed candidates are tried in
  order of return, those after which the earliest-deadline operation becomes
  allowed first, then ``info`` candidates. An ``info`` operation has no return
  entry: it never causes a dead end and may be linearized at any point after
  its invocation, or never. Of several interchangeable ``info`` operations
  (the model's ``equivalence`` hint) only the earliest invoked one is tried,
  and a run of ``info`` moves is cut when its last one alone does as much.
* **Doomed nodes.** The earliest-deadline operation must be linearized before
  any operation invoked after its return, so only the current candidates can
  enable it. When they can all only *grow* the state (the model's ``grows``
  hint: appends) and the model says no growth of the current state allows it
  (``may_grow_into``: the state is not a prefix of what a read returned), the
  node is a dead end without trying its candidates. Candidates that set the
  state whatever it was (``resets``: a ``put``) count with the states they set;
  with ``first_growth``, a read must also go on with what some growing
  operation still to come appends.
  For registers (the ``register_view`` hint), a node is a dead end when an
  operation still to come needs a value (a read of ``v``, a ``cas`` from
  ``v``) that is not the current one and that nothing left can set: a stale
  read is found where it is, not after every order of the writes before it.

The search is a loop over explicit frames (no recursion: histories have
thousands of operations), split into the steps of :class:`_Search`.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Final, Literal

from ._gc import gc_paused
from ._models import NOTHING, UNKNOWN, Model
from ._ops import Operation

__all__ = ["SearchOutcome", "search"]

SearchVerdict = Literal["linearizable", "not-linearizable", "unknown"]

_CHECK_EVERY: Final = 1024  # loop turns between two looks at the clock and the cache size
_MEMO_CAP: Final = 1_000_000  # memoised step() results
_INFO_SLOT: Final = -1  # in a node's candidate order: where the info candidates go
_LOOK_AHEAD: Final = 16  # entries checked for reads that can no longer happen
# Once a search has met _WIDEN_AFTER dead ends, need_unmet() looks further
# ahead, in proportion to the history's concurrency: with 50 clients an
# operation that can no longer happen is often more than 16 entries away, and
# finding it late costs an exponential backtrack. (Searches that backtrack
# little do not pay for the wider look.)
_NEED_LOOK_AHEAD_PER_CLIENT: Final = 4
_WIDEN_AFTER: Final = 256


class SearchOutcome:
    """What one search found (internal; :func:`check_history` wraps it)."""

    __slots__ = ("blocked", "candidates", "linearized", "reason", "states", "verdict")

    def __init__(
        self,
        verdict: SearchVerdict,
        states: int,
        linearized: list[Operation],
        blocked: Operation | None,
        candidates: list[Operation],
        reason: str,
    ) -> None:
        self.verdict: SearchVerdict = verdict
        self.states = states
        self.linearized = linearized
        self.blocked = blocked
        self.candidates = candidates
        self.reason = reason


def _default_equivalence(op: Operation) -> Hashable:
    return (op.f, op.key, op.value, op.process)


def search(
    ops: Sequence[Operation],
    model: Model,
    *,
    deadline: float | None,
    max_states: int | None,
    initial: Any = NOTHING,
) -> SearchOutcome:
    """Decide whether ``ops`` (one partition, failed no-ops already dropped) linearize.

    Args:
        ops: the operations, in order of invocation.
        model: the sequential specification.
        deadline: a ``time.monotonic()`` value after which to give up, or ``None``.
        max_states: the bound on cache entries, or ``None`` for no bound.
        initial: the state to start from instead of ``model.init`` (a
            search of the operations left after a linearization of others
            that respects real time with them, from the state it leaves).

    Returns:
        The outcome; on ``not-linearizable`` (and on ``unknown``) it carries the
        longest partial linearization found and the operation that could not
        be placed after it, with the candidates concurrent with it.
    """
    found = _Search(ops, model, deadline, max_states)
    if initial is not NOTHING:
        found.state = initial
    return found.run()


class _Frame:
    """One move on the search path: the node it left, and what to try there next.

    ``alternatives`` iterates the states the moved operation could still lead
    to; ``order[idx]`` is the candidate it was; ``forced`` moves have no
    alternatives. ``info_run`` is where the trailing run of ``info`` moves
    began before this move (a stack index, ``-1`` for none).
    """

    __slots__ = (
        "alternatives",
        "forced",
        "ib",
        "idx",
        "info_run",
        "k",
        "op",
        "order",
        "state",
        "w",
    )

    def __init__(
        self,
        op: int,
        state: Any,
        k: int,
        w: int,
        ib: int,
        alternatives: Iterator[Any] | None,
        order: list[int],
        idx: int,
        forced: bool,
        info_run: int,
    ) -> None:
        self.op = op
        self.state = state
        self.k = k
        self.w = w
        self.ib = ib
        self.alternatives = alternatives
        self.order = order
        self.idx = idx
        self.forced = forced
        self.info_run = info_run


class _Search:
    """The state of one search; :meth:`run` is the loop, the other methods its steps."""

    def __init__(
        self, ops: Sequence[Operation], model: Model, deadline: float | None, max_states: int | None
    ) -> None:
        self.ops = ops
        self.deadline = deadline
        self.limit = max_states if max_states is not None else -1
        self.step: Callable[[Any, Operation], Any] = model.step
        self.skey: Callable[[Any], Hashable] | None = model.state_key
        self.may_grow_into = model.may_grow_into
        with gc_paused():  # a linear phase (see _gc)
            self._index(ops, model)
        # step() results, memoised per (operation, state): the search asks the
        # same questions many times. Bounded; past the bound it calls step().
        self.memo: dict[tuple[int, Hashable], tuple[Any, ...]] = {}
        # The cache: (k, w, state key) -> the info bitsets visited with them
        # (an int, or a list once there are several).
        self.seen: dict[tuple[int, int, Hashable], Any] = {}
        self.n_states = 0
        # The current node and the path to it. Invariant: every frame's
        # operation is lifted out of the entry list (completed) or counted in
        # cls_ptr (info), and ``remaining`` completed operations are not.
        self.stack: list[_Frame] = []
        self.state: Any = model.init
        self.k = 0
        self.w = 0
        self.ib = 0
        self.info_run = -1
        # The deepest dead end so far: the evidence on failure.
        self.best_depth = -1
        self.best_lin: list[int] = []
        self.low_water = 0  # best_lin[:low_water] is still a prefix of the path
        self.blocked = -1
        self.blocked_cands: list[int] = []

    def _index(self, ops: Sequence[Operation], model: Model) -> None:
        """Number the operations: a bit per completed one, an equivalence class
        per ``info`` one, and the call/return entries of the completed ones in
        history order, as a doubly linked list (0 and ``len + 1``: sentinels)."""
        n = len(ops)
        read_only = model.read_only
        grows = model.grows
        equivalence = model.equivalence or _default_equivalence
        self.req_bit = req_bit = [-1] * n  # completed ops: their bit; info ops: -1
        self.info_mask = info_mask = [0] * n
        self.retpos = retpos = [0] * n
        self.ro = ro = [False] * n
        resets = model.resets
        # One pass over the operations, each hint asked once per operation.
        # grow[i]: ops[i] only grows the state or leaves it (read-only);
        # reset[i]: the states it leads to do not depend on the one before.
        self.grow = grow = [False] * n
        self.reset = reset = [False] * n
        growing: list[int] = []  # operations that grow the state, in order
        self.cls_of = cls_of = [-1] * n
        classes: dict[Hashable, int] = {}
        members: list[list[int]]
        self.members = members = []  # per class, its info ops in order of invocation
        marks: list[tuple[int, int, bool]] = []
        n_req = n_info = 0
        for i, op in enumerate(ops):
            is_ro = read_only is not None and read_only(op)
            if grows is not None:
                if grows(op):
                    growing.append(i)
                    grow[i] = True
                else:
                    grow[i] = is_ro
            if resets is not None:
                reset[i] = resets(op)
            if op.status == "info":
                info_mask[i] = 1 << n_info
                n_info += 1
                c = classes.setdefault(equivalence(op), len(classes))
                if c == len(members):
                    members.append([])
                members[c].append(i)
                cls_of[i] = c
                continue
            complete_at = op.complete_at
            assert complete_at is not None
            req_bit[i] = n_req
            n_req += 1
            retpos[i] = complete_at
            ro[i] = is_ro
            marks.append((op.invoke_at, i, True))
            marks.append((complete_at, i, False))
        # reads checked against resets (see doomed()): only with the hints
        self.monotone = model.may_grow_into is not None and all(
            g or r for g, r in zip(grow, reset, strict=True)
        )
        marks.sort()
        self.remaining = n_req
        # the most completed operations running at once
        running = peak = 0
        for _, _, is_call in marks:
            if is_call:
                running += 1
                if running > peak:
                    peak = running
            else:
                running -= 1
        self.wide_look_ahead = max(_LOOK_AHEAD, _NEED_LOOK_AHEAD_PER_CLIENT * peak)
        self.need_look_ahead = _LOOK_AHEAD  # widened by note_dead_end()
        self.dead_ends = 0
        self._index_register_view(ops, model)
        self.resets = [i for i in range(n) if reset[i] and req_bit[i] >= 0]
        self.reset_bits = [req_bit[i] for i in self.resets]
        self.info_resets = [i for i in range(n) if reset[i] and req_bit[i] < 0]
        self.first_growth = model.first_growth
        self.growers = [i for i in growing if req_bit[i] >= 0]
        self.grower_bits = [req_bit[i] for i in self.growers]
        self.info_growers = [i for i in growing if req_bit[i] < 0]
        if not growing:
            # Nothing grows here (a kv key with puts only): the growth hints
            # can prune nothing that need_unmet() does not, and cost a lot.
            self.may_grow_into = None
            self.monotone = False
        n_entries = len(marks)
        tail = n_entries + 1
        self.ent_op = ent_op = [-1] * (n_entries + 2)
        self.ent_call = ent_call = [False] * (n_entries + 2)
        self.ent_pos = ent_pos = [0] * (n_entries + 2)
        self.call_e = call_e = [0] * n
        self.ret_e = ret_e = [0] * n
        for e, (pos, i, is_call) in enumerate(marks, start=1):
            ent_op[e] = i
            ent_call[e] = is_call
            ent_pos[e] = pos
            if is_call:
                call_e[i] = e
            else:
                ret_e[i] = e
        self.nxt: list[int] = [*range(1, n_entries + 2), tail]
        self.prv: list[int] = [0, *range(0, n_entries + 1)]
        self.n_cls = len(members)
        self.cls_ptr = [0] * self.n_cls  # per class, how many of its ops are linearized
        self.cls_mask = [sum(info_mask[j] for j in m) for m in members]

    def _index_register_view(self, ops: Sequence[Operation], model: Model) -> None:
        """For ``need_unmet``: what each operation needs, and who sets each value.

        Per value, its setters in order of invocation: the completed ones as
        (invocation positions, bits), the ``info`` ones as (invocation
        positions, info masks); both position lists ascend, for bisection.
        """
        self.needs: list[Any] = []  # empty: the check is off
        self.setters: dict[Hashable, tuple[list[int], list[int], list[int], list[int]]] = {}
        view = model.register_view
        if view is None:
            return
        needs = []
        setters: dict[Hashable, tuple[list[int], list[int], list[int], list[int]]] = {}
        req_bit = self.req_bit
        info_mask = self.info_mask
        for i, op in enumerate(ops):
            need, sets = view(op)
            if sets is UNKNOWN:
                return
            needs.append(need)
            if sets is not NOTHING:
                done_at, bits, info_at, masks = setters.setdefault(sets, ([], [], [], []))
                if req_bit[i] >= 0:
                    done_at.append(op.invoke_at)
                    bits.append(req_bit[i])
                else:
                    info_at.append(op.invoke_at)
                    masks.append(info_mask[i])
        self.needs = needs
        self.setters = setters
        # per operation needing a value: a setter of it found not linearized
        # (a completed one's bit, an info one's mask), or -1 / 0
        self.left_bit = [-1] * len(ops)
        self.left_mask = [0] * len(ops)

    # --- the model, memoised ----------------------------------------------------

    def nexts(self, i: int, s: Any) -> tuple[Any, ...]:
        """The states ``ops[i]`` can lead to from ``s``."""
        skey = self.skey
        key = (i, s if skey is None else skey(s))
        got = self.memo.get(key)
        if got is None:
            got = tuple(self.step(s, self.ops[i]))
            if len(self.memo) < _MEMO_CAP:
                self.memo[key] = got
        return got

    # --- the entry list -----------------------------------------------------------

    def candidates(self) -> list[int]:
        """The completed candidates: operations whose call comes before the first return."""
        nxt = self.nxt
        ent_call = self.ent_call
        ent_op = self.ent_op
        out: list[int] = []
        e = nxt[0]
        while ent_call[e]:
            out.append(ent_op[e])
            e = nxt[e]
        return out

    def first_return(self) -> int:
        """The entry of the first return: the earliest deadline."""
        nxt = self.nxt
        ent_call = self.ent_call
        e = nxt[0]
        while ent_call[e]:
            e = nxt[e]
        return e

    def lift(self, i: int) -> None:
        """Linearize completed ``ops[i]``: unlink its call and return entries."""
        nxt = self.nxt
        prv = self.prv
        c = self.call_e[i]
        nxt[prv[c]] = nxt[c]
        prv[nxt[c]] = prv[c]
        r = self.ret_e[i]
        nxt[prv[r]] = nxt[r]
        prv[nxt[r]] = prv[r]
        self.remaining -= 1

    def unlift(self, i: int) -> None:
        """Undo :meth:`lift` (entries go back where they were: dancing links)."""
        nxt = self.nxt
        prv = self.prv
        r = self.ret_e[i]
        nxt[prv[r]] = r
        prv[nxt[r]] = r
        c = self.call_e[i]
        nxt[prv[c]] = c
        prv[nxt[c]] = c
        self.remaining += 1

    # --- the cache ------------------------------------------------------------------

    def moved_set(self, i: int) -> tuple[int, int, int]:
        """``(k, w, ib)`` of the current set with ``ops[i]`` added."""
        rb = self.req_bit[i]
        if rb < 0:
            return self.k, self.w, self.ib | self.info_mask[i]
        k = self.k
        nw = self.w | (1 << (rb - k))
        if nw & 1:  # the leading operations are all linearized: fold them into k
            t = (~nw & (nw + 1)).bit_length() - 1
            return k + t, nw >> t, self.ib
        return k, nw, self.ib

    def visit(self, k: int, w: int, s: Any, ib: int) -> bool:
        """Record the node; false if it, or one with fewer info operations used, was seen."""
        key = (k, w, s if self.skey is None else self.skey(s))
        seen = self.seen
        old = seen.get(key)
        if old is None:
            seen[key] = ib
        elif old.__class__ is int:
            if not old & ~ib:
                return False
            seen[key] = [old, ib]
        else:
            for x in old:
                if not x & ~ib:
                    return False
            old.append(ib)
        self.n_states += 1
        return True

    # --- moves ------------------------------------------------------------------------

    def push(
        self,
        i: int,
        s: Any,
        k: int,
        w: int,
        ib: int,
        alternatives: Iterator[Any] | None,
        order: list[int],
        idx: int,
        forced: bool,
    ) -> None:
        """Linearize ``ops[i]``, reaching state ``s`` and set ``(k, w, ib)``."""
        self.stack.append(
            _Frame(
                i,
                self.state,
                self.k,
                self.w,
                self.ib,
                alternatives,
                order,
                idx,
                forced,
                self.info_run,
            )
        )
        if self.req_bit[i] >= 0:
            self.info_run = -1
            self.lift(i)
        else:
            if self.info_run < 0:
                self.info_run = len(self.stack) - 1
            self.cls_ptr[self.cls_of[i]] += 1
        self.state = s
        self.k = k
        self.w = w
        self.ib = ib

    def pop(self) -> _Frame:
        """Undo the last move; returns its frame."""
        f = self.stack.pop()
        i = f.op
        if self.req_bit[i] >= 0:
            self.unlift(i)
        else:
            self.cls_ptr[self.cls_of[i]] -= 1
        self.state = f.state
        self.k = f.k
        self.w = f.w
        self.ib = f.ib
        self.info_run = f.info_run
        return f

    # --- a new node -------------------------------------------------------------------

    def forced_move(self, cands: list[int]) -> int:
        """A read-only candidate the state allows (linearizing it now loses nothing), or -1."""
        ro = self.ro
        state = self.state
        for i in cands:
            if ro[i] and self.nexts(i, state):
                return i
        return -1

    def need_unmet(self) -> int:
        """An operation still to come that needs a value nothing can set any more, or -1.

        With the model's ``register_view`` hint: every operation not yet
        linearized comes after this node; one that needs the state to be
        ``v`` (a read of ``v``, a ``cas`` from ``v``) while it is not, with no
        operation setting ``v`` left among those invoked before it returned,
        can never be linearized. The operations among the next
        ``_LOOK_AHEAD`` entries are checked; after ``_WIDEN_AFTER`` dead ends,
        four per operation the history runs at once at its peak.
        """
        state = self.state
        needs = self.needs
        nxt = self.nxt
        ent_call = self.ent_call
        ent_op = self.ent_op
        left_bit = self.left_bit
        left_mask = self.left_mask
        k = self.k
        w = self.w
        ib = self.ib
        e = nxt[0]
        for _ in range(self.need_look_ahead):
            g = ent_op[e]
            if g < 0:
                return -1  # the tail
            if ent_call[e]:
                need = needs[g]
                if need is not NOTHING and need != state:
                    # the setter found left last time, if it still is (most are)
                    bit = left_bit[g]
                    if bit >= k and not (w >> (bit - k)) & 1:
                        pass
                    elif left_mask[g] and not ib & left_mask[g]:
                        pass
                    elif not self.setter_left(need, g):
                        return g
            e = nxt[e]
        return -1

    def setter_left(self, value: Any, g: int) -> bool:
        """Whether an operation that sets ``value``, invoked before ``ops[g]``
        returned, is not linearized yet (the one found is kept in
        ``left_bit[g]`` or ``left_mask[g]``, to be looked at first next time)."""
        setters = self.setters.get(value)
        if setters is None:
            return False
        done_at, bits, info_at, masks = setters
        end = self.retpos[g]
        k = self.k
        w = self.w
        # completed setters above the folded prefix k, invoked before ops[g] returned
        for n in range(bisect_left(bits, k), bisect_left(done_at, end)):
            if not (w >> (bits[n] - k)) & 1:
                self.left_bit[g] = bits[n]
                return True
        ib = self.ib
        for n in range(bisect_left(info_at, end)):
            if not ib & masks[n]:
                self.left_mask[g] = masks[n]
                return True
        return False

    def doomed(self, b: int, cands: list[int]) -> int:
        """An operation that makes the node a dead end (it can never be linearized), or -1.

        With the model's ``may_grow_into`` hint. When every operation of the
        partition either only grows the state or sets one whatever the state
        was (``resets``), a read not yet linearized can only still happen if it
        is a growth of the current state or of a state set by a reset invoked
        before the read returned and not yet linearized; the reads among the
        next ``_LOOK_AHEAD`` entries are checked.
        Otherwise only the earliest-deadline operation ``ops[b]`` is: only the
        current candidates (and ``info`` operations invoked before it returned)
        can come before it, and they must all grow or reset.
        """
        if self.needs:
            g = self.need_unmet()
            if g >= 0:
                return g
        may_grow_into = self.may_grow_into
        if may_grow_into is None:
            return -1
        state = self.state
        ops = self.ops
        if self.monotone:
            # Every read not yet linearized comes after this node, candidate
            # or not: check the next ones in history order.
            ro = self.ro
            nxt = self.nxt
            ent_call = self.ent_call
            ent_op = self.ent_op
            e = nxt[0]
            for _ in range(_LOOK_AHEAD):
                g = ent_op[e]
                if g < 0:
                    break  # the tail
                if ent_call[e] and ro[g]:
                    if not self.grows_into(state, g) and not self.reset_allows(g):
                        return g
                e = nxt[e]
            return -1
        op_b = ops[b]
        if self.nexts(b, state) or may_grow_into(state, op_b):
            return -1
        before = cands
        if self.n_cls:
            end = self.retpos[b]
            before = cands + [j for j in self.info_heads() if ops[j].invoke_at < end]
        grow = self.grow
        reset = self.reset
        for j in before:
            if grow[j]:
                continue
            if not reset[j]:
                return -1  # an operation the hints say nothing about
            for s2 in self.nexts(j, state):
                if may_grow_into(s2, op_b):
                    return -1
        return b

    def reset_allows(self, g: int) -> bool:
        """Whether a reset not yet linearized, invoked before ``ops[g]`` returned,
        sets a state that may grow into one allowing ``ops[g]`` (see :meth:`grows_into`)."""
        end = self.retpos[g]
        ops = self.ops
        k = self.k
        w = self.w
        req_bit = self.req_bit
        state = self.state
        # completed resets, in order of invocation, from the first above k
        resets = self.resets
        for n in range(bisect_left(self.reset_bits, k), len(resets)):
            j = resets[n]
            if ops[j].invoke_at >= end:
                break
            if (w >> (req_bit[j] - k)) & 1:
                continue  # linearized
            for s2 in self.nexts(j, state):
                if self.grows_into(s2, g):
                    return True
        ib = self.ib
        for j in self.info_resets:
            if ops[j].invoke_at >= end:
                break
            if ib & self.info_mask[j]:
                continue
            for s2 in self.nexts(j, state):
                if self.grows_into(s2, g):
                    return True
        return False

    def grows_into(self, s: Any, g: int) -> bool:
        """Whether growth from ``s`` may allow ``ops[g]``: ``s`` already does,
        or the model allows it and (with ``first_growth``) some growing
        operation not yet linearized, invoked before ``ops[g]`` returned, can
        be the first step."""
        op_g = self.ops[g]
        may_grow_into = self.may_grow_into
        assert may_grow_into is not None
        if not may_grow_into(s, op_g):
            return False
        first_growth = self.first_growth
        if first_growth is None or self.nexts(g, s):
            return True
        end = self.retpos[g]
        ops = self.ops
        k = self.k
        w = self.w
        req_bit = self.req_bit
        growers = self.growers
        for n in range(bisect_left(self.grower_bits, k), len(growers)):
            j = growers[n]
            if ops[j].invoke_at >= end:
                break
            if not (w >> (req_bit[j] - k)) & 1 and first_growth(s, op_g, ops[j]):
                return True
        ib = self.ib
        for j in self.info_growers:
            if ops[j].invoke_at >= end:
                break
            if not ib & self.info_mask[j] and first_growth(s, op_g, ops[j]):
                return True
        return False

    def info_heads(self) -> Iterator[int]:
        """Per class of interchangeable info operations, the first not yet linearized."""
        cls_ptr = self.cls_ptr
        for c, m in enumerate(self.members):
            p = cls_ptr[c]
            if p < len(m):
                yield m[p]

    def order(self, cands: list[int]) -> list[int]:
        """The order to try the completed candidates in: earliest deadline first,
        but the candidates after which it is allowed before the others when it is
        not allowed now (one step of lookahead). With the ``may_grow_into``
        hint, the candidates that keep the earliest read reachable go first.
        Info candidates come last."""
        if len(cands) > 1:
            cands.sort(key=self.retpos.__getitem__)
        b = cands[0]
        state = self.state
        nexts = self.nexts
        if not nexts(b, state):
            enabling: list[int] = []
            others: list[int] = []
            for j in cands:
                if any(nexts(b, s2) for s2 in nexts(j, state)):
                    enabling.append(j)
                else:
                    others.append(j)
            if enabling:
                enabling.extend(others)
                cands = enabling
            elif self.may_grow_into is not None:
                cands = self.toward_read(cands)
        if self.n_cls:
            cands.append(_INFO_SLOT)
        return cands

    def toward_read(self, cands: list[int]) -> list[int]:
        """``cands`` with those after which the earliest read (not allowed now)
        is still reachable by growth first (e.g. the append it shows next)."""
        may_grow_into = self.may_grow_into
        assert may_grow_into is not None
        ro = self.ro
        state = self.state
        nexts = self.nexts
        for g in cands:
            if ro[g]:
                break
        else:
            return cands
        op_g = self.ops[g]
        toward: list[int] = []
        others: list[int] = []
        for j in cands:
            if j != g and any(s2 != state and may_grow_into(s2, op_g) for s2 in nexts(j, state)):
                toward.append(j)
            else:
                others.append(j)
        toward.extend(others)
        return toward

    def info_order(self) -> list[int]:
        """The info candidates (invoked before the deadline), those after which the
        earliest-deadline operation is allowed first."""
        e = self.first_return()
        deadline_pos = self.ent_pos[e]
        b = self.ent_op[e]
        state = self.state
        nexts = self.nexts
        ops = self.ops
        cls_ptr = self.cls_ptr
        enabling = []
        others = []
        for c, m in enumerate(self.members):  # (inlined info_heads: this loop is hot)
            p = cls_ptr[c]
            if p == len(m):
                continue
            j = m[p]
            if ops[j].invoke_at >= deadline_pos:
                continue
            for s2 in nexts(j, state):
                if s2 != state and nexts(b, s2):
                    enabling.append(j)
                    break
            else:
                others.append(j)
        enabling.extend(others)
        return enabling

    # --- trying candidates ------------------------------------------------------------

    def try_from(self, order: list[int], idx: int, it: Iterator[Any] | None) -> bool:
        """Take the first move from ``order[idx]`` (and its remaining states ``it``)
        on that reaches an unvisited node; false when there is none."""
        nexts = self.nexts
        req_bit = self.req_bit
        state = self.state
        while idx < len(order):
            i = order[idx]
            if i == _INFO_SLOT:  # the completed candidates are exhausted
                order[idx : idx + 1] = self.info_order()
                continue
            if it is None:
                results = nexts(i, state)
                if not results:  # the state does not allow ops[i]
                    idx += 1
                    continue
                it = iter(results)
            nk, nw, nib = self.moved_set(i)
            if req_bit[i] >= 0:
                for s in it:
                    if self.visit(nk, nw, s, nib):
                        self.push(i, s, nk, nw, nib, it, order, idx, False)
                        return True
            else:
                redundant_from = None
                if self.info_run >= 0:
                    base = self.stack[self.info_run]
                    # no op of i's class was used in the run since base: i could
                    # have been tried there instead of the whole run
                    if not (self.ib & ~base.ib & self.cls_mask[self.cls_of[i]]):
                        redundant_from = base.state
                for s in it:
                    if s == state:
                        continue  # an info op that changes nothing: same as leaving it out
                    if redundant_from is not None and s in nexts(i, redundant_from):
                        continue  # this op alone, from the run's start, reaches s
                    if self.visit(nk, nw, s, nib):
                        self.push(i, s, nk, nw, nib, it, order, idx, False)
                        return True
            it = None
            idx += 1
        return False

    # --- dead ends ----------------------------------------------------------------------

    def note_dead_end(self, doomed_by: int) -> None:
        """Keep the deepest dead end's path and blocked operation, for the report
        (the operation that doomed the node, if one did, else the one whose
        return could not be passed); widen need_unmet()'s look-ahead after
        ``_WIDEN_AFTER`` dead ends."""
        self.dead_ends += 1
        if self.dead_ends == _WIDEN_AFTER:
            self.need_look_ahead = self.wide_look_ahead
        depth = len(self.stack)
        if depth <= self.best_depth:
            return
        self.best_depth = depth
        del self.best_lin[self.low_water :]
        self.best_lin.extend(f.op for f in self.stack[self.low_water :])
        self.low_water = depth
        self.blocked_cands = self.candidates()
        self.blocked = doomed_by if doomed_by >= 0 else self.ent_op[self.first_return()]

    def backtrack(self) -> _Frame | None:
        """Undo moves up to the last unforced one; ``None`` past the root."""
        while self.stack:
            f = self.pop()
            if not f.forced:
                self.low_water = min(self.low_water, len(self.stack))
                return f
        return None

    # --- the loop -------------------------------------------------------------------------

    def outcome(self, verdict: SearchVerdict, reason: str = "") -> SearchOutcome:
        ops = self.ops
        if verdict == "linearizable":
            return SearchOutcome(
                verdict, self.n_states, [ops[f.op] for f in self.stack], None, [], ""
            )
        return SearchOutcome(
            verdict,
            self.n_states,
            [ops[i] for i in self.best_lin],
            ops[self.blocked] if self.blocked >= 0 else None,
            [ops[i] for i in self.blocked_cands],
            reason,
        )

    def run(self) -> SearchOutcome:
        """Search from the root; see the module's theory of operation."""
        if self.remaining == 0:
            return self.outcome("linearizable")
        deadline = self.deadline
        limit = self.limit
        monotonic = time.monotonic
        budget = _CHECK_EVERY
        # Where to resume at the current node: its candidate order, the index
        # in it, and the remaining result states of order[idx] (None: all).
        order: list[int] = []
        idx = 0
        it: Iterator[Any] | None = None
        expand = True  # the current node is new: compute its candidates
        while True:
            budget -= 1
            if not budget:
                budget = _CHECK_EVERY
                if deadline is not None and monotonic() > deadline:
                    return self.outcome("unknown", "timeout")
                if self.n_states >= limit > 0:
                    return self.outcome("unknown", "max_states")
            dead = False
            doomed_by = -1
            if expand:
                expand = False
                cands = self.candidates()
                forced = self.forced_move(cands)
                if forced >= 0:
                    nk, nw, nib = self.moved_set(forced)
                    if self.visit(nk, nw, self.state, nib):
                        self.push(forced, self.state, nk, nw, nib, None, cands, 0, True)
                        if not self.remaining:
                            return self.outcome("linearizable")
                        expand = True
                        continue
                    dead = True  # the forced move's node failed before: so does this one
                else:
                    order = self.order(cands)  # sorts cands by deadline
                    b = cands[0]
                    doomed_by = self.doomed(b, cands)
                    dead = doomed_by >= 0
                    idx = 0
                    it = None
            if not dead and self.try_from(order, idx, it):
                if not self.remaining:
                    return self.outcome("linearizable")
                expand = True
                continue
            self.note_dead_end(doomed_by)
            f = self.backtrack()
            if f is None:
                return self.outcome("not-linearizable")
            order = f.order
            idx = f.idx
            it = f.alternatives
