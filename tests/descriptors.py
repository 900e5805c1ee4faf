"""Open file descriptors of this process, for tests that check that a block closed
every socket and file it opened.

A count taken right after the block is not enough on a loaded machine: another
thread of this process (a worker that trio abandoned by design, the interpreter's
own machinery) may hold a descriptor for a moment, and a socket an earlier test
leaked may be garbage-collected (closed) meanwhile. :func:`left_open` therefore
waits, up to ``settle`` seconds, until no descriptor opened since the baseline is
still open; a descriptor the block really leaked stays open however long we wait,
and the failure names it.
"""

from __future__ import annotations

import gc
import os
import time

FD_DIR = "/proc/self/fd"
_SETTLE_AFTER_LEAK = 0.25  # real seconds
_leak_found_in: str | None = None  # the test in which left_open last reported a leak


def open_descriptors() -> dict[int, str]:
    """This process's open descriptors: number -> what it refers to
    (``socket:[inode]``, a path, ``anon_inode:[eventpoll]``, ...)."""
    found: dict[int, str] = {}
    for name in os.listdir(FD_DIR):
        try:
            found[int(name)] = os.readlink(f"{FD_DIR}/{name}")
        except OSError:  # closed between the listing and the readlink
            continue
    return found


def left_open(baseline: dict[int, str], settle: float = 5.0) -> list[str]:
    """The descriptors open now that were not in ``baseline`` (same number and
    target), once they have had up to ``settle`` real seconds to close (at most
    0.25 s once a leak was reported in the same test: a failing property test's
    shrink steps).

    Returns:
        ``["fd N -> target", ...]``, empty when nothing opened since ``baseline``
        is still open. Blocks the calling thread (not a trio checkpoint).
    """
    global _leak_found_in
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0]
    if _leak_found_in is not None and _leak_found_in == test:
        # This test already found a leak (after the full wait): it is failing, and
        # Hypothesis is shrinking it. A full wait per shrink step made a leaking
        # property test take 331 s to report (past the 300 s test timeout).
        settle = min(settle, _SETTLE_AFTER_LEAK)
    deadline = time.monotonic() + settle
    while True:
        new = {
            fd: target for fd, target in open_descriptors().items() if baseline.get(fd) != target
        }
        if not new or time.monotonic() >= deadline:
            if new:
                _leak_found_in = test
            return [f"fd {fd} -> {target}" for fd, target in sorted(new.items())]
        gc.collect()
        time.sleep(0.05)
