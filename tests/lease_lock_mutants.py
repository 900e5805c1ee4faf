"""Deliberately broken lease-lock cores: the checks must catch each of them.

Used by property_tests/test_lease_lock.py (the stateful test must find a
counterexample) and tests/test_lease_lock_spec.py (their traces must be
rejected by TLC). Not part of the library, so no user can pick one by accident.
"""

from __future__ import annotations

import random
from typing import Any

from trio_foundation.protocols.effects import ClientRequest, Effect, Persist
from trio_foundation.protocols.lease_lock import FencedResource, LockClient, LockServer


class NoDriftClient(LockClient):  # type: ignore[misc]  # subclassing a @final core on purpose
    """Broken: trusts the server's ttl on its own clock, ignoring the drift bound."""

    def validity(self, ttl: float) -> float:
        return ttl


class UnfencedResource(FencedResource):  # type: ignore[misc]
    """Broken: accepts every token."""

    def accepts(self, token: int) -> bool:
        return True


class AmnesiacClient(LockClient):  # type: ignore[misc]
    """Broken: does not persist its incarnation, so request ids repeat after a crash."""

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.incarnation = 1
        self._seq = 0
        return []


class ForgetfulAbortClient(LockClient):  # type: ignore[misc]
    """Broken: forgets the requests its callers abandoned, so their grants are kept
    (the lock stays held for nobody until the ttl runs out)."""

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        effects = super().on_client(now, request)
        self._abandoned.clear()
        return effects


class SendBeforePersistServer(LockServer):  # type: ignore[misc]
    """Broken: emits a grant's ``Send`` before the ``Persist`` of its token.

    Under the node driver (which executes ``Persist`` first whatever the order)
    it behaves, but the core breaks its ordering duty: trace validation must
    reject it (``GrantsDurable``).
    """

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        effects = super().on_message(now, src, msg)
        persists = [e for e in effects if isinstance(e, Persist)]
        return [e for e in effects if not isinstance(e, Persist)] + persists
