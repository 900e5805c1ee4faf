"""Fuzzing the frame decoder: whatever bytes arrive, it never crashes, and it never
hands out a message that was not sent; a real listener survives garbage."""

from __future__ import annotations

import itertools
import struct
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_foundation.protocols import lease_lock as L
from trio_foundation.runtime.auth import MacSeal
from trio_foundation.runtime.codec import (
    Crc32Seal,
    FrameDecoder,
    FrameSeal,
    RemoteProtocolError,
    WireMessage,
    WireProtocol,
    encode_frame,
)
from trio_foundation.runtime.tcp import open_tcp_transport
from trio_foundation.runtime.transport import Envelope


class Acquire(WireMessage, frozen=True):
    req: tuple[int, int]
    ttl: float
    name: str = ""


class Granted(WireMessage, frozen=True):
    req: tuple[int, int]
    token: int


class Release(WireMessage, frozen=True):
    token: int


class Blob(WireMessage, frozen=True):
    data: bytes
    tags: list[str]


PROTO = WireProtocol("fuzz", 1, [Acquire, Granted, Release, Blob], max_frame=4096)
KEY = b"k" * 32

ints = st.integers(min_value=-(2**63), max_value=2**63 - 1)
req_ids = st.tuples(ints, ints)
messages: st.SearchStrategy[WireMessage] = st.one_of(
    st.builds(Acquire, req_ids, st.floats(allow_nan=False), st.text(max_size=20)),
    st.builds(Granted, req_ids, ints),
    st.builds(Release, ints),
    st.builds(Blob, st.binary(max_size=200), st.lists(st.text(max_size=5), max_size=5)),
)
seals = st.sampled_from(["crc", "hmac"])


def make_seal(kind: str) -> FrameSeal:
    return Crc32Seal() if kind == "crc" else MacSeal(KEY)


def wire(msgs: list[Any], kind: str, proto: WireProtocol = PROTO) -> bytes:
    seal = make_seal(kind)
    return b"".join(encode_frame(proto.encode(m), seal) for m in msgs)


def decode_all(
    data: bytes, kind: str, cuts: list[int], proto: WireProtocol = PROTO
) -> tuple[list[Any], Any]:
    """Feed ``data`` in chunks split at ``cuts``; return the messages decoded and the
    error that stopped decoding (or ``None``). Only RemoteProtocolError may escape."""
    decoder = FrameDecoder(proto, make_seal(kind))
    out: list[WireMessage] = []
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    try:
        for a, b in itertools.pairwise(bounds):
            decoder.feed(data[a:b])
            while (m := decoder.next_message()) is not None:
                out.append(m)
            # never more than one frame (limit + check + header) plus one feed is buffered
            assert decoder.buffered <= 4 + proto.max_frame + 16 + (b - a)
    except RemoteProtocolError as exc:
        return out, exc
    return out, None


cut_lists = st.lists(st.integers(min_value=0, max_value=10_000), max_size=8)


@given(st.binary(max_size=2000), seals, cut_lists)
def test_arbitrary_bytes_never_crash_the_decoder(data: bytes, kind: str, cuts: list[int]) -> None:
    out, err = decode_all(data, kind, cuts)
    for m in out:  # anything accepted is a declared message that re-encodes into the input
        assert type(m) in PROTO.messages
        assert PROTO.encode(m) in data
    assert err is None or err.reason in {"frame-too-large", "bad-check", "undecodable"}


@given(st.lists(messages, max_size=8), seals, cut_lists)
def test_valid_frames_decode_to_what_was_sent_in_any_chunking(
    msgs: list[WireMessage], kind: str, cuts: list[int]
) -> None:
    assert decode_all(wire(msgs, kind), kind, cuts) == (msgs, None)


@given(st.lists(messages, min_size=1, max_size=8), seals, st.data())
def test_a_truncated_stream_yields_a_prefix_of_what_was_sent(
    msgs: list[WireMessage], kind: str, data: st.DataObject
) -> None:
    full = wire(msgs, kind)
    cut = data.draw(st.integers(min_value=0, max_value=len(full) - 1))
    out, err = decode_all(full[:cut], kind, [])
    assert err is None
    assert out == msgs[: len(out)] and len(out) < len(msgs)


