"""Exact edges of the ledger inside :class:`ServiceMachine` (protocols/lock_machine.py)
for the mutation run of ``protocols/``: every refusal's whole result, the ledger reads'
answers and their size limit at its bound, and what a restore keeps of each machine's
configuration."""

from __future__ import annotations

import re

import msgspec
import pytest

from trio_foundation.protocols import kv_machine as kv
from trio_foundation.protocols import ledger as led
from trio_foundation.protocols import lock_machine as lm

_TUPLE_TEXT = "a tuple command must be ('lock', command) or ('ledger', command)"


def funded() -> lm.ServiceMachine:
    machine = lm.ServiceMachine()
    for index, command in enumerate(
        (led.Open("alice"), led.Open("bob"), led.Mint("treasury", "alice", 10)), start=1
    ):
        machine.apply_at(index, (lm.LEDGER_TAG, command))
    return machine


def test_refused_tuple_commands_answer_exactly_and_change_nothing() -> None:
    machine = funded()
    before = machine.snapshot()
    assert machine.apply_at(4, (lm.LOCK_TAG, led.Open("x"))) == lm.LockDenied(
        (0, 0), "bad command: a ledger command under 'lock'"
    )
    assert machine.apply_at(5, (lm.LEDGER_TAG, lm.LockClose(1))) == lm.LedgerOutcome(
        led.ErrorResult("bad_command", "not a ledger command: LockClose")
    )
    for command in (
        ("nope", led.Open("x")),
        (lm.LEDGER_TAG, led.Open("x"), 1),  # a tag and a command, nothing more
        (lm.LOCK_TAG, lm.LockClose(1), 1),
        (lm.LEDGER_TAG,),
        (),
    ):
        assert machine.apply_at(6, command) == kv.ErrorResult("bad_command", _TUPLE_TEXT)
    assert machine.snapshot() == before


def test_apply_without_an_index_takes_ledger_commands_only() -> None:
    machine = funded()
    needs_index = lm.LockDenied((0, 0), "bad command: a lock command needs its log index")
    assert machine.apply((lm.LOCK_TAG, lm.LockClose(1))) == needs_index
    # not a lock command at all: named as apply_at names it (it said "needs its log index")
    assert machine.apply((lm.LEDGER_TAG, led.Open("x"), 1)) == kv.ErrorResult(
        "bad_command", _TUPLE_TEXT
    )
    assert machine.apply((lm.LEDGER_TAG, "open x")) == lm.LedgerOutcome(
        led.ErrorResult("bad_command", "not a ledger command: str")
    )
    assert machine.apply((lm.LEDGER_TAG, led.Transfer("alice", "bob", 4))) == lm.LedgerOutcome(
        led.Ok(4)
    )
    assert machine.ledger.balances() == {"alice": 6, "bob": 4}


def test_balance_reads_answer_exactly() -> None:
    machine = funded()
    assert machine.query(lm.LedgerBalance("alice")) == lm.LedgerBalanceResult("alice", 10, 3)
    assert machine.query(lm.LedgerBalance("carol")) == lm.LedgerOutcome(
        led.ErrorResult("unknown_account", "no account 'carol'", "carol")
    )
    # a name that is not a string (a client bypassing the codec): no account named
    assert machine.query(lm.LedgerBalance(7)) == lm.LedgerOutcome(  # type: ignore[arg-type]
        led.ErrorResult("unknown_account", "no account 7", "")
    )


def test_a_snapshot_read_at_the_limit_is_answered_and_one_byte_above_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    machine = funded()
    data = machine.ledger.snapshot()
    monkeypatch.setattr(lm, "LEDGER_READ_LIMIT", len(data))
    assert machine.query(lm.LedgerSnapshot()) == lm.LedgerSnapshotResult(data)
    monkeypatch.setattr(lm, "LEDGER_READ_LIMIT", len(data) - 1)
    assert machine.query(lm.LedgerSnapshot()) == lm.LedgerOutcome(
        led.ErrorResult(
            "limit",
            f"ledger snapshot of {len(data)} bytes exceeds the read limit"
            f" ({len(data) - 1}); read balances one by one",
        )
    )


def test_the_snapshot_is_version_2_with_all_three_machines() -> None:
    machine = funded()
    machine.apply_at(4, (lm.LOCK_TAG, lm.LockAcquire("x", 1, (1, 1), 5.0)))
    snap = msgspec.msgpack.decode(machine.snapshot())
    assert snap == {
        "type": "service",
        "version": 2,
        "kv": machine.kv.snapshot(),
        "locks": machine.locks.snapshot(),
        "ledger": machine.ledger.snapshot(),
    }


def _service(machine: lm.ServiceMachine, version: int, ledger: bytes) -> bytes:
    return msgspec.msgpack.encode(
        {
            "type": "service",
            "version": version,
            "kv": machine.kv.snapshot(),
            "locks": machine.locks.snapshot(),
            "ledger": ledger,
        }
    )


@pytest.mark.parametrize(
    ("version", "with_ledger", "text"),
    [
        (3, True, "service snapshot version 3, this library reads 1 and 2"),
        (0, False, "service snapshot version 0, this library reads 1 and 2"),
        (1, True, "service snapshot version 1 cannot hold a ledger"),
    ],
)
def test_restore_refusals_are_exact(version: int, with_ledger: bool, text: str) -> None:
    machine = funded()
    before = machine.snapshot()
    data = _service(machine, version, machine.ledger.snapshot() if with_ledger else b"")
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        machine.restore(data)
    assert machine.snapshot() == before


def test_restores_keep_each_machines_configuration() -> None:
    lock_config = lm.LockMachineConfig(max_ttl=9.0, max_locks=3, max_clients=4)
    ledger_config = led.LedgerConfig(authorities=("bank",), max_accounts=5)
    source = funded()
    # a bare key-value snapshot (before the locks and the ledger)
    bare = lm.ServiceMachine(lock_config=lock_config, ledger_config=ledger_config)
    bare.apply((lm.LEDGER_TAG, led.Open("stale")))
    bare.restore(source.kv.snapshot())
    assert bare.locks.config == lock_config and len(bare.locks) == 0
    assert bare.ledger.config == ledger_config and bare.ledger.balances() == {}
    # version 1 (before the ledger): an empty ledger with this machine's config
    old = lm.ServiceMachine(lock_config=lock_config, ledger_config=ledger_config)
    old.apply((lm.LEDGER_TAG, led.Open("stale")))
    old.restore(_service(source, 1, b""))
    assert old.ledger.config == ledger_config and old.ledger.balances() == {}
    # version 2 without a ledger field's bytes: also an empty ledger, this config
    empty = lm.ServiceMachine(ledger_config=ledger_config)
    empty.apply((lm.LEDGER_TAG, led.Open("stale")))
    empty.restore(_service(source, 2, b""))
    assert empty.ledger.config == ledger_config and empty.ledger.seq == 0
