"""Exact edges of the key-value machine (protocols/kv_machine.py) that the mutation
run of ``protocols/`` found unchecked."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from trio_foundation.protocols.kv_machine import (
    ErrorResult,
    Get,
    GetResult,
    KVMachine,
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
