"""protocols.kv_machine: agrees with MemoryKV, snapshots round-trip, retries apply once,
every bound holds, and no input makes it raise."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.coordination.kv import CompactedError, KeyValue, MemoryKV, WatchEvent
from trio_foundation.protocols.kv_machine import (
    KV,
    Cas,
    CasResult,
    CasRevision,
    CloseSession,
    Compact,
    CompactResult,
    Delete,
    DeleteResult,
    ErrorResult,
    Event,
    Get,
    GetResult,
    KVMachine,
    KVMachineConfig,
    OpenSession,
    Put,
    PutResult,
    Range,
    RangeResult,
    Request,
    SessionResult,
    Watch,
    WatchResult,
    decode_result,
    encode,
)


def kv_of(k: KeyValue | None) -> KV | None:
    if k is None:
        return None
    return KV(k.key, k.value, k.create_revision, k.mod_revision, k.version, k.lease)


def event_of(e: WatchEvent) -> Event:
    return Event(e.type, kv_of(e.kv), kv_of(e.prev))  # type: ignore[arg-type]


def run(m: KVMachine, command: Any, **kw: Any) -> Any:
    """Apply through the wire format, as a replica would."""
    return decode_result(
        encode(m.apply(msgspec.msgpack.decode(encode(Request(command, **kw)), type=Request)))
    )


# ----------------------------------------------------------------- differential


KEYS = st.sampled_from([b"a", b"ab", b"abc", b"b", b""])
VALUES = st.sampled_from([b"", b"x", b"y", b"zz"])
COMMANDS = st.one_of(
    st.builds(Put, KEYS, VALUES),
    st.builds(Get, KEYS),
    st.builds(Delete, KEYS),
    st.builds(Cas, KEYS, st.one_of(st.none(), VALUES), VALUES),
    st.builds(CasRevision, KEYS, st.integers(0, 12), VALUES),
    st.builds(Range, st.sampled_from([b"", b"a", b"ab", b"c"]), st.integers(0, 2)),
    st.builds(Watch, st.sampled_from([b"", b"a", b"b"]), st.integers(0, 14)),
    st.just("snapshot"),
)


async def reference(kv: MemoryKV, c: Any) -> Any:
    """What MemoryKV answers, in the machine's result types."""
    if isinstance(c, Put):
        return PutResult(await kv.put(c.key, c.value))
    if isinstance(c, Get):
        return GetResult(kv_of(await kv.get(c.key)), kv.revision)
    if isinstance(c, Delete):
        deleted = await kv.delete(c.key)
        return DeleteResult(deleted, kv.revision)
    if isinstance(c, Cas | CasRevision):
        if isinstance(c, Cas):
            r = await kv.cas(c.key, c.expect, c.new)
        else:
            r = await kv.cas_revision(c.key, c.mod_revision, c.new)
        return CasResult(r.succeeded, r.revision, kv_of(r.current))
    if isinstance(c, Range):
        kvs, rev = await kv.range(c.prefix, limit=c.limit)
        return ("range", tuple(kv_of(k) for k in kvs), rev)
    assert isinstance(c, Watch)
    try:
        async with kv.watch(c.prefix, start_revision=c.start_revision) as it:
            events = []
            with trio.move_on_after(1):  # the mock clock jumps once the backlog is drained
                async for e in it:
                    events.append(event_of(e))
    except CompactedError as exc:
        return ("compacted", exc.compact_revision)
    return ("watch", tuple(events))


def comparable(result: Any) -> Any:
    if isinstance(result, RangeResult):
        return ("range", result.kvs, result.revision)
    if isinstance(result, WatchResult):
        return ("watch", result.events)
    if isinstance(result, ErrorResult) and result.code == "compacted":
        return ("compacted", result.compact_revision)
    return result


