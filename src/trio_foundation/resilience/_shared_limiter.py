"""A rate limiter shared by many processes through a :class:`KVStore`.

Theory of operation
-------------------
Each limiter key is one KV key (``prefix + key``) whose value is the algorithm's state
(a token bucket's ``tokens`` and ``last``, or GCRA's ``tat``) with the algorithm's
parameters, encoded as JSON. A decision is a read-modify-write made atomic by
compare-and-swap on the key's *mod revision*:

1. read the key (absent: a full bucket as of now);
2. run the algorithm's own ``try_take``/``take`` — the same pure code the in-process
   :class:`RateLimiter` runs — on the decoded state with this process's clock;
3. if it grants, write the new state with ``cas_revision(key, mod_revision, state)``;
   if another process wrote in between, the CAS fails and returns the key as it is now,
   and the decision is made again on that (at most ``max_attempts`` CAS attempts; when
   they run out the call is *denied*, never granted without a successful CAS).

A denial writes nothing. So every grant is one link of a single chain of states per key
(the store's revision order), and the only inputs that differ from the in-process
limiter are the clock readings, which come from different processes. The precision this
costs, and the behaviour when the store is unreachable, are stated in
``docs/resilience.md`` ("Sharing a limiter between processes") and checked by
``tests/test_resilience_shared_limiter.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final, Literal, final

import attrs
import msgspec
import trio

from .._errors import FoundationError
from ..coordination.kv import Bytesish, CasResult, KeyValue, KVStore, to_bytes
from ..telemetry import Telemetry
from ._errors import Rejected
from ._events import LIMITER_CONFLICT, LIMITER_OUTAGE, LIMITER_REJECTED, LIMITER_WAIT, _Listeners
from ._rate_limiter import GCRA, RateLimiter, TokenBucket, _Bucket, _Tat

__all__ = ["OutagePolicy", "SharedRateLimiter", "SharedRateLimiterStatistics"]

OutagePolicy = Literal["closed", "open", "local"]
_POLICIES: Final = ("closed", "open", "local")


@final
@attrs.frozen
class SharedRateLimiterStatistics:
    """Counters of one :class:`SharedRateLimiter` (this process only).

    Attributes:
        granted: grants written to the store.
        denied: calls refused by the algorithm.
        conflicts: CAS attempts that lost to another writer (each was retried).
        exhausted: calls denied because ``max_attempts`` CAS attempts all lost.
        outages: store calls that failed or timed out.
        outage_grants: grants made without the store (``on_outage="open"``/``"local"``).
    """

    granted: int
    denied: int
    conflicts: int
    exhausted: int
    outages: int
    outage_grants: int


class _Outage(Exception):
    """The store failed or timed out (internal; the cause is chained).

    ``args``: the operation (``"get"``, ``"cas"``) and what went wrong.
    """

    def __init__(self, operation: str, detail: str) -> None:
        super().__init__(operation, detail)
        self.operation = operation
        self.detail = detail


@final
class SharedRateLimiter:
    """A token-bucket or GCRA limiter whose per-key state lives in a shared KV store.

    Every process (or task) that makes a ``SharedRateLimiter`` over the same store,
    ``prefix`` and algorithm shares one bucket per key. See the module docstring for the
    algorithm and ``docs/resilience.md`` for the bound under clock skew.

    Args:
        store: a :class:`~trio_foundation.coordination.kv.KVStore` (``MemoryKV``,
            ``trio_foundation.etcd.EtcdKV``, ...).
        algorithm: :class:`TokenBucket` or :class:`GCRA` (the bound ``b + r*t`` of each,
            widened by the clock skew between processes).
        prefix: the KV key prefix of this limiter's keys (bytes or str, non-empty).
        name: used in events and errors.
        max_attempts: CAS attempts per decision (int >= 1); when all lose to other
            writers the call is denied.
        on_outage: what a call does when the store fails or does not answer within
            ``kv_timeout``: ``"closed"`` denies (``try_acquire`` returns False,
            ``acquire`` raises :class:`Rejected`), ``"open"`` grants, ``"local"`` decides
            with an in-process :class:`RateLimiter` of the same algorithm (each process
            then allows the full rate on its own).
        kv_timeout: seconds one store call may take before it counts as an outage (> 0).
        outage_errors: the exception types that mean "the store is unavailable"
            (default ``OSError`` and the project's :class:`FoundationError`, which the
            etcd client's errors derive from). Anything else propagates.
        clock: seconds, shared by every process (default :func:`time.time`: processes
            need a common time base, so a monotonic clock is wrong here).
        telemetry: where ``resilience.rate_limiter.rejected`` / ``.wait`` / ``.conflict``
            / ``.outage`` go; ``None``: :func:`~trio_foundation.telemetry.default_telemetry`.

    Raises:
        TypeError: a wrong type (algorithm, store, telemetry, prefix).
        ValueError: an empty prefix, ``max_attempts`` below 1, a non-positive timeout,
            an unknown ``on_outage``.
    """

    def __init__(
        self,
        store: KVStore,
        algorithm: TokenBucket | GCRA,
        *,
        prefix: Bytesish = b"ratelimit/",
        name: str = "shared_rate_limiter",
        max_attempts: int = 8,
        on_outage: OutagePolicy = "closed",
        kv_timeout: float = 1.0,
        outage_errors: tuple[type[BaseException], ...] = (OSError, FoundationError),
        clock: Callable[[], float] = time.time,
        telemetry: Telemetry | None = None,
    ) -> None:
        if not isinstance(algorithm, TokenBucket | GCRA):
            raise TypeError(
                "a shared limiter takes a TokenBucket or GCRA (one or two floats of state),"
                f" got {type(algorithm).__name__}"
            )
        if not isinstance(store, KVStore):
            raise TypeError(f"store must be a KVStore, got {type(store).__name__}")
        self._prefix = to_bytes(prefix, "prefix")
        if not self._prefix:
            raise ValueError("prefix must not be empty")
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {type(max_attempts).__name__}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        if on_outage not in _POLICIES:
            raise ValueError(f"on_outage must be one of {', '.join(_POLICIES)}; got {on_outage!r}")
        if not (kv_timeout > 0 and math.isfinite(kv_timeout)):
            raise ValueError(f"kv_timeout must be > 0 and finite, got {kv_timeout}")
        self.store: Final = store
        self.algorithm: Final = algorithm
        self.name: Final = name
        self.max_attempts: Final = max_attempts
        self.on_outage: Final[OutagePolicy] = on_outage
        self.kv_timeout: Final = float(kv_timeout)
        self._outage_errors = outage_errors
        self._clock = clock
        self._listeners = _Listeners("rate_limiter", name, telemetry)
        self._telemetry = self._listeners.telemetry
        self._tag = "gcra" if isinstance(algorithm, GCRA) else "token_bucket"
        self._local = RateLimiter(algorithm, clock=clock, name=name, telemetry=telemetry)
        self._granted = 0
        self._denied = 0
        self._conflicts = 0
        self._exhausted = 0
        self._outages = 0
        self._outage_grants = 0

    # ------------------------------------------------------------------- encoding

    def _take(self, state: _Bucket | _Tat, now: float, weight: int) -> float:
        a = self.algorithm
        if isinstance(a, GCRA):
            assert isinstance(state, _Tat)
            return a.take(state, now, weight)
        assert isinstance(state, _Bucket)
        return a.take(state, now, weight)

    def _encode(self, state: _Bucket | _Tat) -> bytes:
        a = self.algorithm
        if isinstance(state, _Tat):
            return msgspec.json.encode([self._tag, a.rate, a.burst, state.tat])
        return msgspec.json.encode([self._tag, a.rate, a.burst, state.tokens, state.last])

    def _decode(self, kv: KeyValue | None, now: float) -> _Bucket | _Tat:
        if kv is None:
            return self.algorithm.new_state(now)
        try:
            fields = msgspec.json.decode(kv.value)
            tag, rate, burst, *numbers = fields
            values = [float(x) for x in numbers]
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise ValueError(
                f"shared rate limiter {self.name!r}: key {kv.key!r} does not hold a limiter"
                f" state: {kv.value[:60]!r}"
            ) from exc
        a = self.algorithm
        if (tag, rate, burst) != (self._tag, a.rate, a.burst):
            raise ValueError(
                f"shared rate limiter {self.name!r}: key {kv.key!r} belongs to a"
                f" {tag}(rate={rate}, burst={burst}), this limiter is a"
                f" {self._tag}(rate={a.rate}, burst={a.burst}); use another prefix"
            )
        if isinstance(a, GCRA) and len(values) == 1:
            return _Tat(values[0])
        if isinstance(a, TokenBucket) and len(values) == 2:
            return _Bucket(values[0], values[1])
        raise ValueError(
            f"shared rate limiter {self.name!r}: key {kv.key!r} has a malformed state"
            f" {kv.value[:60]!r}"
        )

    # ------------------------------------------------------------------ store calls

    async def _get(self, key: bytes) -> KeyValue | None:
        try:
            with trio.fail_after(self.kv_timeout):
                return await self.store.get(key)
        except trio.TooSlowError as exc:
            raise _Outage("get", f"no answer within {self.kv_timeout} s") from exc
        except self._outage_errors as exc:
            raise _Outage("get", repr(exc)) from exc

    async def _cas(self, key: bytes, revision: int, value: bytes) -> CasResult:
        try:
            with trio.fail_after(self.kv_timeout):
                return await self.store.cas_revision(key, revision, value)
        except trio.TooSlowError as exc:
            raise _Outage("cas", f"no answer within {self.kv_timeout} s") from exc
        except self._outage_errors as exc:
            raise _Outage("cas", repr(exc)) from exc

    def _outage(self, outage: _Outage, shown: Bytesish) -> None:
        self._outages += 1
        if self._telemetry.listening(LIMITER_OUTAGE):
            self._listeners.tell(
                LIMITER_OUTAGE, shown, outage.detail, extra={"operation": outage.operation}
            )

    # --------------------------------------------------------------------- decisions

    async def _decide(self, key: bytes, weight: int, shown: Bytesish) -> float | None:
        """One decision: 0.0 granted (written), > 0 seconds to wait, None exhausted.

        ``shown``: the key as the caller passed it (``str`` or ``bytes``), for events.
        """
        try:
            return await self._decide_on(key, weight, shown)
        except _Outage as outage:
            self._outage(outage, shown)
            raise

    async def _decide_on(self, key: bytes, weight: int, shown: Bytesish) -> float | None:
        full = self._prefix + key
        kv = await self._get(full)
        for _ in range(self.max_attempts):
            now = self._clock()
            state = self._decode(kv, now)
            wait = self._take(state, now, weight)
            if wait:
                return wait
            revision = kv.mod_revision if kv is not None else 0
            result = await self._cas(full, revision, self._encode(state))
            if result.succeeded:
                return 0.0
            self._conflicts += 1
            if self._telemetry.listening(LIMITER_CONFLICT):
                self._listeners.tell(LIMITER_CONFLICT, shown, "lost a compare-and-swap")
            kv = result.current
        return None

    def _check(self, key: Bytesish, weight: int) -> bytes:
        k = to_bytes(key, "key")
        if isinstance(weight, bool) or not isinstance(weight, int):
            raise TypeError(f"weight must be an int, got {type(weight).__name__}")
        if not 1 <= weight <= self.algorithm.capacity:
            raise ValueError(
                f"weight must be between 1 and the capacity {self.algorithm.capacity}, got {weight}"
            )
        return k

    def _deny(self, key: Bytesish, weight: int, why: str) -> None:
        self._denied += 1
        if self._telemetry.listening(LIMITER_REJECTED):
            self._listeners.tell(LIMITER_REJECTED, key, why, {"weight": weight})

    async def try_acquire(self, key: Bytesish, weight: int = 1) -> bool:
        """Take ``weight`` for ``key`` if the shared bucket allows it now; never sleeps.

        A checkpoint (it talks to the store: one read, then one CAS per attempt). If
        cancelled, a CAS already sent may have been applied: the grant is then spent
        without being used (the error is on the safe side — never an extra grant).

        Returns:
            True if granted (written to the store, or granted by the outage policy).

        Raises:
            TypeError, ValueError: a key that is not bytes/str, a weight that is not an
                int in ``1..capacity``; a key holding another limiter's state.
        """
        k = self._check(key, weight)
        try:
            outcome = await self._decide(k, weight, key)
        except _Outage:
            return self._outage_decision(k, weight, key)
        if outcome == 0.0:
            self._granted += 1
            return True
        if outcome is None:
            self._exhausted += 1
            self._deny(key, weight, f"{self.max_attempts} compare-and-swap attempts lost")
        else:
            self._deny(key, weight, "over the limit")
        return False

    def _outage_decision(self, key: bytes, weight: int, shown: Bytesish) -> bool:
        if self.on_outage == "closed":
            self._deny(shown, weight, "store unavailable (fail closed)")
            return False
        if self.on_outage == "local" and not self._local.try_acquire(key, weight):
            self._deny(shown, weight, "store unavailable; the local limiter refused")
            return False
        self._outage_grants += 1
        return True

    async def acquire(self, key: Bytesish, weight: int = 1) -> None:
        """Wait until ``weight`` may be taken for ``key`` from the shared bucket, then take it.

        Sleeps for the time the algorithm says the bucket needs, then decides again
        (another process may have taken the tokens meanwhile: no fairness across
        processes). Always a checkpoint; cancellation while sleeping takes nothing,
        during a CAS as :meth:`try_acquire`.

        Raises:
            TypeError, ValueError: as :meth:`try_acquire`.
            Rejected: the store is unavailable and ``on_outage="closed"`` (or the local
                fallback limiter refused: its own ``Rejected``).
        """
        k = self._check(key, weight)
        began = trio.current_time()
        waited = False
        while True:
            try:
                outcome = await self._decide(k, weight, key)
            except _Outage as exc:
                if self.on_outage == "closed":
                    self._deny(key, weight, "store unavailable (fail closed)")
                    raise Rejected(
                        "shared rate limiter", f"{self.name!r}: the store is unavailable"
                    ) from exc.__cause__
                if self.on_outage == "local":
                    await self._local.acquire(k, weight)
                self._outage_grants += 1
                return
            if outcome == 0.0:
                self._granted += 1
                if waited and self._telemetry.listening(LIMITER_WAIT):
                    self._listeners.tell(
                        LIMITER_WAIT,
                        key,
                        "granted after waiting",
                        {"duration": trio.current_time() - began, "weight": weight},
                    )
                return
            waited = True
            if outcome is None:
                self._exhausted += 1
                outcome = 1.0 / self.algorithm.rate  # contention: back off one token's time
            await trio.sleep(outcome)

    def statistics(self) -> SharedRateLimiterStatistics:
        """This process's counters (the store holds the shared state)."""
        return SharedRateLimiterStatistics(
            granted=self._granted,
            denied=self._denied,
            conflicts=self._conflicts,
            exhausted=self._exhausted,
            outages=self._outages,
            outage_grants=self._outage_grants,
        )
