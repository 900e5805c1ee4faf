"""Controllable children for the supervision tests (not a test module)."""

from __future__ import annotations

import collections

import trio


class Crash(Exception):
    """What a controlled child raises when told to crash."""


class Controls:
    """Children that wait for the test to tell them to crash, return, or keep running."""

    def __init__(self) -> None:
        self.starts: collections.Counter[str] = collections.Counter()
        self.running: set[str] = set()
        self._events: dict[str, trio.Event] = {}
        self._actions: dict[str, str] = {}
        self.log: list[tuple[str, str]] = []

    def child(self, cid: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            self.starts[cid] += 1
            self.running.add(cid)
            self.log.append(("start", cid))
            event = self._events[cid] = trio.Event()
            try:
                await event.wait()
                action = self._actions.pop(cid)
                if action == "crash":
                    raise Crash(cid)
            finally:
                self.running.discard(cid)
                self.log.append(("stop", cid))

        run.__name__ = f"child_{cid}"
        return run

    def tell(self, cid: str, action: str) -> None:
        self._actions[cid] = action
        self._events[cid].set()