@given(commands=st.lists(COMMANDS, min_size=4, max_size=60), history=st.integers(1, 12))
@settings(max_examples=300)
def test_the_machine_agrees_with_memory_kv(commands: list[Any], history: int) -> None:
    """Random operation sequences, with snapshot/restore into a fresh machine mid-way:
    every answer equals MemoryKV's, and a twin machine ends with the same snapshot."""

    async def main() -> None:
        kv = MemoryKV(history=history, watch_capacity=100)
        machine = KVMachine(KVMachineConfig(history=history))
        twin = KVMachine(KVMachineConfig(history=history))
        for c in commands:
            if c == "snapshot":
                blob = machine.snapshot()
                machine = KVMachine()
                machine.restore(blob)
                assert machine.snapshot() == blob
                continue
            expected = await reference(kv, c)
            assert comparable(run(machine, c)) == expected, c
            twin.apply(Request(c))
            assert machine.revision == kv.revision
        assert machine.snapshot() == twin.snapshot()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_watch_and_compaction_follow_memory_kv_examples() -> None:
    m = KVMachine(KVMachineConfig(history=3))
    assert run(m, Watch(b"", 1)) == ErrorResult(
        "compacted", "revision 1 has been compacted; oldest kept is 2", 2
    )
    for i in range(5):
        run(m, Put(b"k%d" % i, b"v"))
    assert m.revision == 6 and m.events == 3
    w = run(m, Watch(b"", 4, limit=2))
    assert [e.kv.mod_revision for e in w.events] == [4, 5] and w.next_revision == 6
    assert run(m, Watch(b"", 3)).code == "compacted"
    assert run(m, Compact(5)) == CompactResult(5)
    assert run(m, Watch(b"", 4)).compact_revision == 5
    assert run(m, Compact(7)).code == "bad_command"
    assert run(m, Watch(b"", 0)) == WatchResult((), 6, 7)
    assert run(m, Watch(b"", 9)) == WatchResult((), 6, 9)  # from the future: nothing yet


# ----------------------------------------------------------------- sessions


def test_a_retried_write_is_applied_once_and_answered_the_same() -> None:
    m = KVMachine()
    (client,) = [run(m, OpenSession()).client]
    first = run(m, Cas(b"k", None, b"v1"), client=client, seq=1, now=10)
    assert first == CasResult(True, 2, KV(b"k", b"v1", 2, 2, 1))
    run(m, Put(b"k", b"other"))  # someone else writes
    again = run(m, Cas(b"k", None, b"v1"), client=client, seq=1, now=11)
    assert again == first and m.revision == 3  # not applied twice
    assert run(m, Put(b"k", b"v2"), client=client, seq=2, now=12) == PutResult(4)
    stale = run(m, Put(b"k", b"v1"), client=client, seq=1, now=13)
    assert stale.code == "stale_request" and m.revision == 4
    # reads are not cached: a retried read sees the present
    assert run(m, Get(b"k"), client=client, seq=3).kv.value == b"v2"
    run(m, Put(b"k", b"v3"))
    assert run(m, Get(b"k"), client=client, seq=3).kv.value == b"v3"
    # the cache survives a snapshot
    run(m, Delete(b"k"), client=client, seq=4, now=14)
    restored = KVMachine()
    restored.restore(m.snapshot())
    assert run(restored, Delete(b"k"), client=client, seq=4, now=15) == DeleteResult(True, 6)
    assert restored.revision == 6
    assert run(m, CloseSession(), client=client, seq=5) == SessionResult(0)
    assert run(m, Put(b"k", b"x"), client=client, seq=6).code == "session_expired"


def test_sessions_expire_by_the_carried_clock_and_are_bounded() -> None:
    m = KVMachine(KVMachineConfig(max_sessions=3, session_ttl=100))
    ids = [run(m, OpenSession(), now=0).client for _ in range(3)]
    assert ids == [1, 2, 3] and m.sessions == 3
    run(m, Put(b"a", b"1"), client=1, seq=1, now=50)
    run(m, Get(b"a"), now=120)  # sessions 2 and 3 were idle since 0: expired
    assert m.sessions == 1
    refused = run(m, Put(b"a", b"2"), client=2, seq=1, now=121)
    assert refused.code == "session_expired" and m.revision == 2  # not applied
    more = [run(m, OpenSession(), now=130).client for _ in range(3)]
    assert more == [4, 5, 6] and m.sessions == 3  # session 1 (least recently used) evicted
    assert run(m, Put(b"a", b"3"), client=1, seq=2, now=131).code == "session_expired"
    assert run(m, Get(b"a"), now=50).kv.value == b"1"  # an older stamp does not rewind the clock
    assert m.sessions == 3


# ----------------------------------------------------------------- bounds and bad input


def test_bounds_hold_and_are_answered_with_errors() -> None:
    m = KVMachine(
        KVMachineConfig(max_keys=3, max_key_bytes=4, max_value_bytes=3, max_range=2, history=2)
    )
    assert run(m, Put(b"toolong", b"v")).code == "too_large"
    assert run(m, Put(b"k", b"long")).code == "too_large"
    assert run(m, Get(b"toolong")).code == "too_large"
    for key in (b"k1", b"k2", b"k3"):
        run(m, Put(key, b"v"))
    assert run(m, Put(b"k4", b"v")).code == "too_many_keys"
    assert run(m, Put(b"k1", b"w")) == PutResult(5)  # an existing key may change
    assert run(m, Range(b"k", 1)) == RangeResult((KV(b"k1", b"w", 2, 5, 2),), 5, True)
    r = run(m, Range(b"k", 0))
    assert r.kvs == (KV(b"k1", b"w", 2, 5, 2), KV(b"k2", b"v", 3, 3, 1)) and r.more  # capped
    assert run(m, Range(b"k2", 0)) == RangeResult((KV(b"k2", b"v", 3, 3, 1),), 5, False)
    assert m.events == 2 and len(m) == 3 and m.revision == 5


