"""The replicated lock machine (protocols/lock_machine.py): grants, renewals, expiry
commands, closed clients, bad input, snapshots and determinism."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.protocols import kv_machine as kv
from trio_foundation.protocols.lock_machine import (
    LOCK_TAG,
    LockAcquire,
    LockClose,
    LockDenied,
    LockDone,
    LockExpire,
    LockGranted,
    LockMachine,
    LockMachineConfig,
    LockQuery,
    LockRelease,
    LockRenew,
    LockRenewed,
    LockState,
    ServiceMachine,
)


class Log:
    """Feeds commands at increasing log indexes (gaps, as KV entries and noops make)."""

    def __init__(self, machine: LockMachine | None = None) -> None:
        self.m = machine or LockMachine(LockMachineConfig(max_ttl=30, max_locks=2, max_clients=4))
        self.index = 0

    def __call__(self, command: Any, gap: int = 1) -> Any:
        self.index += gap
        return self.m.apply_at(self.index, command)


def test_a_grant_is_fenced_by_its_log_index_and_excludes_others() -> None:
    log = Log()
    assert log(LockAcquire("a", 1, (1, 1), 5.0), gap=3) == LockGranted((1, 1), 3, 5.0)
    assert log(LockAcquire("a", 2, (1, 1), 5.0)) == LockDenied((1, 1), "held")
    assert log.m.query(LockQuery("a")) == LockState("a", 1, 3, 5.0, 3)
    # the holder asking again (a retry as a new request) gets a new, larger token
    assert log(LockAcquire("a", 1, (1, 2), 5.0), gap=2) == LockGranted((1, 2), 6, 5.0)


def test_stale_and_duplicate_requests_are_ignored() -> None:
    log = Log()
    log(LockAcquire("a", 1, (1, 5), 5.0))
    assert log(LockAcquire("a", 1, (1, 5), 5.0)) == LockDone(False)
    assert log(LockAcquire("a", 1, (1, 4), 5.0)) == LockDone(False)
    assert log.m.query(LockQuery("a")).token == 1


def test_renewal_moves_since_and_voids_an_older_expiry() -> None:
    log = Log()
    log(LockAcquire("a", 1, (1, 1), 5.0))  # index 1
    assert log(LockRenew("a", 1, (1, 2), 1, 7.0)) == LockRenewed((1, 2), 1, 7.0)  # index 2
    assert log(LockExpire("a", 1, 1)) == LockDone(False)  # timed against the grant
    assert log.m.query(LockQuery("a")).holder == 1
    assert log(LockExpire("a", 1, 2)) == LockDone(True)  # timed against the renewal
    assert log.m.query(LockQuery("a")).holder == 0
    assert log(LockRenew("a", 1, (1, 3), 1, 7.0)) == LockDenied(
        (1, 3), "not the holder of a live lease"
    )


def test_release_needs_the_holder_and_its_token() -> None:
    log = Log()
    log(LockAcquire("a", 1, (1, 1), 5.0))
    assert log(LockRelease("a", 2, 1)) == LockDone(False)
    assert log(LockRelease("a", 1, 99)) == LockDone(False)
    assert log(LockRelease("a", 1, 1)) == LockDone(True)
    assert len(log.m) == 0


def test_close_frees_the_clients_locks_and_refuses_its_late_acquires() -> None:
    log = Log()
    log(LockAcquire("a", 1, (1, 1), 5.0))
    log(LockAcquire("b", 1, (1, 1), 5.0))
    assert log(LockClose(1)) == LockDone(True)
    assert len(log.m) == 0
    assert log(LockAcquire("a", 1, (1, 2), 5.0)) == LockDenied(
        (1, 2), "client closed its connection"
    )
    for owner in (2, 3, 4, 5):  # the closed table is bounded (max_clients 4)
        log(LockClose(owner))
    assert isinstance(log(LockAcquire("a", 1, (1, 3), 5.0)), LockGranted)


def test_bounds_are_refused_with_the_lease_lock_wording() -> None:
    log = Log()
    assert log(LockAcquire("a", 1, (1, 1), 31.0)) == LockDenied(
        (1, 1), "ttl 31.0 exceeds max_ttl 30.0"
    )
    log(LockAcquire("a", 1, (1, 2), 5.0))
    log(LockAcquire("b", 1, (1, 1), 5.0))
    denied = log(LockAcquire("c", 1, (1, 1), 5.0))
    assert denied == LockDenied((1, 1), "too many locks (max 2)")


@pytest.mark.parametrize(
    ("command", "problem"),
    [
        (LockAcquire("", 1, (1, 1), 5.0), "name"),
        (LockAcquire("a", 0, (1, 1), 5.0), "owner"),
        (LockAcquire("a", 1, (1, -1), 5.0), "req"),
        (LockAcquire("a", 1, (1, 1), float("nan")), "ttl"),
        (LockRenew("a", 1, (1, 1), 0, 5.0), "token"),
        (LockExpire("a", 1, -3), "since"),
        ("nonsense", "unknown lock command"),
    ],
)
def test_malformed_commands_are_refused_not_raised(command: Any, problem: str) -> None:
    log = Log()
    before = log.m.snapshot()
    result = log(command)
    assert isinstance(result, LockDenied) and result.reason.startswith("bad command")
    assert problem in result.reason
    assert log.m.snapshot().replace(b"\x01", b"") != b""  # still a snapshot
    assert LockMachine(log.m.config).snapshot() == before  # nothing changed but the index


def test_an_index_that_does_not_increase_is_refused() -> None:
    m = LockMachine()
    assert isinstance(m.apply_at(5, LockAcquire("a", 1, (1, 1), 5.0)), LockGranted)
    result = m.apply_at(5, LockAcquire("b", 1, (1, 1), 5.0))
    assert isinstance(result, LockDenied) and "log index 5 after 5" in result.reason
    assert len(m) == 1


def test_snapshots_round_trip_and_refuse_garbage() -> None:
    log = Log()
    log(LockAcquire("b", 1, (1, 1), 5.0))
    log(LockAcquire("a", 2, (1, 1), 6.0))
    log(LockClose(3))
    copy = LockMachine()
    copy.restore(log.m.snapshot())
    assert copy.snapshot() == log.m.snapshot()
    assert [h.name for h in copy.held()] == [h.name for h in log.m.held()] == ["b", "a"]
    with pytest.raises(ValueError, match="not a lock machine snapshot"):
        copy.restore(b"garbage")
    assert copy.snapshot() == log.m.snapshot()


def test_the_service_machine_routes_and_reads_old_kv_snapshots() -> None:
    s = ServiceMachine()
    put = s.apply_at(1, kv.Request(kv.Put(b"k", b"v")))
    assert isinstance(put, kv.PutResult)
    assert isinstance(s.apply_at(2, (LOCK_TAG, LockAcquire("a", 1, (1, 1), 5.0))), LockGranted)
    assert isinstance(s.apply((LOCK_TAG, LockAcquire("b", 1, (1, 1), 5.0))), LockDenied)
    assert isinstance(s.apply_at(3, ("other", 1)), kv.ErrorResult)
    assert s.query(LockQuery("a")).holder == 1  # type: ignore[union-attr]
    assert s.query(kv.Get(b"k")).kv.value == b"v"  # type: ignore[union-attr]
    copy = ServiceMachine()
    copy.restore(s.snapshot())
    assert copy.snapshot() == s.snapshot()
    old = ServiceMachine()
    old.restore(s.kv.snapshot())  # a data dir or backup from before the locks
    assert old.query(kv.Get(b"k")).kv.value == b"v"  # type: ignore[union-attr]
    assert len(old.locks) == 0
    with pytest.raises(ValueError):
        old.restore(b"\x01\x02")


commands = st.one_of(
    st.builds(
        LockAcquire,
        st.sampled_from("ab"),
        st.integers(1, 3),
        st.tuples(st.just(1), st.integers(0, 6)),
        st.sampled_from([1.0, 5.0, 40.0]),
    ),
    st.builds(
        LockRenew,
        st.sampled_from("ab"),
        st.integers(1, 3),
        st.tuples(st.just(1), st.integers(0, 6)),
        st.integers(1, 12),
        st.just(2.0),
    ),
    st.builds(LockRelease, st.sampled_from("ab"), st.integers(1, 3), st.integers(1, 12)),
    st.builds(LockExpire, st.sampled_from("ab"), st.integers(1, 12), st.integers(1, 12)),
    st.builds(LockClose, st.integers(1, 3)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(commands, max_size=12))
def test_replicas_agree_and_tokens_increase(log: list[Any]) -> None:
    """Two replicas, one fed through wire bytes and a snapshot taken midway, end equal;
    every grant's token exceeds every earlier one and at most one holder per name."""
    a, b = LockMachine(), LockMachine()
    encoder = msgspec.msgpack.Encoder()
    decoder = msgspec.msgpack.Decoder(
        LockAcquire | LockRenew | LockRelease | LockExpire | LockClose
    )
    tokens: list[int] = []
    for index, command in enumerate(log, start=1):
        ra = a.apply_at(index, command)
        rb = b.apply_at(index, decoder.decode(encoder.encode(command)))
        assert ra == rb
        if isinstance(ra, LockGranted):
            assert ra.token == index and all(t < index for t in tokens)
            tokens.append(ra.token)
        if index == len(log) // 2:
            b2 = LockMachine()
            b2.restore(b.snapshot())
            b = b2
        holders = {h.name for h in a.held()}
        assert len(holders) == len(a)
    assert a.snapshot() == b.snapshot()