@given(
    st.lists(messages, min_size=1, max_size=8),
    seals,
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
             min_size=1, max_size=4),
    cut_lists,
)  # fmt: skip
def test_a_mutated_stream_never_yields_a_message_that_was_not_sent(
    msgs: list[WireMessage], kind: str, flips: list[tuple[int, int]], cuts: list[int]
) -> None:
    sent = bytearray(wire(msgs, kind))
    for pos, xor in flips:
        sent[pos % len(sent)] ^= xor
    out, _err = decode_all(bytes(sent), kind, cuts)
    # whatever is decoded is exactly what was sent, in order: the mutations either
    # break the check (the connection is dropped) or leave the decoder waiting
    assert out == msgs[: len(out)]
    assert len(out) < len(msgs) or _err is None


@given(st.integers(min_value=PROTO.max_frame + 16 + 1, max_value=2**32 - 1), seals)
def test_a_huge_length_prefix_is_refused_without_waiting_for_its_body(
    length: int, kind: str
) -> None:
    decoder = FrameDecoder(PROTO, make_seal(kind))
    decoder.feed(struct.pack(">I", length))
    with pytest.raises(RemoteProtocolError) as info:
        decoder.next_message()
    assert info.value.reason == "frame-too-large"


@settings(max_examples=25)
@given(st.binary(min_size=1, max_size=3000))
def test_a_real_listener_survives_a_garbage_sender_and_serves_a_good_client(
    garbage: bytes,
) -> None:
    async def main() -> None:
        async with open_tcp_transport(PROTO, 0, listen=("127.0.0.1", 0)) as server:
            assert server.listen_address is not None
            bad = await trio.open_tcp_stream(*server.listen_address)
            try:
                await bad.send_all(garbage)
            except trio.BrokenResourceError:
                pass  # already dropped
            async with open_tcp_transport(
                PROTO, 1, peers={0: server.listen_address}, backoff_initial=0.01
            ) as good:
                good.send_nowait(0, Release(7))
                with trio.fail_after(5):
                    assert await server.receive() == Envelope(1, Release(7))
            await bad.aclose()
            assert server.statistics().frames_received == 1

    trio.run(main)


# The lease lock's own attrs messages, through the mirror structs the protocol builds.
LEASE_LOCK = WireProtocol(
    "lease-lock",
    1,
    [L.AcquireRequest, L.RenewRequest, L.ReleaseRequest, L.Granted, L.Renewed, L.Denied,
     L.WriteRequest, L.WriteAccepted, L.WriteRefused],
)  # fmt: skip
finite = st.floats(allow_nan=False)
plain = st.none() | ints | st.text(max_size=10) | st.lists(ints, max_size=3)
lock_messages: st.SearchStrategy[Any] = st.one_of(
    st.builds(L.AcquireRequest, req_ids, finite),
    st.builds(L.RenewRequest, req_ids, ints, finite),
    st.builds(L.ReleaseRequest, ints),
    st.builds(L.Granted, req_ids, ints, finite),
    st.builds(L.Renewed, req_ids, ints, finite),
    st.builds(L.Denied, req_ids, st.text(max_size=20)),
    st.builds(L.WriteRequest, ints, plain),
    st.builds(L.WriteAccepted, ints),
    st.builds(L.WriteRefused, ints, ints),
)


@given(st.lists(lock_messages, max_size=8), seals, cut_lists, st.data())
def test_lease_lock_messages_round_trip_and_survive_mutation(
    msgs: list[Any], kind: str, cuts: list[int], data: st.DataObject
) -> None:
    sent = wire(msgs, kind, LEASE_LOCK)
    assert decode_all(sent, kind, cuts, LEASE_LOCK) == (msgs, None)
    if sent:
        mutated = bytearray(sent)
        pos = data.draw(st.integers(min_value=0, max_value=len(sent) - 1))
        mutated[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
        out, _err = decode_all(bytes(mutated), kind, cuts, LEASE_LOCK)
        assert out == msgs[: len(out)] and len(out) < len(msgs)
