"""Exact edges of the key-value machine (protocols/kv_machine.py) that the mutation
run of ``protocols/`` found unchecked."""

from __future__ import annotations

from typing import Any

from trio_foundation.protocols.kv_machine import ErrorResult, Get, GetResult, KVMachine, Put


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