@pytest.mark.parametrize(
    "command",
    [
        Put("text", b"v"),  # type: ignore[arg-type]
        Put(b"k", None),  # type: ignore[arg-type]
        Cas(b"k", 3, b"v"),  # type: ignore[arg-type]
        CasRevision(b"k", -1, b"v"),
        Range(b"", -1),
        Watch(b"", -5),
        Compact(True),
        "put",
        None,
    ],
)
def test_a_bad_command_gets_an_error_result(command: Any) -> None:
    m = KVMachine()
    result = m.apply(Request(command))
    assert isinstance(result, ErrorResult) and result.code == "bad_command"
    assert m.revision == 1 and len(m) == 0


@given(
    st.binary(max_size=64)
    | st.builds(lambda b: encode(Request(Put(b"k", b"v")))[: len(b)], st.binary())
)
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    m = KVMachine()
    result = m.apply(data)
    assert isinstance(
        result,
        PutResult
        | ErrorResult
        | GetResult
        | RangeResult
        | WatchResult
        | CompactResult
        | SessionResult
        | DeleteResult
        | CasResult,
    )
    if isinstance(result, ErrorResult):
        assert result.code in ("bad_command", "session_expired", "compacted", "too_large")


def test_bad_request_fields_and_snapshots_are_refused() -> None:
    m = KVMachine()
    assert m.apply(Request(Get(b"k"), client=-1)).code == "bad_command"  # type: ignore[union-attr]
    assert m.apply("no").code == "bad_command"  # type: ignore[arg-type, union-attr]
    with pytest.raises(ValueError, match="not a key-value machine snapshot"):
        m.restore(b"\x00garbage")
    with pytest.raises(ValueError, match="history must be an int >= 1, got 0"):
        KVMachine(KVMachineConfig(history=0))
    m.apply(Request(Put(b"a", b"1")))
    good = m.snapshot()
    snap = msgspec.msgpack.decode(good)
    snap["data"] = list(reversed(snap["data"])) + snap["data"]
    with pytest.raises(ValueError, match="not unique and sorted"):
        m.restore(msgspec.msgpack.encode(snap))
    assert m.snapshot() == good  # unchanged by the refused restore


def test_replicas_fed_the_same_commands_hold_the_same_bytes() -> None:
    rng = random.Random()
    a, b = KVMachine(), KVMachine()
    log = []
    for i in range(500):
        key = bytes([rng.randrange(97, 110)])
        c = rng.choice([Put(key, b"%d" % i), Delete(key), Cas(key, b"1", b"2"), OpenSession()])
        log.append(encode(Request(c, client=rng.choice([0, 1, 2]), seq=i, now=i)))
    assert [a.apply(x) for x in log] == [b.apply(x) for x in log]
    assert a.snapshot() == b.snapshot()


