"""Helpers for testing code that uses supervisors: children whose fate the test decides.

Example::

    children = ControlledChildren()
    async with open_supervisor([ChildSpec("a", children.child("a"))]) as sup:
        await trio.testing.wait_all_tasks_blocked()
        children.tell("a", "crash")  # "a" raises ChildCrash("a"); the supervisor reacts
        await trio.testing.wait_all_tasks_blocked()
        assert children.starts["a"] == 2
"""

from __future__ import annotations

import collections
from collections.abc import Awaitable, Callable
from typing import Literal, final

import trio

__all__ = ["ChildCrash", "ControlledChildren"]


class ChildCrash(Exception):
    """What a controlled child raises when told to crash (its argument is the child id)."""


@final
class ControlledChildren:
    """A factory of children that wait until the test tells them to crash or return.

    Attributes:
        starts: how many times each child id has started.
        running: the ids of the children running now.
        log: ``("start", id)`` and ``("stop", id)`` entries in the order they happened.
    """

    def __init__(self) -> None:
        self.starts: collections.Counter[str] = collections.Counter()
        self.running: set[str] = set()
        self.log: list[tuple[str, str]] = []
        self._gates: dict[str, trio.Event] = {}
        self._actions: dict[str, str] = {}

    def child(self, child_id: str) -> Callable[[], Awaitable[None]]:
        """An async callable for a :class:`ChildSpec`: runs until told otherwise."""

        async def run() -> None:
            self.starts[child_id] += 1
            self.running.add(child_id)
            self.log.append(("start", child_id))
            gate = self._gates[child_id] = trio.Event()
            try:
                await gate.wait()
                if self._actions.pop(child_id) == "crash":
                    raise ChildCrash(child_id)
            finally:
                self.running.discard(child_id)
                self.log.append(("stop", child_id))

        run.__name__ = run.__qualname__ = f"controlled_{child_id}"
        return run

    def tell(self, child_id: str, action: Literal["crash", "return"]) -> None:
        """Make the current run of ``child_id`` raise :class:`ChildCrash` or return.

        Synchronous; the child acts at its next scheduling.

        Raises:
            KeyError: ``child_id`` never started.
        """
        self._actions[child_id] = action
        self._gates[child_id].set()
