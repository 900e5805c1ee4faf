"""Exact edges of the key-value machine (protocols/kv_machine.py) that the mutation
run of ``protocols/`` found unchecked."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import pytest

from trio_foundation.protocols.kv_machine import (
    Compact,
    CompactResult,
    ErrorResult,
    Get,
    GetResult,
    KVMachine,
    KVMachineConfig,
    Put,
    Request,
    decode_request,
)


def test_a_write_sent_as_a_query_is_refused_naming_its_type_and_changes_nothing() -> None:
    machine = KVMachine()
    before = machine.snapshot()
    not_reads: list[Any] = [Put(b"k", b"v"), "get k"]
    assert [machine.query(c) for c in not_reads] == [
        ErrorResult("bad_command", "Put is not a read", 0),
        ErrorResult("bad_command", "str is not a read", 0),
    ]
    assert machine.snapshot() == before
    assert machine.query(Get(b"k")) == GetResult(None, 1)  # a fresh store is at revision 1


def test_a_malformed_read_is_refused_naming_the_field() -> None:
    assert KVMachine().query(Get("k")) == ErrorResult(  # type: ignore[arg-type]
        "bad_command", "key must be bytes, got str", 0
    )


def test_a_snapshot_with_more_sessions_than_its_bound_is_refused() -> None:
    snap = msgspec.msgpack.decode(KVMachine().snapshot())
    snap["config"]["max_sessions"] = 1
    snap["sessions"] = [[1, 0, b"", 0], [2, 0, b"", 0]]
    fresh = KVMachine()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=r"^snapshot history or sessions above their bounds$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_a_request_with_a_negative_client_is_refused_naming_the_fields() -> None:
    machine = KVMachine()
    before = machine.snapshot()
    assert machine.apply(Request(Put(b"k", b"v"), client=-1, seq=0, now=0)) == ErrorResult(
        "bad_command", "client, seq and now must be ints in [0, 2**63)", 0
    )
    assert machine.snapshot() == before


def test_undecodable_bytes_are_refused_with_the_decoders_reason() -> None:
    machine = KVMachine()
    before = machine.snapshot()
    with pytest.raises(msgspec.DecodeError) as raised:
        decode_request(b"\xc1")
    assert str(raised.value)  # the decoder names what is wrong
    assert machine.apply(b"\xc1") == ErrorResult(
        "bad_command", f"undecodable request: {raised.value}", 0
    )
    assert machine.snapshot() == before


def _two_keys() -> dict[str, Any]:
    machine = KVMachine()
    machine.apply(Request(Put(b"a", b"1")))
    machine.apply(Request(Put(b"b", b"2")))
    snap: dict[str, Any] = msgspec.msgpack.decode(machine.snapshot())
    return snap


def _refused(snap: dict[str, Any], text: str) -> None:
    fresh = KVMachine()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_a_snapshot_with_keys_out_of_order_or_too_many_is_refused() -> None:
    snap = _two_keys()
    snap["data"].reverse()
    _refused(snap, "snapshot keys are not unique and sorted, or too many")
    snap = _two_keys()
    snap["config"]["max_keys"] = 1
    _refused(snap, "snapshot keys are not unique and sorted, or too many")


def test_a_snapshot_whose_events_skip_or_end_early_is_refused() -> None:
    snap = _two_keys()
    snap["history"][1]["kv"]["mod_revision"] = 4
    _refused(snap, "snapshot events are not one per consecutive revision")
    snap = _two_keys()
    snap["revision"] = 4
    _refused(snap, "snapshot events do not end at the snapshot's revision")


def test_a_snapshot_of_another_version_or_with_a_bad_session_is_refused_naming_it() -> None:
    snap = _two_keys()
    snap["version"] = 2
    _refused(snap, "snapshot version 2, this library reads 1")
    snap = _two_keys()
    snap["sessions"] = [[7, 1, b"\xc1", 0]]
    with pytest.raises(msgspec.DecodeError) as raised:
        msgspec.msgpack.decode(b"\xc1")
    assert str(raised.value)
    fresh = KVMachine()
    with pytest.raises(ValueError, match=r"^snapshot session 7: \S"):
        fresh.restore(msgspec.msgpack.encode(snap))
    with pytest.raises(ValueError, match=r"^not a key-value machine snapshot: \S"):
        fresh.restore(b"\xc1")


@pytest.mark.parametrize(
    "name",
    ["history", "max_keys", "max_key_bytes", "max_value_bytes", "max_sessions", "session_ttl"],
)
def test_each_bound_below_one_is_named(name: str) -> None:
    bound: dict[str, Any] = {name: 0}
    with pytest.raises(ValueError, match=f"^{name} must be an int >= 1, got 0$"):
        KVMachine(KVMachineConfig(**bound))


def test_compacting_to_the_current_revision_is_allowed_one_above_is_refused() -> None:
    machine = KVMachine()
    machine.apply(Request(Put(b"a", b"1")))
    machine.apply(Request(Put(b"a", b"2")))
    assert machine.revision == 3
    assert machine.apply(Request(Compact(4))) == ErrorResult(
        "bad_command", "cannot compact to 4, above the revision 3", 0
    )
    assert machine.apply(Request(Compact(3))) == CompactResult(3)


def test_a_command_of_an_unknown_type_is_refused_naming_it() -> None:
    machine = KVMachine()
    assert machine.apply(Request("put a 1")) == ErrorResult(  # type: ignore[arg-type]
        "bad_command", "unknown command str", 0
    )
