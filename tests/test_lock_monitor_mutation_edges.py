"""coordination/lock_monitor.py: exact events and series, step by step (mutation survivors).

Driven without a network, as ``tests/test_lock_server_metrics.py`` does: the
monitor watches real :class:`~trio_foundation.protocols.lease_lock.LockServer`
cores, and each step hands it what the server would (the state before, the
message, what the core sent). Every assertion is an exact value: a series, an
event's measurements and metadata, a refusal's code, or a documented help text.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from trio_foundation.coordination.lock_monitor import OTHER_NAMES, WAITER_WINDOW, LockServerMonitor
from trio_foundation.protocols.effects import Send
from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    Denied,
    LockServer,
    ReleaseRequest,
    RenewRequest,
)
from trio_foundation.runtime.tcp import TransportStatistics
from trio_foundation.telemetry import Event, MetricRegistry, Telemetry

EVENTS = [
    f"lock_server.{e}"
    for e in (
        "granted",
        "renewed",
        "released",
        "expired",
        "refused",
        "token_mark",
        "connections",
        "storage_failed",
    )
]


class _Server:
    """Real lock cores watched by a monitor, stepped by hand."""

    def __init__(self, *, max_named: int = 100) -> None:
        telemetry = Telemetry(slow_handler=None)
        self.events: list[Event] = []
        telemetry.attach("t", EVENTS, self.events.append)
        self.monitor = LockServerMonitor(telemetry, MetricRegistry(), max_named=max_named)
        self.cores: dict[str, LockServer] = {}

    def core(self, name: str, max_ttl: float = 10.0) -> LockServer:
        self.cores[name] = core = LockServer(0, max_ttl=max_ttl)
        core.on_start(0.0, random.Random(0))
        self.monitor.watch(name, core)
        return core

    def step(self, name: str, now: float, src: int, msg: Any) -> list[Any]:
        before = self.monitor.before(name, now)
        effects = self.cores[name].on_message(now, src, msg)
        sent = [(e.to, e.msg) for e in effects if isinstance(e, Send)]
        self.monitor.after(name, now, src, msg, before, sent)
        return [m for _, m in sent]

    def value(self, name: str, *labels: str) -> float:
        for family in self.monitor.metrics.families():
            if family.name == name:
                for values, series in family.series():
                    if values == labels:
                        return float(series.value)  # type: ignore[union-attr]
        raise KeyError((name, labels))

    def seen(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        out = [
            (e.name.removeprefix("lock_server."), dict(e.measurements), dict(e.metadata))
            for e in self.events
        ]
        self.events.clear()
        return out


def test_the_series_are_the_documented_ones() -> None:
    monitor = LockServerMonitor()
    families = {f.name: (f.kind, f.help, f.label_names) for f in monitor.metrics.families()}
    assert families == {
        "foundation_lock_grants": ("counter", "leases granted", ()),
        "foundation_lock_renewals": ("counter", "leases renewed", ()),
        "foundation_lock_releases": ("counter", "live leases released", ()),
        "foundation_lock_expiries": ("counter", "leases that ran out", ()),
        "foundation_lock_refusals": ("counter", "requests refused", ("reason",)),
        "foundation_lock_token_marks": ("counter", "token marks persisted", ()),
        "foundation_lock_connections_accepted": ("counter", "client connections accepted", ()),
        "foundation_lock_connections_lost": ("counter", "connections ended", ()),
        "foundation_lock_connections_dropped": (
            "counter",
            "connections dropped for misbehaviour",
            (),
        ),
        "foundation_lock_held": ("gauge", "1 while the lock has a live lease", ("name",)),
        "foundation_lock_waiters": ("gauge", "clients retrying for the lock", ("name",)),
        "foundation_lock_holders": ("gauge", "live leases, all names", ()),
        "foundation_lock_waiting": ("gauge", "clients retrying, all names", ()),
        "foundation_lock_names": ("gauge", "lock names served", ()),
        "foundation_lock_tokens_issued": ("gauge", "tokens granted since the process started", ()),
        "foundation_lock_token_mark": ("gauge", "the durable token mark", ()),
        "foundation_lock_connections_open": ("gauge", "connections open", ()),
    }
    assert monitor.max_named == 100
    assert monitor.telemetry is None


@pytest.mark.parametrize("bad", [0, -3, True, 1.5, "2"])
def test_max_named_is_checked(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^max_named must be an int >= 1, got {bad!r}$"):
        LockServerMonitor(max_named=bad)  # type: ignore[arg-type]
    assert LockServerMonitor(max_named=1).max_named == 1


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("held", "held"),
        ("held by 3", "other"),
        ("quiet period after restart", "quiet"),
        ("ttl 20 exceeds max_ttl 10", "ttl_too_long"),
        ("not the holder of a live lease", "not_holder"),
        ("too many locks (64)", "too_many_locks"),
        ("server shutting down", "other"),
    ],
)
def test_a_refusal_is_reported_with_its_code_and_text(text: str, code: str) -> None:
    server = _Server()
    server.core("x")
    server.monitor.refused("x", 7, text, 1.0, acquire=False)
    assert server.seen() == [
        ("refused", {}, {"name": "x", "client": 7, "reason": code, "detail": text})
    ]
    assert server.value("foundation_lock_refusals", code) == 1


def test_grant_renew_release_and_a_refused_waiter() -> None:
    server = _Server()
    server.core("x")
    assert server.value("foundation_lock_names") == 1
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 4.0))
    server.step("x", 1.0, 2, AcquireRequest((2, 1), 4.0))  # held: 2 now waits
    server.step("x", 2.0, 1, RenewRequest((1, 2), 1, 4.0))
    assert server.value("foundation_lock_held", "x") == 1
    server.monitor.sweep(2.5, None)
    assert server.value("foundation_lock_waiters", "x") == 1
    assert server.value("foundation_lock_waiting") == 1
    assert server.value("foundation_lock_holders") == 1
    server.step("x", 3.0, 1, ReleaseRequest(1))
    assert server.value("foundation_lock_held", "x") == 0
    server.step("x", 3.5, 2, AcquireRequest((2, 2), 4.0))  # the waiter is granted
    server.monitor.sweep(4.0, None)
    assert server.value("foundation_lock_waiters", "x") == 0  # granted: no longer waiting
    assert server.seen() == [
        ("granted", {"token": 1, "ttl": 4.0}, {"name": "x", "client": 1}),
        (
            "refused",
            {},
            {"name": "x", "client": 2, "reason": "held", "detail": "held"},
        ),
        ("renewed", {"token": 1, "ttl": 4.0}, {"name": "x", "client": 1}),
        ("released", {"token": 1}, {"name": "x", "client": 1}),
        ("granted", {"token": 2, "ttl": 4.0}, {"name": "x", "client": 2}),
    ]
    assert server.value("foundation_lock_grants") == 2
    assert server.value("foundation_lock_tokens_issued") == 2
    assert server.value("foundation_lock_renewals") == 1
    assert server.value("foundation_lock_releases") == 1
    assert server.value("foundation_lock_expiries") == 0
    assert server.value("foundation_lock_refusals", "held") == 1


def test_a_refusal_of_a_renewal_or_of_a_too_long_ttl_is_no_waiter() -> None:
    server = _Server()
    server.core("x", max_ttl=5.0)
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 4.0))
    server.step("x", 0.5, 2, RenewRequest((2, 1), 9, 4.0))  # not the holder
    server.step("x", 0.6, 3, AcquireRequest((3, 1), 50.0))  # ttl too long
    server.monitor.sweep(1.0, None)
    assert server.value("foundation_lock_waiters", "x") == 0
    assert server.value("foundation_lock_refusals", "not_holder") == 1
    assert server.value("foundation_lock_refusals", "ttl_too_long") == 1


def test_a_lapsed_lease_is_one_expiry_and_then_no_release() -> None:
    server = _Server()
    server.core("x")
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 2.0))
    server.seen()
    server.step("x", 5.0, 1, ReleaseRequest(1))  # too late: the lease lapsed at 2.0
    assert server.seen() == [("expired", {"token": 1}, {"name": "x", "client": 1})]
    server.monitor.sweep(6.0, None)
    server.monitor.sweep(7.0, None)
    assert server.value("foundation_lock_expiries") == 1
    assert server.value("foundation_lock_releases") == 0
    assert server.value("foundation_lock_held", "x") == 0


def test_a_grant_over_a_lapsed_lease_reports_its_expiry_first() -> None:
    server = _Server()
    server.core("x")
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 2.0))
    server.seen()
    server.step("x", 3.0, 2, AcquireRequest((2, 1), 2.0))
    assert [e[0] for e in server.seen()] == ["expired", "granted"]
    assert server.value("foundation_lock_expiries") == 1
    assert server.value("foundation_lock_held", "x") == 1


def test_an_expiry_seen_by_the_sweep_is_reported_once() -> None:
    server = _Server()
    server.core("x")
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 2.0))
    server.monitor.sweep(1.0, None)
    assert server.value("foundation_lock_held", "x") == 1
    assert server.value("foundation_lock_holders") == 1
    server.seen()
    server.monitor.sweep(2.0, None)  # expiry == now: lapsed
    server.monitor.sweep(3.0, None)
    assert server.seen() == [("expired", {"token": 1}, {"name": "x", "client": 1})]
    assert server.value("foundation_lock_held", "x") == 0
    assert server.value("foundation_lock_holders") == 0


def test_waiters_leave_after_the_window_and_the_holder_is_no_waiter() -> None:
    server = _Server()
    server.core("x")
    server.step("x", 0.0, 1, AcquireRequest((1, 1), 9.0))
    server.step("x", 1.0, 2, AcquireRequest((2, 1), 9.0))
    server.step("x", 2.0, 3, AcquireRequest((3, 1), 9.0))
    server.monitor.sweep(1.0 + WAITER_WINDOW - 0.01, None)
    assert server.value("foundation_lock_waiters", "x") == 2
    server.monitor.sweep(1.0 + WAITER_WINDOW, None)  # 2's refusal is WAITER_WINDOW old
    assert server.value("foundation_lock_waiters", "x") == 1
    assert server.value("foundation_lock_waiting") == 1
    # a waiter that is granted by the core between two sweeps is not counted
    server.monitor.refused("x", 1, "held", 6.5, acquire=True)
    server.monitor.sweep(6.6, None)
    assert server.value("foundation_lock_waiters", "x") == 1


def test_waiters_of_a_name_are_bounded_least_recent_first() -> None:
    server = _Server()
    server.core("x")
    for client in range(1030):
        server.monitor.refused("x", client, "held", 1.0, acquire=True)
    server.monitor.refused("x", 0, "quiet period after restart", 1.0, acquire=True)
    server.monitor.sweep(1.5, None)
    assert server.value("foundation_lock_waiters", "x") == 1024
    # a refusal for a name the monitor does not watch counts, but holds no waiter
    server.monitor.refused("unknown", 5, "held", 1.0, acquire=True)
    assert server.value("foundation_lock_refusals", "held") == 1031


def test_names_beyond_max_named_are_summed_under_other() -> None:
    server = _Server(max_named=2)
    for name in ("a", "b", "c", "d"):
        server.core(name)
    assert server.value("foundation_lock_names") == 4
    server.step("c", 0.0, 1, AcquireRequest((1, 1), 5.0))
    server.step("d", 0.0, 1, AcquireRequest((1, 2), 5.0))
    server.step("a", 0.0, 1, AcquireRequest((1, 3), 5.0))
    server.monitor.sweep(1.0, None)
    assert server.value("foundation_lock_held", "a") == 1
    assert server.value("foundation_lock_held", "b") == 0
    assert server.value("foundation_lock_held", OTHER_NAMES) == 2
    assert server.value("foundation_lock_holders") == 3
    events = server.seen()
    assert [(e[0], e[2]["name"]) for e in events] == [
        ("granted", "c"),
        ("granted", "d"),
        ("granted", "a"),
    ]


def _stats(open_: int, accepted: int, lost: int, drops: dict[str, int]) -> TransportStatistics:
    return TransportStatistics(
        node_id=0,
        listen_address=("127.0.0.1", 1),
        connections_open=open_,
        connections_accepted=accepted,
        connections_dialed=0,
        connections_lost=lost,
        dial_failures=0,
        drops=drops,
        frames_sent=0,
        frames_received=0,
        send_queue_overflows=0,
        discarded=0,
        unroutable=0,
        queued=0,
    )


def test_connection_counters_follow_the_transport_and_report_changes() -> None:
    server = _Server()
    server.monitor.sweep(1.0, _stats(2, 3, 1, {"bad_frame": 1, "auth": 2}))
    server.monitor.sweep(2.0, _stats(2, 3, 1, {"bad_frame": 1, "auth": 2}))  # no change
    server.monitor.sweep(3.0, _stats(1, 5, 4, {"bad_frame": 2, "auth": 2}))
    assert server.value("foundation_lock_connections_open") == 1
    assert server.value("foundation_lock_connections_accepted") == 5
    assert server.value("foundation_lock_connections_lost") == 4
    assert server.value("foundation_lock_connections_dropped") == 4
    assert server.seen() == [
        ("connections", {"open": 2, "accepted": 3, "lost": 1, "dropped": 3}, {}),
        ("connections", {"open": 1, "accepted": 5, "lost": 4, "dropped": 4}, {}),
    ]
    server.monitor.sweep(4.0, None)  # no transport: counters untouched
    assert server.value("foundation_lock_connections_accepted") == 5


def test_marks_and_storage_failures_are_reported() -> None:
    server = _Server()
    server.monitor.set_mark(1000)
    assert server.value("foundation_lock_token_mark") == 1000
    server.monitor.mark_persisted("/d/tokens", 2000, 30.0, 0.004)
    assert server.value("foundation_lock_token_mark") == 2000
    assert server.value("foundation_lock_token_marks") == 1
    server.monitor.storage_failed("/d/tokens", 28)
    server.monitor.storage_failed("/d/tokens", None)
    assert server.seen() == [
        ("token_mark", {"mark": 2000, "max_ttl": 30.0, "seconds": 0.004}, {"path": "/d/tokens"}),
        ("storage_failed", {"errno": 28.0}, {"path": "/d/tokens"}),
        ("storage_failed", {"errno": 0.0}, {"path": "/d/tokens"}),
    ]


def test_without_telemetry_only_series_are_kept() -> None:
    monitor = LockServerMonitor(None)
    core = LockServer(0, max_ttl=10)
    core.on_start(0.0, random.Random(0))
    monitor.watch("x", core)
    before = monitor.before("x", 0.0)
    msg = AcquireRequest((1, 1), 4.0)
    sent = [(e.to, e.msg) for e in core.on_message(0.0, 1, msg) if isinstance(e, Send)]
    monitor.after("x", 0.0, 1, msg, before, sent)
    monitor.after("x", 0.1, 2, msg, before, [(2, Denied((2, 1), "held"))])
    families = {f.name: f for f in monitor.metrics.families()}
    assert families["foundation_lock_grants"].value.value == 1  # type: ignore[union-attr]
    assert dict(families["foundation_lock_refusals"].series())[("held",)].value == 1  # type: ignore[union-attr]
