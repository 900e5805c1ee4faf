"""The storage adapter of traced runs: a core whose ``Persist`` effects carry its durable state.

Cores that persist incrementally (Raft's ``RaftPersist``, the auctioneer's
records) need a storage that *appends*; the simulator's node storage keeps the
last ``Persist`` only. :class:`AccumulatedStorage` wraps such a core: each
``Persist`` it emits is replaced, in its place, by ``Persist`` of the durable
state it adds up to, which :meth:`~AccumulatedStorage.restore` takes back after
a crash. Every other effect passes through unchanged and in order, so the trace
hook still sees the order the core emitted.
"""

from __future__ import annotations

import random
from typing import Any

from ...protocols.effects import ClientRequest, Effect, Persist

__all__ = ["AccumulatedStorage"]


class AccumulatedStorage:
    """A core wrapper (itself a :class:`~trio_foundation.protocols.effects.Core`) whose
    ``Persist`` effects carry the durable state so far.

    Subclasses say how one ``Persist``'s data adds to the durable state
    (:meth:`fold`) and may check what :meth:`restore` is given (:meth:`check`).

    Args:
        core: the wrapped core (a fresh one).
        durable: the durable state before the first ``Persist``.
    """

    def __init__(self, core: Any, durable: Any) -> None:
        self.core = core
        self.durable = durable

    def fold(self, durable: Any, data: Any) -> Any | None:
        """The durable state after ``data`` is persisted onto ``durable``; ``None``
        leaves that ``Persist`` as the core emitted it."""
        raise NotImplementedError

    def check(self, snapshot: Any) -> None:
        """Raise ``TypeError`` if ``snapshot`` is not a durable state (default: no check)."""

    def _store(self, effects: list[Effect]) -> list[Effect]:
        out: list[Effect] = []
        for eff in effects:
            folded = self.fold(self.durable, eff.data) if isinstance(eff, Persist) else None
            if folded is None:
                out.append(eff)
            else:
                self.durable = folded
                out.append(Persist(folded))
        return out

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        return self._store(self.core.on_start(now, rng))

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        return self._store(self.core.on_message(now, src, msg))

    def on_timer(self, now: float, name: str) -> list[Effect]:
        return self._store(self.core.on_timer(now, name))

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return self._store(self.core.on_client(now, request))

    def snapshot_persistent(self) -> Any:
        return self.durable

    def restore(self, snapshot: Any) -> None:
        self.check(snapshot)
        self.core.restore(snapshot)
        self.durable = snapshot
