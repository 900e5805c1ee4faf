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

Three things make the easy proof come first and keep the search small:

* **State caching.** A node that was visited before is never expanded again,
  so each (linearized set, state) pair costs at most once. The set is kept
  compressed: ``k`` operations (in order of invocation) are all linearized and
  ``w`` holds the bits above them, so the integers stay as small as the window
  of concurrent operations; ``info`` operations have their own bitset ``ib``.
* **Read-only operations first.** If a candidate can never change the state
  (the model's ``read_only`` hint) and the state allows it, linearizing it now
  loses nothing: any linearization that places it later can place it here.
  Such a move is *forced*: when its subtree fails, so does the node.
* **Earliest deadline first.** Otherwise completed candidates are tried in
  order of return, then ``info`` candidates. An ``info`` operation has no
  return entry: it never causes a dead end and may be linearized at any point
  after its invocation, or never. Of several interchangeable ``info``
  operations (the model's ``equivalence`` hint) only the earliest invoked one
  is tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Final, Literal

from ._models import Model
from ._ops import Operation

__all__ = ["SearchOutcome", "search"]

SearchVerdict = Literal["linearizable", "not-linearizable", "unknown"]

_CHECK_EVERY: Final = 1024
_MEMO_CAP: Final = 1_000_000


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
) -> SearchOutcome:
    """Decide whether ``ops`` (one partition, failed no-ops already dropped) linearize.

    Args:
        ops: the operations, in order of invocation.
        model: the sequential specification.
        deadline: a ``time.monotonic()`` value after which to give up, or ``None``.
        max_states: the bound on cache entries, or ``None`` for no bound.

    Returns:
        The outcome; on ``not-linearizable`` (and on ``unknown``) it carries the
        longest partial linearization found and the operation that could not
        be placed after it, with the candidates concurrent with it.
    """
    n = len(ops)
    read_only = model.read_only
    equivalence = model.equivalence or _default_equivalence

    # Per operation: its bit (completed ops) or mask (info ops), return position.
    req_bit = [-1] * n
    info_mask = [0] * n
    retpos = [0] * n
    ro = [False] * n
    cls_of = [-1] * n
    classes: dict[Hashable, int] = {}
    members: list[list[int]] = []
    marks: list[tuple[int, int, bool]] = []
    n_req = 0
    n_info = 0
    for i, op in enumerate(ops):
        if op.status == "info":
            info_mask[i] = 1 << n_info
            n_info += 1
            c = classes.setdefault(equivalence(op), len(classes))
            if c == len(members):
                members.append([])
            members[c].append(i)
            cls_of[i] = c
            continue
        assert op.complete_at is not None
        req_bit[i] = n_req
        n_req += 1
        retpos[i] = op.complete_at
        ro[i] = read_only is not None and read_only(op)
        marks.append((op.invoke_at, i, True))
        marks.append((op.complete_at, i, False))
    marks.sort()
    # Entries: 0 is the head sentinel, 1..E the call/return entries in history
    # order, E+1 the tail sentinel (never reached while a return entry is left).
    n_entries = len(marks)
    tail = n_entries + 1
    ent_op = [-1] * (n_entries + 2)
    ent_call = [False] * (n_entries + 2)
    ent_pos = [0] * (n_entries + 2)
    call_e = [0] * n
    ret_e = [0] * n
    for e, (pos, i, is_call) in enumerate(marks, start=1):
        ent_op[e] = i
        ent_call[e] = is_call
        ent_pos[e] = pos
        if is_call:
            call_e[i] = e
        else:
            ret_e[i] = e
    nxt = [*range(1, n_entries + 2), tail]
    prv = [0, *range(0, n_entries + 1)]
    n_cls = len(members)
    cls_ptr = [0] * n_cls
    cls_mask = [sum(info_mask[j] for j in m) for m in members]

    step: Callable[[Any, Operation], Any] = model.step
    skey: Callable[[Any], Hashable] | None = model.state_key
    limit = max_states if max_states is not None else -1
    monotonic = time.monotonic

    # step() results, memoised per (operation, state): the search asks the same
    # questions many times. Bounded; past the bound it just calls step().
    memo: dict[tuple[int, Hashable], tuple[Any, ...]] = {}

    def nexts(i: int, s: Any) -> tuple[Any, ...]:
        key = (i, s if skey is None else skey(s))
        got = memo.get(key)
        if got is None:
            got = tuple(step(s, ops[i]))
            if len(memo) < _MEMO_CAP:
                memo[key] = got
        return got

    # The cache: (k, w, state key) -> the info bitsets visited with them (an int,
    # or a list once there are several). A node is pruned when it was visited
    # with a subset of its info operations linearized: having more of them
    # used up can only leave fewer ways on.
    seen: dict[tuple[int, int, Hashable], Any] = {}
    n_states = 0
    # A frame: the op linearized, the node it left (state, k, w, ib), the
    # alternatives still to try there (result states, candidate order, index)
    # and whether the move was forced.
    # and whether the move was forced; last, where the trailing run of info moves
    # began before this move (-1: none).
    Frame = tuple[int, Any, int, int, int, Iterator[Any] | None, list[int], int, bool, int]
    stack: list[Frame] = []
    state: Any = model.init
    k = 0
    w = 0
    ib = 0
    remaining = n_req
    chain = -1

    best_depth = -1
    best_lin: list[int] = []
    low_water = 0
    blocked = -1
    blocked_cands: list[int] = []

    def outcome(verdict: SearchVerdict, reason: str = "") -> SearchOutcome:
        if verdict == "linearizable":
            return SearchOutcome(verdict, n_states, [ops[f[0]] for f in stack], None, [], "")
        return SearchOutcome(
            verdict,
            n_states,
            [ops[i] for i in best_lin],
            ops[blocked] if blocked >= 0 else None,
            [ops[i] for i in blocked_cands],
            reason,
        )

    if remaining == 0:
        return outcome("linearizable")

    budget = _CHECK_EVERY
    order: list[int] = []
    idx = 0
    it: Iterator[Any] | None = None
    expand = True
    while True:
        budget -= 1
        if not budget:
            budget = _CHECK_EVERY
            if deadline is not None and monotonic() > deadline:
                return outcome("unknown", "timeout")
            if n_states >= limit > 0:
                return outcome("unknown", "max_states")

        dead = False
        if expand:
            # A new node: gather the completed candidates (calls before the
            # first return entry); take a forced read-only move if there is one.
            expand = False
            cands: list[int] = []
            e = nxt[0]
            while ent_call[e]:
                cands.append(ent_op[e])
                e = nxt[e]
            forced = -1
            for i in cands:
                if ro[i]:
                    for _ in nexts(i, state):
                        forced = i
                        break
                    if forced >= 0:
                        break
            if forced >= 0:
                i = forced
                rb = req_bit[i]
                nw = w | (1 << (rb - k))
                if nw & 1:
                    t = (~nw & (nw + 1)).bit_length() - 1
                    nk = k + t
                    nw >>= t
                else:
                    nk = k
                key = (nk, nw, state if skey is None else skey(state))
                old = seen.get(key)
                if old is None:
                    seen[key] = ib
                elif old.__class__ is int:
                    if not old & ~ib:
                        dead = True
                    else:
                        seen[key] = [old, ib]
                else:
                    for x in old:
                        if not x & ~ib:
                            dead = True
                            break
                    else:
                        old.append(ib)
                if not dead:
                    n_states += 1
                    stack.append((i, state, k, w, ib, None, cands, 0, True, chain))
                    chain = -1
                    k = nk
                    w = nw
                    c = call_e[i]
                    nxt[prv[c]] = nxt[c]
                    prv[nxt[c]] = prv[c]
                    r = ret_e[i]
                    nxt[prv[r]] = nxt[r]
                    prv[nxt[r]] = prv[r]
                    remaining -= 1
                    if not remaining:
                        return outcome("linearizable")
                    expand = True
                    continue
            else:
                if len(cands) > 1:
                    cands.sort(key=retpos.__getitem__)
                # cands[0] is the operation with the earliest deadline. If the
                # state does not allow it, try first the candidates after which
                # it is allowed (one step of lookahead).
                b = cands[0]
                for _ in nexts(b, state):
                    break
                else:
                    enabling: list[int] = []
                    others: list[int] = []
                    for j in cands:
                        info = req_bit[j] < 0
                        for s2 in nexts(j, state):
                            if info and s2 == state:
                                continue
                            for _ in nexts(b, s2):
                                break
                            else:
                                continue
                            enabling.append(j)
                            break
                        else:
                            others.append(j)
                    if enabling:
                        enabling.extend(others)
                        cands = enabling
                if n_cls:
                    cands.append(-1)  # where the info candidates go, once needed
                order = cands
                idx = 0
                it = None

        if not dead:
            # Try the node's candidates from (idx, it) on.
            advanced = False
            n_order = len(order)
            while idx < n_order:
                i = order[idx]
                if i < 0:
                    # The completed candidates are exhausted: now the info ones,
                    # those enabling the earliest-deadline operation first.
                    e = nxt[0]
                    while ent_call[e]:
                        e = nxt[e]
                    deadline_pos = ent_pos[e]
                    b = ent_op[e]
                    enabling = []
                    others = []
                    for c in range(n_cls):
                        p = cls_ptr[c]
                        if p < len(members[c]):
                            j = members[c][p]
                            if ops[j].invoke_at < deadline_pos:
                                for s2 in nexts(j, state):
                                    if s2 == state:
                                        continue
                                    for _ in nexts(b, s2):
                                        break
                                    else:
                                        continue
                                    enabling.append(j)
                                    break
                                else:
                                    others.append(j)
                    enabling.extend(others)
                    order[idx : idx + 1] = enabling
                    n_order = len(order)
                    continue
                if it is None:
                    it = iter(nexts(i, state))
                rb = req_bit[i]
                if rb >= 0:
                    nw = w | (1 << (rb - k))
                    if nw & 1:
                        t = (~nw & (nw + 1)).bit_length() - 1
                        nk = k + t
                        nw >>= t
                    else:
                        nk = k
                    nib = ib
                else:
                    nk = k
                    nw = w
                    nib = ib | info_mask[i]
                if rb < 0 and chain >= 0:
                    base = stack[chain]
                    fresh = not (ib & ~base[4] & cls_mask[cls_of[i]])
                else:
                    fresh = False
                for s in it:
                    if rb < 0:
                        if s == state:
                            continue  # an info op that changes nothing: same as leaving it out
                        if fresh and s in nexts(i, base[1]):
                            # The run of info moves since ``base`` is redundant: this
                            # op alone, tried from there, reaches the same state.
                            continue
                    key = (nk, nw, s if skey is None else skey(s))
                    old = seen.get(key)
                    if old is None:
                        seen[key] = nib
                    elif old.__class__ is int:
                        if not old & ~nib:
                            continue
                        seen[key] = [old, nib]
                    else:
                        for x in old:
                            if not x & ~nib:
                                break
                        else:
                            x = -1
                        if x >= 0:
                            continue
                        old.append(nib)
                    n_states += 1
                    stack.append((i, state, k, w, ib, it, order, idx, False, chain))
                    if rb >= 0:
                        chain = -1
                    elif chain < 0:
                        chain = len(stack) - 1
                    state = s
                    k = nk
                    w = nw
                    ib = nib
                    if rb >= 0:
                        c = call_e[i]
                        nxt[prv[c]] = nxt[c]
                        prv[nxt[c]] = prv[c]
                        r = ret_e[i]
                        nxt[prv[r]] = nxt[r]
                        prv[nxt[r]] = prv[r]
                        remaining -= 1
                        if not remaining:
                            return outcome("linearizable")
                    else:
                        cls_ptr[cls_of[i]] += 1
                    advanced = True
                    break
                if advanced:
                    break
                it = None
                idx += 1
            if advanced:
                expand = True
                continue

        # Dead end: note the deepest one, then backtrack to the last unforced move.
        depth = len(stack)
        if depth > best_depth:
            best_depth = depth
            del best_lin[low_water:]
            best_lin.extend(f[0] for f in stack[low_water:])
            low_water = depth
            e = nxt[0]
            blocked_cands = []
            while ent_call[e]:
                blocked_cands.append(ent_op[e])
                e = nxt[e]
            blocked = ent_op[e]
        while True:
            if not stack:
                return outcome("not-linearizable")
            i, state, k, w, ib, it, order, idx, was_forced, chain = stack.pop()
            if req_bit[i] >= 0:
                r = ret_e[i]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                c = call_e[i]
                nxt[prv[c]] = c
                prv[nxt[c]] = c
                remaining += 1
            else:
                cls_ptr[cls_of[i]] -= 1
            if not was_forced:
                break
        if len(stack) < low_water:
            low_water = len(stack)
