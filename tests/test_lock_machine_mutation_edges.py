"""Exact edges of the replicated lock machine (protocols/lock_machine.py) that the
mutation run of ``protocols/`` found unchecked: bounds at their limits, a renewal
longer than ``max_ttl``, a free lock's state and the service machine's refusals."""

from __future__ import annotations

import msgspec
import pytest

from trio_foundation.protocols import kv_machine as kv
from trio_foundation.protocols.lock_machine import (
    LOCK_TAG,
    HeldLock,
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

MAX = (1 << 63) - 1


@pytest.mark.parametrize("name", ["max_locks", "max_clients"])
def test_a_bound_of_one_is_accepted_and_zero_refused(name: str) -> None:
    machine = LockMachine(LockMachineConfig(**{name: 1}))
    assert getattr(machine.config, name) == 1
    with pytest.raises(ValueError, match=f"^{name} must be an int >= 1, got 0$"):
        LockMachine(LockMachineConfig(**{name: 0}))


def test_the_largest_owner_and_request_id_are_accepted_one_more_is_refused() -> None:
    machine = LockMachine()
    granted = machine.apply_at(1, LockAcquire("a", MAX, (MAX, MAX), 5.0))
    assert granted == LockGranted((MAX, MAX), 1, 5.0)
    refused = machine.apply_at(2, LockAcquire("b", MAX + 1, (1, 1), 5.0))
    assert refused == LockDenied((1, 1), "bad command: owner must be an int in [1, 2**63)")
    assert machine.query(LockQuery("b")) == LockState("b", 0, 0, 0.0, 0)


def test_a_renewal_longer_than_max_ttl_is_refused_and_keeps_the_lease() -> None:
    machine = LockMachine(LockMachineConfig(max_ttl=30))
    assert machine.apply_at(1, LockAcquire("a", 1, (1, 1), 5.0)) == LockGranted((1, 1), 1, 5.0)
    assert machine.apply_at(2, LockRenew("a", 1, (1, 2), 1, 31.0)) == LockDenied(
        (1, 2), "ttl 31.0 exceeds max_ttl 30.0"
    )
    assert machine.query(LockQuery("a")) == LockState("a", 1, 1, 5.0, 1)


def test_a_free_lock_reads_as_all_zeros() -> None:
    state = LockMachine().query(LockQuery("never"))
    assert state == LockState("never", 0, 0, 0.0, 0)
    assert isinstance(state.ttl, float)


@pytest.mark.parametrize("command", [("lock",), ("other", LockQuery("a")), (LOCK_TAG, 1, 2)])
def test_a_tuple_that_is_not_a_lock_command_is_a_bad_command(command: tuple[object, ...]) -> None:
    service = ServiceMachine()
    before = service.snapshot()
    assert service.apply_at(1, command) == kv.ErrorResult(
        "bad_command", "a tuple command must be ('lock', command) or ('ledger', command)"
    )
    assert service.snapshot() == before


def test_a_max_ttl_below_one_second_is_accepted_and_zero_refused() -> None:
    assert LockMachine(LockMachineConfig(max_ttl=0.5)).config.max_ttl == 0.5
    with pytest.raises(ValueError, match=r"^max_ttl must be a finite number > 0, got 0$"):
        LockMachine(LockMachineConfig(max_ttl=0))


def test_a_zero_ttl_is_a_bad_command_naming_the_ttl() -> None:
    assert LockMachine().apply_at(1, LockAcquire("a", 1, (1, 1), 0)) == LockDenied(
        (1, 1), "bad command: ttl must be a finite number > 0"
    )


def test_the_request_table_forgets_the_least_recently_used_lock_and_client() -> None:
    machine = LockMachine(LockMachineConfig(max_clients=2))
    for index, name in enumerate("abc", start=1):  # (a, 1) is forgotten when (c, 1) comes
        assert machine.apply_at(index, LockAcquire(name, 1, (1, 1), 5.0)) == LockGranted(
            (1, 1), index, 5.0
        )
    # (c, 1) is remembered: its replay is a duplicate
    assert machine.apply_at(4, LockAcquire("c", 1, (1, 1), 5.0)) == LockDone(False)
    # (a, 1) was forgotten: its replay is taken as new (the holder asking again)
    assert machine.apply_at(5, LockAcquire("a", 1, (1, 1), 5.0)) == LockGranted((1, 1), 5, 5.0)


def test_held_lists_each_lock_with_its_lease() -> None:
    machine = LockMachine()
    machine.apply_at(3, LockAcquire("b", 2, (1, 1), 7.5))
    machine.apply_at(4, LockAcquire("a", 1, (1, 1), 5.0))
    assert list(machine.held()) == [HeldLock("b", 2, 3, 7.5, 3), HeldLock("a", 1, 4, 5.0, 4)]


def test_the_service_machine_applies_a_key_value_request() -> None:
    service = ServiceMachine()
    assert service.apply(kv.Request(kv.Put(b"k", b"v"), client=0, seq=0, now=0)) == kv.PutResult(2)
    assert service.query(kv.Get(b"k")).kv.value == b"v"  # type: ignore[union-attr]


def test_refusals_name_the_problem() -> None:
    machine = LockMachine()
    assert machine.apply_at(1, LockAcquire("", 1, (1, 1), 5.0)) == LockDenied(
        (1, 1), "bad command: name must be a str of 1 to 256 characters"
    )
    assert machine.query("a") == LockDenied((0, 0), "bad command: not a lock query")  # type: ignore[arg-type]
    assert ServiceMachine().apply((LOCK_TAG, LockAcquire("a", 1, (1, 1), 5.0))) == LockDenied(
        (0, 0), "bad command: a lock command needs its log index"
    )


def test_a_snapshot_above_its_bounds_is_refused() -> None:
    machine = LockMachine()
    machine.apply_at(1, LockAcquire("a", 1, (1, 1), 5.0))
    machine.apply_at(2, LockAcquire("b", 1, (1, 1), 5.0))
    snap = msgspec.msgpack.decode(machine.snapshot())
    snap["config"]["max_locks"] = 1  # two locks held
    fresh = LockMachine()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=r"^lock snapshot above its bounds$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_a_renewal_retried_after_it_was_applied_changes_nothing_and_says_so() -> None:
    machine = LockMachine()
    assert machine.apply_at(1, LockAcquire("a", 1, (1, 1), 5.0)) == LockGranted((1, 1), 1, 5.0)
    renew = LockRenew("a", 1, (1, 2), 1, 9.0)
    assert machine.apply_at(2, renew) == LockRenewed((1, 2), 1, 9.0)
    # the same request id again (a client's retry): stale, nothing freed or renewed
    assert machine.apply_at(3, renew) == LockDone(False)
    assert machine.apply_at(4, LockRenew("a", 1, (1, 1), 1, 20.0)) == LockDone(False)
    assert machine.query(LockQuery("a")) == LockState("a", 1, 1, 9.0, 2)


def test_an_index_not_above_the_last_applied_is_refused_naming_both() -> None:
    machine = LockMachine()
    assert machine.apply_at(3, LockAcquire("a", 1, (1, 1), 5.0)) == LockGranted((1, 1), 3, 5.0)
    for index in (3, 2, 0, "4"):
        assert machine.apply_at(index, LockClose(1)) == LockDenied(  # type: ignore[arg-type]
            (0, 0), f"bad command: log index {index!r} after 3"
        )
    assert machine.applied == 3 and [h.name for h in machine.held()] == ["a"]


@pytest.mark.parametrize(
    ("command", "req", "problem"),
    [
        (LockAcquire("a", 1, (1, -1), 5.0), (0, 0), "req must be a pair of ints >= 0"),
        (LockRelease("a", 1, 0), (0, 0), "token must be an int in [1, 2**63)"),
        (LockExpire("a", 1, 0), (0, 0), "since must be an int in [1, 2**63)"),
        ("acquire a", (0, 0), None),
    ],
)
def test_malformed_lock_commands_are_named(
    command: object, req: tuple[int, int], problem: str | None
) -> None:
    machine = LockMachine()
    reason = problem or "unknown lock command str"
    assert machine.apply_at(1, command) == LockDenied(req, f"bad command: {reason}")


def test_a_lock_snapshot_of_another_version_or_not_one_is_refused_naming_it() -> None:
    snap = msgspec.msgpack.decode(LockMachine().snapshot())
    snap["version"] = 2
    fresh = LockMachine()
    with pytest.raises(ValueError, match=r"^lock snapshot version 2, this library reads 1$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    with pytest.raises(ValueError, match=r"^not a lock machine snapshot: \S"):
        fresh.restore(b"\xc1")


def test_a_name_of_256_characters_is_accepted_257_refused() -> None:
    machine = LockMachine()
    assert machine.apply_at(1, LockAcquire("n" * 256, 1, (1, 1), 5.0)) == LockGranted(
        (1, 1), 1, 5.0
    )
    assert machine.apply_at(2, LockAcquire("n" * 257, 1, (1, 2), 5.0)) == LockDenied(
        (1, 2), "bad command: name must be a str of 1 to 256 characters"
    )


def test_a_snapshot_remembering_too_many_request_ids_is_refused() -> None:
    machine = LockMachine()
    machine.apply_at(1, LockAcquire("a", 1, (1, 1), 5.0))
    machine.apply_at(2, LockAcquire("b", 2, (1, 1), 5.0))
    snap = msgspec.msgpack.decode(machine.snapshot())
    snap["config"]["max_clients"] = 1  # two (name, owner) request ids, nobody closed
    snap["config"]["max_locks"] = 2
    assert snap["closed"] == []
    fresh = LockMachine()
    with pytest.raises(ValueError, match=r"^lock snapshot above its bounds$"):
        fresh.restore(msgspec.msgpack.encode(snap))
