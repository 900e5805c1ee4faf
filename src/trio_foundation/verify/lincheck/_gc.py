"""Pausing the cyclic garbage collector over the checker's linear phases.

Pairing, partitioning, the prechecks and indexing allocate a few containers
per operation (an :class:`~trio_foundation.verify.lincheck.Operation`, index
lists, tuples), none of them in a cycle. Every 700 allocations CPython's
cyclic collector runs, and its older generations traverse everything
allocated so far again: on a 10,000-operation history that is about a fifth
of the whole check's CPU time. Reference counting still frees all of it, so
these phases (bounded, ``O(n log n)``) run with the collector paused. The
search itself, which may run for long, does not: cycles that other threads
make meanwhile must still be collected.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_lock = threading.Lock()
# Invariant: _pausers is the number of gc_paused() blocks running (in any
# thread); while it is > 0 the collector is disabled, and _was_enabled is
# whether it was enabled when the first of them began.
_pausers = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it after the last
    concurrent block ends, if it was enabled before the first began."""
    global _pausers, _was_enabled
    with _lock:
        if _pausers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _pausers += 1
    try:
        yield
    finally:
        with _lock:
            _pausers -= 1
            if _pausers == 0 and _was_enabled:
                gc.enable()