def test_the_example_in_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "consensus.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if b.startswith("# example: kv-machine\n")]
    exec(compile(code, str(doc), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "PutResult(revision=2)"
    assert out[1] == "PutResult(revision=2) 2"
    assert out[2].startswith("CasResult(succeeded=True, revision=3,")
    assert out[3:] == ["b'n2'", "['PUT', 'PUT']"]


ANYTHING = st.one_of(
    st.binary(max_size=8),
    st.integers(-(2**70), 2**70),
    st.none(),
    st.text(max_size=4),
    st.booleans(),
    st.floats(allow_nan=True),
)
SHAPES = [Get, Put, Delete, Cas, CasRevision, Range, Watch, Compact, OpenSession, CloseSession]


@given(
    data=st.data(),
    client=st.integers(-(2**70), 2**70) | st.sampled_from([0, 1, 2]),
    seq=st.integers(-(2**70), 2**70),
    now=st.integers(-(2**70), 2**70),
)
def test_malformed_structs_never_raise(
    data: st.DataObject, client: int, seq: int, now: int
) -> None:
    """Structs built in Python with fields of any type and size: an error result, never
    an exception, and the store unchanged by a refused command."""
    m = KVMachine(KVMachineConfig(max_key_bytes=4, max_value_bytes=4))
    m.apply(Request(OpenSession()))
    m.apply(Request(Put(b"k", b"v")))
    shape = data.draw(st.sampled_from(SHAPES))
    fields = [data.draw(ANYTHING) for _ in shape.__struct_fields__]
    result = m.apply(Request(shape(*fields), client=client, seq=seq, now=now))
    assert type(result).__name__.endswith("Result")
    if isinstance(result, ErrorResult) and result.code != "session_expired":
        after = KVMachine()
        after.restore(m.snapshot())
        assert (after.revision, len(after)) == (2, 1)


def test_session_expiry_boundary_and_an_older_stamp() -> None:
    """Idle for exactly ``session_ttl`` is alive, one more unit expires it; a request
    stamped earlier than the clock counts as activity at the clock (no rewinding)."""
    m = KVMachine(KVMachineConfig(session_ttl=100))
    a = run(m, OpenSession(), now=0).client
    b = run(m, OpenSession(), now=0).client
    assert run(m, Put(b"k", b"1"), client=a, seq=1, now=100) == PutResult(2)
    assert m.sessions == 2  # b idle for exactly the ttl
    run(m, Get(b"x"), now=150)
    assert m.sessions == 1  # b expired, a (active at 100) not
    assert run(m, Put(b"k", b"2"), client=a, seq=2, now=10) == PutResult(3)  # a stale stamp
    run(m, Get(b"x"), now=250)  # a was active at 150, the clock then: idle for exactly 100
    assert m.sessions == 1 and run(m, Put(b"k", b"3"), client=a, seq=3) == PutResult(4)
    run(m, Get(b"x"), now=351)
    assert m.sessions == 0
    assert run(m, Put(b"k", b"4"), client=a, seq=4).code == "session_expired"
    assert run(m, Put(b"k", b"4"), client=b, seq=1).code == "session_expired"


@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["write", "write", "retry", "retry", "open", "tick"]),
            st.integers(0, 3),
            KEYS,
            VALUES,
        ),
        max_size=60,
    )
)
def test_a_retry_never_applies_twice(steps: list[tuple[str, int, bytes, bytes]]) -> None:
    """Writes and retries from several sessions, with sessions opened (evicting the
    least recently used) and time passing (expiring idle ones): a retry is answered
    with the first answer and changes nothing, or is refused and changes nothing."""
    m = KVMachine(KVMachineConfig(max_sessions=2, session_ttl=50))
    clients: list[int] = []
    last: dict[int, tuple[Request, Any]] = {}
    now = 0
    for kind, who, key, value in steps:
        if kind == "open":
            clients.append(m.apply(Request(OpenSession(), now=now)).client)  # type: ignore[union-attr]
            continue
        if kind == "tick":
            now += 30
            continue
        if not clients:
            continue
        client = clients[who % len(clients)]
        if kind == "retry" and client in last:
            request, first = last[client]
            rev = m.revision
            got = m.apply(msgspec.structs.replace(request, now=now))
            if got != first:
                assert isinstance(got, ErrorResult) and got.code == "session_expired"
            assert m.revision == rev
            continue
        seq = last[client][0].seq + 1 if client in last else 1
        request = Request(Put(key, value), client=client, seq=seq, now=now)
        rev = m.revision
        result = m.apply(request)
        if isinstance(result, ErrorResult):
            assert result.code == "session_expired" and m.revision == rev
        else:
            assert result == PutResult(rev + 1)
        last[client] = (request, result)


@given(
    writes=st.lists(st.tuples(KEYS, VALUES, st.booleans()), min_size=1, max_size=40),
    prefix=st.sampled_from([b"", b"a", b"ab", b"b"]),
    start=st.integers(1, 45),
    limit=st.integers(1, 5),
)
def test_polling_a_watch_in_pages_reads_the_same_events(
    writes: list[tuple[bytes, bytes, bool]], prefix: bytes, start: int, limit: int
) -> None:
    """A watcher that polls with ``limit`` and follows ``next_revision`` sees exactly the
    events of one unlimited read, in order, and ends at the current revision + 1."""
    m = KVMachine(KVMachineConfig(history=50))
    for key, value, delete in writes:
        m.apply(Request(Delete(key) if delete else Put(key, value)))
    whole = m.apply(Request(Watch(prefix, start)))
    paged: list[Event] = []
    revision = start
    while True:
        page = m.apply(Request(Watch(prefix, revision, limit)))
        if not isinstance(page, WatchResult):
            assert page == whole and page.code == "compacted"  # type: ignore[union-attr]
            return
        assert len(page.events) <= limit
        paged.extend(page.events)
        if page.next_revision > m.revision:  # caught up
            break
        assert page.next_revision > revision and len(page.events) == limit
        revision = page.next_revision
    assert isinstance(whole, WatchResult)
    assert tuple(paged) == whole.events and page.next_revision == whole.next_revision
