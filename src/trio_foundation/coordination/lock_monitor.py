"""What a lock server process reports: telemetry events and Prometheus-ready metrics.

:class:`LockServerMonitor` watches each step of every lock's core from the
outside — the core's ``holder``/``expiry``/``token`` before and after a
message, and the messages it sent — so the cores stay pure and a server without
a monitor pays nothing. It emits these events on a
:class:`~trio_foundation.telemetry.Telemetry` (measurements / metadata):

=================================  ==========================  =========================
event                              measurements                metadata
=================================  ==========================  =========================
``lock_server.granted``            ``token``, ``ttl``          ``name``, ``client``
``lock_server.renewed``            ``token``, ``ttl``          ``name``, ``client``
``lock_server.released``           ``token``                   ``name``, ``client``
``lock_server.expired``            ``token``                   ``name``, ``client``
``lock_server.refused``            (none)                      ``name``, ``client``,
                                                               ``reason`` (the code),
                                                               ``detail`` (the text)
``lock_server.token_mark``         ``mark``, ``max_ttl``,      ``path``
                                   ``seconds`` (the fsync)
``lock_server.connections``        ``open``, ``accepted``,     (none)
                                   ``lost``, ``dropped``
``lock_server.storage_failed``     ``errno``                   ``path``
=================================  ==========================  =========================

and keeps these series in a :class:`~trio_foundation.telemetry.MetricRegistry`
(Prometheus adds ``_total`` to counters):

* counters ``foundation_lock_grants``, ``foundation_lock_renewals``,
  ``foundation_lock_releases``, ``foundation_lock_expiries``,
  ``foundation_lock_refusals{reason}`` (``held``, ``quiet``, ``ttl_too_long``,
  ``not_holder``, ``too_many_locks``, ``other``), ``foundation_lock_token_marks``
  (marks persisted), ``foundation_lock_connections_accepted``,
  ``foundation_lock_connections_lost``, ``foundation_lock_connections_dropped``;
* gauges ``foundation_lock_held{name}`` (1 while the lock has a live lease),
  ``foundation_lock_waiters{name}`` (clients refused as ``held`` or ``quiet``
  in the last :data:`WAITER_WINDOW` seconds and not granted since: they are
  retrying), ``foundation_lock_holders`` and ``foundation_lock_waiting`` (the
  totals over every name), ``foundation_lock_names``,
  ``foundation_lock_tokens_issued`` (grants since the process started),
  ``foundation_lock_token_mark`` (the durable mark),
  ``foundation_lock_connections_open``.

Per-name series are kept for the first ``max_named`` lock names; later names
are counted under the name ``"_other"``, so the number of series is bounded.

An expiry is seen lazily (the cores keep no timers): when the next message for
that lock arrives, or by :meth:`LockServerMonitor.sweep`, which the server runs
every :data:`SWEEP_INTERVAL` seconds with the connection counters.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final, final

from ..protocols.lease_lock import (
    AcquireRequest,
    Denied,
    Granted,
    LockServer,
    ReleaseRequest,
    Renewed,
)
from ..runtime.tcp import TransportStatistics
from ..telemetry import Gauge, MetricRegistry, Telemetry

__all__ = ["OTHER_NAMES", "SWEEP_INTERVAL", "WAITER_WINDOW", "LockServerMonitor"]

WAITER_WINDOW: Final = 5.0
"""Seconds a refused client counts as waiting (clients retry well within it)."""

SWEEP_INTERVAL: Final = 1.0
"""Seconds between two sweeps (expiries, waiters, connection counters)."""

OTHER_NAMES: Final = "_other"
"""The ``name`` label of the lock names beyond ``max_named``."""

_MAX_WAITERS_PER_NAME: Final = 1024


def _reason(text: str) -> str:
    if text == "held":
        return "held"
    if text.startswith("quiet"):
        return "quiet"
    if "exceeds max_ttl" in text:
        return "ttl_too_long"
    if text.startswith("not the holder"):
        return "not_holder"
    if text.startswith("too many locks"):
        return "too_many_locks"
    return "other"


@final
class _Name:
    """What the monitor remembers of one lock name."""

    __slots__ = ("counted_expiry", "held", "label", "waiters", "waiting")

    def __init__(self, label: str, held: Gauge, waiting: Gauge) -> None:
        self.label = label
        self.held = held
        self.waiting = waiting
        #: the token whose expiry was already reported (0: none)
        self.counted_expiry = 0
        # Invariant: at most _MAX_WAITERS_PER_NAME clients, least recent first.
        self.waiters: OrderedDict[int, float] = OrderedDict()


@final
class LockServerMonitor:
    """Telemetry events and metrics of a lock server (see the module docstring).

    Args:
        telemetry: where events go (``None``: none are emitted).
        metrics: where series are kept (``None``: a private registry; read
            :attr:`metrics`).
        max_named: lock names that get their own per-name series (>= 1).

    Raises:
        ValueError: ``max_named`` < 1, or the registry already holds one of
            the metric names with another kind.
    """

    def __init__(
        self,
        telemetry: Telemetry | None = None,
        metrics: MetricRegistry | None = None,
        *,
        max_named: int = 100,
    ) -> None:
        if isinstance(max_named, bool) or not isinstance(max_named, int) or max_named < 1:
            raise ValueError(f"max_named must be an int >= 1, got {max_named!r}")
        self.telemetry = telemetry
        self.metrics = metrics if metrics is not None else MetricRegistry(max_series=1000)
        self.max_named = max_named
        m = self.metrics
        self._grants = m.counter("foundation_lock_grants", "leases granted").value
        self._renewals = m.counter("foundation_lock_renewals", "leases renewed").value
        self._releases = m.counter("foundation_lock_releases", "live leases released").value
        self._expiries = m.counter("foundation_lock_expiries", "leases that ran out").value
        self._refusals = m.counter("foundation_lock_refusals", "requests refused", ["reason"])
        self._marks = m.counter("foundation_lock_token_marks", "token marks persisted").value
        self._accepted = m.counter(
            "foundation_lock_connections_accepted", "client connections accepted"
        ).value
        self._lost = m.counter("foundation_lock_connections_lost", "connections ended").value
        self._dropped = m.counter(
            "foundation_lock_connections_dropped", "connections dropped for misbehaviour"
        ).value
        self._held = m.gauge("foundation_lock_held", "1 while the lock has a live lease", ["name"])
        self._waiting = m.gauge(
            "foundation_lock_waiters", "clients retrying for the lock", ["name"]
        )
        self._holders = m.gauge("foundation_lock_holders", "live leases, all names").value
        self._waiting_total = m.gauge(
            "foundation_lock_waiting", "clients retrying, all names"
        ).value
        self._names_gauge = m.gauge("foundation_lock_names", "lock names served").value
        self._issued = m.gauge(
            "foundation_lock_tokens_issued", "tokens granted since the process started"
        ).value
        self._mark_gauge = m.gauge("foundation_lock_token_mark", "the durable token mark").value
        self._open = m.gauge("foundation_lock_connections_open", "connections open").value
        self._names: dict[str, _Name] = {}
        self._cores: dict[str, LockServer] = {}
        self._last_connections: tuple[int, int, int, int] | None = None

    # ------------------------------------------------------------------ helpers

    def _emit(self, event: str, measurements: dict[str, float], metadata: dict[str, Any]) -> None:
        if self.telemetry is not None:
            self.telemetry.emit(event, measurements, metadata)

    def _name(self, name: str) -> _Name:
        entry = self._names.get(name)
        if entry is None:
            label = name if len(self._names) < self.max_named else OTHER_NAMES
            entry = self._names[name] = _Name(
                label, self._held.labels(label), self._waiting.labels(label)
            )
            self._names_gauge.set(len(self._names))
        return entry

    # ------------------------------------------------------------------ hooks

    def watch(self, name: str, core: LockServer) -> None:
        """Start watching the core of lock ``name`` (called when it is created)."""
        self._cores[name] = core
        self._name(name)

    def before(self, name: str, now: float) -> tuple[int | None, float, int]:
        """Call before a step of ``name``'s core; pass the result to :meth:`after`."""
        core = self._cores[name]
        self._check_expiry(name, core, now)
        return core.holder, core.expiry, core.token

    def after(
        self,
        name: str,
        now: float,
        src: int,
        msg: Any,
        before: tuple[int | None, float, int],
        sent: list[tuple[int, Any]],
    ) -> None:
        """Report the step of ``name``'s core on ``msg`` from ``src``, which sent ``sent``."""
        core = self._cores[name]
        entry = self._names[name]
        holder, expiry, token = before
        for dst, out in sent:
            if isinstance(out, Granted):
                self._grants.inc()
                self._issued.inc()
                entry.waiters.pop(dst, None)
                if holder is not None and holder != dst and expiry <= now:
                    self._expired(name, entry, holder, token)
                self._emit(
                    "lock_server.granted",
                    {"token": out.token, "ttl": out.ttl},
                    {"name": name, "client": dst},
                )
            elif isinstance(out, Renewed):
                self._renewals.inc()
                self._emit(
                    "lock_server.renewed",
                    {"token": out.token, "ttl": out.ttl},
                    {"name": name, "client": dst},
                )
            elif isinstance(out, Denied):
                self.refused(name, dst, out.reason, now, acquire=isinstance(msg, AcquireRequest))
        if (
            isinstance(msg, ReleaseRequest)
            and holder == src
            and core.holder is None
            and expiry > now
        ):
            self._releases.inc()
            self._emit("lock_server.released", {"token": token}, {"name": name, "client": src})
        if entry.label == name:  # names under OTHER_NAMES are summed by sweep()
            entry.held.set(1.0 if core.holder is not None and now < core.expiry else 0.0)

    def refused(self, name: str, client: int, reason: str, now: float, *, acquire: bool) -> None:
        """Report a refusal sent to ``client`` for lock ``name``."""
        kind = _reason(reason)
        self._refusals.labels(kind).inc()
        if acquire and kind in ("held", "quiet") and name in self._names:
            waiters = self._names[name].waiters
            waiters[client] = now
            waiters.move_to_end(client)
            while len(waiters) > _MAX_WAITERS_PER_NAME:
                waiters.popitem(last=False)
        self._emit(
            "lock_server.refused",
            {},
            {"name": name, "client": client, "reason": kind, "detail": reason},
        )

    def mark_persisted(self, path: str, mark: int, max_ttl: float, seconds: float) -> None:
        """Report a token mark made durable (``seconds``: the write and its fsync)."""
        self._marks.inc()
        self._mark_gauge.set(mark)
        self._emit(
            "lock_server.token_mark",
            {"mark": mark, "max_ttl": max_ttl, "seconds": seconds},
            {"path": path},
        )

    def storage_failed(self, path: str, errno: int | None) -> None:
        """Report the storage failure that stops the server."""
        self._emit("lock_server.storage_failed", {"errno": float(errno or 0)}, {"path": path})

    def set_mark(self, mark: int) -> None:
        """The durable mark read at start."""
        self._mark_gauge.set(mark)

    def _expired(self, name: str, entry: _Name, holder: int, token: int) -> None:
        if entry.counted_expiry == token:
            return
        entry.counted_expiry = token
        self._expiries.inc()
        self._emit("lock_server.expired", {"token": token}, {"name": name, "client": holder})

    def _check_expiry(self, name: str, core: LockServer, now: float) -> None:
        if core.holder is not None and core.expiry <= now:
            entry = self._names[name]
            self._expired(name, entry, core.holder, core.token)
            if entry.label == name:
                entry.held.set(0.0)

    def sweep(self, now: float, connections: TransportStatistics | None) -> None:
        """Refresh what time changes: expiries, waiters, totals, connection counters.

        ``O(names)``; the server calls it every :data:`SWEEP_INTERVAL` seconds.
        """
        holders = 0
        waiting_total = 0
        per_label_held: dict[str, int] = {}
        per_label_waiting: dict[str, int] = {}
        for name, core in self._cores.items():
            entry = self._names[name]
            self._check_expiry(name, core, now)
            live = core.holder is not None and now < core.expiry
            holders += live
            waiters = entry.waiters
            while waiters and next(iter(waiters.values())) <= now - WAITER_WINDOW:
                waiters.popitem(last=False)
            if core.holder is not None and live:
                waiters.pop(core.holder, None)
            waiting_total += len(waiters)
            per_label_held[entry.label] = per_label_held.get(entry.label, 0) + live
            per_label_waiting[entry.label] = per_label_waiting.get(entry.label, 0) + len(waiters)
        for label, count in per_label_held.items():
            self._held.labels(label).set(count)
        for label, count in per_label_waiting.items():
            self._waiting.labels(label).set(count)
        self._holders.set(holders)
        self._waiting_total.set(waiting_total)
        if connections is not None:
            dropped = sum(connections.drops.values())
            now_counts = (
                connections.connections_open,
                connections.connections_accepted,
                connections.connections_lost,
                dropped,
            )
            previous = self._last_connections or (0, 0, 0, 0)
            self._open.set(now_counts[0])
            self._accepted.inc(now_counts[1] - previous[1])
            self._lost.inc(now_counts[2] - previous[2])
            self._dropped.inc(now_counts[3] - previous[3])
            if now_counts != previous:
                self._emit(
                    "lock_server.connections",
                    {
                        "open": now_counts[0],
                        "accepted": now_counts[1],
                        "lost": now_counts[2],
                        "dropped": now_counts[3],
                    },
                    {},
                )
            self._last_connections = now_counts
