"""The Wing-Gong/Lowe search, with state caching (as in Knossos and Porcupine).

Theory of operation. Every operation contributes a *call* entry and, unless
its outcome is unknown (``info``), a *return* entry; the entries form a doubly
linked list in history order. The search walks the list from its head:

* at a call entry it tries to *linearize* the operation now: if the model
  allows it from the current state and the pair (set of linearized
  operations, resulting state) has not been seen before, the operation is
  lifted out of the list (both entries), pushed on a stack, and the walk
  restarts from the head;
* at a return entry it has met an operation that returned before it could be
  linearized: a dead end, so it pops the last linearized operation, puts it
  back and tries the next call entry after it (or another result state, for a
  non-deterministic model).

The history is linearizable when every operation with a return entry has
been linearized; it is not when the stack is empty at a dead end. ``info``
operations have no return entry: they never cause a dead end, so they may be
linearized anywhere after their call, or never.

The cache makes the search visit each (linearized set, state) pair at most
once. The linearized set is a bitset kept *compressed*: ``k`` operations (in
order of invocation) are all linearized and ``w`` holds the bits above them,
so the integers stay as small as the window of concurrent operations rather
than growing with the history; ``info`` operations have their own bitset
``ib``, as they may stay unlinearized for ever.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any, Final, Literal

from ._models import Model
from ._ops import Operation

__all__ = ["SearchOutcome", "search"]

SearchVerdict = Literal["linearizable", "not-linearizable", "unknown"]

_CHECK_EVERY: Final = 2048


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
        be placed after it.
    """
    n = len(ops)
    # Entries: 0 is the head sentinel, 1..E the call/return entries in history
    # order, E+1 the tail sentinel (never reached while a return entry is left).
    marks: list[tuple[int, int, bool]] = []
    req_bit = [-1] * n
    info_mask = [0] * n
    n_req = 0
    n_info = 0
    for i, op in enumerate(ops):
        marks.append((op.invoke_at, i, True))
        if op.status == "info":
            info_mask[i] = 1 << n_info
            n_info += 1
        else:
            assert op.complete_at is not None
            marks.append((op.complete_at, i, False))
            req_bit[i] = n_req
            n_req += 1
    marks.sort()
    n_entries = len(marks)
    tail = n_entries + 1
    ent_op = [-1] * (n_entries + 2)
    ent_call = [False] * (n_entries + 2)
    call_e = [0] * n
    ret_e = [0] * n
    for e, (_, i, is_call) in enumerate(marks, start=1):
        ent_op[e] = i
        ent_call[e] = is_call
        if is_call:
            call_e[i] = e
        else:
            ret_e[i] = e
    nxt = [*range(1, n_entries + 2), tail]
    prv = [0, *range(0, n_entries + 1)]

    step: Callable[[Any, Operation], Any] = model.step
    skey: Callable[[Any], Hashable] | None = model.state_key
    limit = max_states if max_states is not None else -1

    cache: set[tuple[int, int, int, Hashable]] = set()
    stack: list[tuple[int, Any, int, int, int, Iterator[Any]]] = []
    state: Any = model.init
    k = 0
    w = 0
    ib = 0
    remaining = n_req

    best_depth = -1
    best_lin: list[int] = []
    low_water = 0
    blocked = -1
    candidates: list[int] = []

    def outcome(verdict: SearchVerdict, reason: str = "") -> SearchOutcome:
        if verdict == "linearizable":
            lin = [ops[f[0]] for f in stack]
            return SearchOutcome(verdict, len(cache), lin, None, [], reason)
        return SearchOutcome(
            verdict,
            len(cache),
            [ops[i] for i in best_lin],
            ops[blocked] if blocked >= 0 else None,
            [ops[i] for i in candidates],
            reason,
        )

    if remaining == 0:
        return outcome("linearizable")

    entry = nxt[0]
    it: Iterator[Any] | None = None
    budget = _CHECK_EVERY
    while True:
        budget -= 1
        if not budget:
            budget = _CHECK_EVERY
            if deadline is not None and time.monotonic() > deadline:
                return outcome("unknown", "timeout")
        if ent_call[entry]:
            i = ent_op[entry]
            if it is None:
                it = iter(step(state, ops[i]))
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
            for s in it:
                if rb < 0 and s == state:
                    continue  # an info op that changes nothing: same as leaving it out
                key = (nk, nw, nib, s if skey is None else skey(s))
                if key in cache:
                    continue
                cache.add(key)
                if len(cache) == limit:
                    return outcome("unknown", "max_states")
                stack.append((i, state, k, w, ib, it))
                state = s
                k = nk
                w = nw
                ib = nib
                c = call_e[i]
                pc = prv[c]
                nc = nxt[c]
                nxt[pc] = nc
                prv[nc] = pc
                if rb >= 0:
                    r = ret_e[i]
                    pr = prv[r]
                    nr = nxt[r]
                    nxt[pr] = nr
                    prv[nr] = pr
                    remaining -= 1
                    if not remaining:
                        return outcome("linearizable")
                entry = -2
                break
            it = None
            entry = nxt[0] if entry == -2 else nxt[entry]
        else:
            depth = len(stack)
            if depth > best_depth:
                best_depth = depth
                del best_lin[low_water:]
                best_lin.extend(f[0] for f in stack[low_water:])
                low_water = depth
                blocked = ent_op[entry]
                candidates = []
                e = nxt[0]
                while e != entry:
                    candidates.append(ent_op[e])
                    e = nxt[e]
            if not depth:
                return outcome("not-linearizable")
            i, state, k, w, ib, it = stack.pop()
            if depth - 1 < low_water:
                low_water = depth - 1
            c = call_e[i]
            if req_bit[i] >= 0:
                r = ret_e[i]
                nxt[prv[r]] = r
                prv[nxt[r]] = r
                remaining += 1
            nxt[prv[c]] = c
            prv[nxt[c]] = c
            entry = c
