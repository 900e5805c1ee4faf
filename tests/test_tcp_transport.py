"""The TCP transport on loopback: delivery, handshake, authentication, misbehaving
peers, reconnection, bounded queues and cancellation."""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import msgspec
import pytest
import trio
from descriptors import left_open, open_descriptors
from loopback_proxy import LoopbackProxy

import trio_foundation.runtime.tcp as trio_tcp
from trio_foundation.protocols import lease_lock as L
from trio_foundation.runtime.codec import Crc32Seal, FrameDecoder, WireMessage, WireProtocol
from trio_foundation.runtime.codec import encode_frame as frame
from trio_foundation.runtime.tcp import (
    HANDSHAKE_PROTOCOL,
    Hello,
    Proof,
    TcpTransport,
    _is_loopback,
    open_tcp_transport,
    parse_address,
)
from trio_foundation.runtime.transport import Envelope, Transport


class Ping(WireMessage, frozen=True):
    seq: int
    body: bytes = b""


class Pong(WireMessage, frozen=True):
    seq: int


PROTO = WireProtocol("test-ping", 1, [Ping, Pong], max_frame=64 * 1024)
SECRET = b"correct horse battery staple"
LOCAL = ("127.0.0.1", 0)
FAST: dict[str, Any] = {"backoff_initial": 0.01, "backoff_max": 0.05, "handshake_timeout": 2.0}


@asynccontextmanager
async def pair(
    *, server_secret: bytes | None = None, client_secret: bytes | None = None, **kw: Any
) -> AsyncIterator[tuple[TcpTransport, TcpTransport]]:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL, secret=server_secret, **FAST) as server:
        assert server.listen_address is not None
        async with open_tcp_transport(
            PROTO, 1, peers={0: server.listen_address}, secret=client_secret, **FAST, **kw
        ) as client:
            yield server, client


async def wait_for(cond: Callable[[], bool]) -> None:
    """Poll a counter of the statistics (they have no event to wait on) for 5 s at most."""
    with trio.fail_after(5):
        while not cond():  # noqa: ASYNC110
            await trio.sleep(0.005)


@pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "authenticated"])
async def test_request_reply_both_ways(secret: bytes | None) -> None:
    async with pair(server_secret=secret, client_secret=secret) as (server, client):
        assert isinstance(server, Transport) and server.authenticated == (secret is not None)
        await client.wait_connected(0)
        for i in range(50):
            assert client.send_nowait(0, Ping(i, b"x" * i))
        for i in range(50):
            env = await server.receive()
            assert env == Envelope(1, Ping(i, b"x" * i))  # in order, exactly once
            assert server.send_nowait(env.src, Pong(i))
        for i in range(50):
            assert await client.receive() == Envelope(0, Pong(i))
        s, c = server.statistics(), client.statistics()
        assert (s.connections_accepted, c.connections_dialed) == (1, 1)
        assert (s.frames_received, c.frames_sent, s.frames_sent) == (50, 50, 50)
        assert s.drops == {} and c.drops == {}


async def test_sending_to_an_unknown_node_is_refused_and_counted() -> None:
    async with open_tcp_transport(PROTO, 3) as t:
        assert t.send_nowait(9, Ping(1)) is False
        assert t.statistics().unroutable == 1
        with pytest.raises(TypeError, match="not a message type of protocol 'test-ping'"):
            t.send_nowait(9, Hello("x", 1, 1, b"", False))
        with pytest.raises(KeyError, match="node 9 is not a peer of node 3"):
            await t.wait_connected(9)


async def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="node_id must be in"):
        async with open_tcp_transport(PROTO, -1):
            pass
    with pytest.raises(ValueError, match="secret has 3 bytes"):
        async with open_tcp_transport(PROTO, 1, secret=b"abc"):
            pass
    with pytest.raises(ValueError, match="send_queue must be an int > 0"):
        async with open_tcp_transport(PROTO, 1, send_queue=0):
            pass
    with pytest.raises(ValueError, match="peers names this node's own id 1"):
        async with open_tcp_transport(PROTO, 1, peers={1: ("127.0.0.1", 1)}):
            pass
    async with open_tcp_transport(PROTO, 1) as t:
        with pytest.raises(RuntimeError, match="node 1 cannot dial itself"):
            t.add_peer(1, "127.0.0.1", 9)
        with pytest.raises(ValueError, match=r"port must be in 1\.\.65535"):
            t.add_peer(2, "127.0.0.1", 0)
    with pytest.raises(RuntimeError, match="not running"):
        t.add_peer(2, "127.0.0.1", 9)


# ----------------------------------------------------------------- misbehaving peers


async def raw_handshake(
    address: tuple[str, int],
    *,
    protocol: str = "test-ping",
    version: int = 1,
    node: int = 77,
    nonce: bytes | None = None,
    auth: bool = False,
) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(*address)
    nonce = os.urandom(16) if nonce is None else nonce
    hello = HANDSHAKE_PROTOCOL.encode(Hello(protocol, version, node, nonce, auth))
    await stream.send_all(frame(hello, Crc32Seal()))
    return stream


async def read_hello(stream: trio.SocketStream) -> Hello:
    decoder = FrameDecoder(HANDSHAKE_PROTOCOL, Crc32Seal())
    while (m := decoder.next_message()) is None:
        decoder.feed(await stream.receive_some(4096))
    assert isinstance(m, Hello)
    return m


async def closed_by_peer(stream: trio.SocketStream) -> bool:
    with trio.fail_after(5):
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
    return True


def unknown_type_frame() -> bytes:
    return frame(msgspec.msgpack.encode(["Nope", 1]), Crc32Seal())


# each: (name, bytes sent after connecting (None: a handshake first), expected drop reason)
GARBAGE: list[tuple[str, Callable[[], bytes], bool, str]] = [
    ("huge length prefix", lambda: struct.pack(">I", 0xFFFFFFF0), False, "frame-too-large"),
    ("random bytes", lambda: os.urandom(64), False, "frame-too-large"),
    ("bad checksum", lambda: struct.pack(">I", 8) + b"\x92\x01\x02\x03abcd", False, "bad-check"),
    ("unknown type", unknown_type_frame, True, "unknown-type"),
    ("bad payload", lambda: frame(b"\xc1", Crc32Seal()), True, "undecodable"),
    (
        "oversized app frame",
        lambda: struct.pack(">I", 64 * 1024 + 5) + b"\x00" * 100,
        True,
        "frame-too-large",
    ),
]


@pytest.mark.parametrize(("garbage", "handshake", "reason"), [g[1:] for g in GARBAGE],
                         ids=[g[0] for g in GARBAGE])  # fmt: skip
async def test_a_garbage_sender_is_dropped_and_the_listener_keeps_serving(
    garbage: Callable[[], bytes], handshake: bool, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="trio_foundation.runtime.tcp")
    async with pair() as (server, client):
        assert server.listen_address is not None
        await client.wait_connected(0)
        if handshake:
            bad = await raw_handshake(server.listen_address)
            await read_hello(bad)
        else:
            bad = await trio.open_tcp_stream(*server.listen_address)
        await bad.send_all(garbage())
        assert await closed_by_peer(bad)
        await wait_for(lambda: server.statistics().drops.get(reason) == 1)
        # the good client is unaffected, and new clients still get in
        client.send_nowait(0, Ping(1))
        assert await server.receive() == Envelope(1, Ping(1))
        async with open_tcp_transport(PROTO, 2, peers={0: server.listen_address}) as other:
            other.send_nowait(0, Ping(2))
            assert await server.receive() == Envelope(2, Ping(2))
        stats = server.statistics()
        assert sum(stats.drops.values()) == 1
        await bad.aclose()
    records = [r for r in caplog.records if r.name == "trio_foundation.runtime.tcp"]
    assert len(records) == 1 and reason in records[0].getMessage()


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"protocol": "other"}, "handshake-failed"),
        ({"version": 2}, "handshake-failed"),
        ({"node": 0}, "peer-mismatch"),  # claims the server's own id
        ({"nonce": b""}, "handshake-failed"),
    ],
)
async def test_a_handshake_mismatch_drops_the_connection(kw: dict[str, Any], reason: str) -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        assert server.listen_address is not None
        bad = await raw_handshake(server.listen_address, **kw)
        assert await closed_by_peer(bad)
        await wait_for(lambda: server.statistics().drops.get(reason) == 1)
        await bad.aclose()


async def test_a_silent_peer_is_dropped_after_the_handshake_timeout() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL, handshake_timeout=0.2) as server:
        assert server.listen_address is not None
        silent = await trio.open_tcp_stream(*server.listen_address)
        assert await closed_by_peer(silent)
        assert server.statistics().drops == {"timeout": 1}
        await silent.aclose()


async def test_dialing_the_wrong_node_is_a_peer_mismatch() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        assert server.listen_address is not None
        async with open_tcp_transport(PROTO, 1, peers={5: server.listen_address}, **FAST) as c:
            await wait_for(lambda: c.statistics().drops.get("peer-mismatch", 0) >= 2)
            assert not c.is_connected(5)


@pytest.mark.parametrize(
    ("server_secret", "client_secret"),
    [(SECRET, b"wrong secret, same length!!!"), (SECRET, None), (None, SECRET)],
    ids=["wrong-secret", "client-without-secret", "server-without-secret"],
)
async def test_failed_authentication_drops_the_connection_on_both_sides(
    server_secret: bytes | None, client_secret: bytes | None
) -> None:
    async with pair(server_secret=server_secret, client_secret=client_secret) as (server, client):
        await wait_for(lambda: client.statistics().drops.get("auth-failed", 0) >= 2)
        await wait_for(lambda: server.statistics().drops.get("auth-failed", 0) >= 2)
        assert not client.is_connected(0)
        assert server.statistics().frames_received == 0
        # a client with the right secret (or none, if the server has none) gets in
        async with open_tcp_transport(
            PROTO, 2, peers={0: server.listen_address or LOCAL}, secret=server_secret
        ) as good:
            good.send_nowait(0, Ping(9))
            assert await server.receive() == Envelope(2, Ping(9))


# ----------------------------------------------------------------- routes and reconnection


async def test_messages_queued_while_the_peer_is_down_arrive_after_reconnection() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        address = server.listen_address
        assert address is not None
    # the server is gone; the client queues and keeps dialing
    async with open_tcp_transport(PROTO, 1, peers={0: address}, **FAST) as client:
        for i in range(5):
            client.send_nowait(0, Ping(i))
        await wait_for(lambda: client.statistics().dial_failures >= 2)
        assert client.statistics().queued == 5
        async with open_tcp_transport(PROTO, 0, listen=address) as server2:
            for i in range(5):
                assert await server2.receive() == Envelope(1, Ping(i))
            # cut the connection from the server's side: the client reconnects
            server2.remove_peer(1)
            await wait_for(lambda: server2.statistics().connections_accepted == 2)
            await client.wait_connected(0)
            client.send_nowait(0, Ping(99))
            assert await server2.receive() == Envelope(1, Ping(99))
        assert client.statistics().dial_failures >= 2


async def test_a_full_send_queue_drops_its_oldest_messages() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        address = server.listen_address
        assert address is not None
    async with open_tcp_transport(PROTO, 1, peers={0: address}, send_queue=3, **FAST) as client:
        for i in range(10):
            assert client.send_nowait(0, Ping(i))
        stats = client.statistics()
        assert (stats.queued, stats.send_queue_overflows) == (3, 7)
        async with open_tcp_transport(PROTO, 0, listen=address) as server2:
            got = [await server2.receive() for _ in range(3)]
            assert [e.msg.seq for e in got] == [7, 8, 9]


async def test_a_slow_reader_cannot_grow_the_senders_memory() -> None:
    body = b"z" * 16_000
    async with pair(send_queue=64, send_queue_bytes=1 << 20) as (server, client):
        await client.wait_connected(0)
        # the server never calls receive(): its inbox fills, its readers stop,
        # the socket buffers fill, the client's writer blocks
        for i in range(3_000):
            client.send_nowait(0, Ping(i, body))
            if i % 50 == 0:
                await trio.sleep(0.001)
                assert client.statistics().queued <= 64
        stats = client.statistics()
        assert stats.send_queue_overflows > 0
        assert stats.queued <= 64
        assert server.statistics().frames_received <= 1024 + 1  # the inbox bound


async def test_a_reconnecting_client_replaces_its_older_connection() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        assert server.listen_address is not None
        async with open_tcp_transport(PROTO, 1, peers={0: server.listen_address}) as c1:
            c1.send_nowait(0, Ping(1))
            assert (await server.receive()).src == 1
            async with open_tcp_transport(PROTO, 1, peers={0: server.listen_address}) as c2:
                c2.send_nowait(0, Ping(2))
                assert await server.receive() == Envelope(1, Ping(2))
                server.send_nowait(1, Pong(2))  # goes on the newest connection
                assert await c2.receive() == Envelope(0, Pong(2))
        await wait_for(lambda: not server.is_connected(1))
        assert server.send_nowait(1, Pong(3)) is False  # the route died with the connection


# ----------------------------------------------------------------- cancellation


async def test_cancelled_receive_loses_nothing() -> None:
    async with pair() as (server, client):
        with trio.move_on_after(0.05) as scope:
            await server.receive()
        assert scope.cancelled_caught
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.wait_connected(0)
        client.send_nowait(0, Ping(1))
        assert await server.receive() == Envelope(1, Ping(1))
        with pytest.raises(trio.WouldBlock):
            server.receive_nowait()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
async def test_cancellation_at_any_point_leaves_no_task_or_socket() -> None:
    """Run a whole exchange under deadlines drawn at random: whatever point the
    cancellation hits (binding, dialing, handshake, send, receive, teardown),
    no socket stays open and no task outlives the block."""
    rng = random.Random()
    baseline = open_descriptors()
    before = len(trio.lowlevel.current_task().child_nurseries)
    cancelled = 0
    for _ in range(40):
        secret = rng.choice([None, SECRET])
        with trio.move_on_after(rng.uniform(0, 0.02)) as scope:
            async with pair(server_secret=secret, client_secret=secret) as (server, client):
                await client.wait_connected(0)
                for i in range(20):
                    client.send_nowait(0, Ping(i))
                    assert await server.receive() == Envelope(1, Ping(i))
        cancelled += scope.cancelled_caught
        assert not (leaked := left_open(baseline)), leaked
        assert len(trio.lowlevel.current_task().child_nurseries) == before
    assert cancelled > 0  # the deadlines did hit


# ----------------------------------------------------------------- cuts and delays


@attrs.frozen
class CutRun:
    received: list[int]
    sent: int
    cuts: int
    dialed: int


async def run_through_cutting_proxy(
    secret: bytes | None, n_messages: int, rng: random.Random
) -> CutRun:
    """Send ``n_messages`` through a proxy that cuts every connection now and then
    (about 1 % of sends) and delays chunks; then, with no more cuts, a marker re-sent
    (under a new number each time) until one arrives."""
    received: list[int] = []
    async with open_tcp_transport(PROTO, 0, listen=LOCAL, secret=secret) as server:
        proxy = LoopbackProxy(address_of(server))
        async with trio.open_nursery() as nursery:
            await nursery.start(proxy.run)
            assert proxy.listen_address is not None

            async def collect() -> None:
                while True:
                    received.append((await server.receive()).msg.seq)

            nursery.start_soon(collect)
            async with open_tcp_transport(
                PROTO, 1, peers={0: proxy.listen_address}, secret=secret, **FAST
            ) as client:
                for i in range(n_messages):
                    client.send_nowait(0, Ping(i))
                    if rng.random() < 0.01:
                        proxy.cut_all()
                    if i % 25 == 0:
                        proxy.delay = rng.choice([0.0, 0.0, 0.002])
                        await trio.sleep(0.002)
                proxy.delay = 0.0
                with trio.fail_after(10):
                    marker = MARKER
                    while not received or received[-1] < MARKER:
                        client.send_nowait(0, Ping(marker))
                        marker += 1
                        await trio.sleep(0.05)
                dialed = client.statistics().connections_dialed
            nursery.cancel_scope.cancel()
    return CutRun(received, n_messages, proxy.cuts, dialed)


MARKER = 1_000_000


@pytest.mark.parametrize("secret", [None, SECRET], ids=["plain", "authenticated"])
async def test_cut_and_delayed_connections_lose_messages_but_never_duplicate_or_reorder(
    secret: bytes | None,
) -> None:
    """What arrives is in the order sent with no duplicates, and the client reconnects."""
    run = await run_through_cutting_proxy(secret, 1500, random.Random())
    assert all(a < b for a, b in itertools.pairwise(run.received)), "duplicated or reordered"
    assert run.cuts > 0 and run.dialed > 1  # it was cut and reconnected
    assert len([s for s in run.received if s < MARKER]) > 100  # most traffic got through


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_soak_through_a_cutting_proxy() -> None:
    """``pytest -m slow -s -k soak``: 40 runs of 5,000 messages, fresh seeds; prints totals."""
    rng = random.Random()
    runs = violations = sent = delivered = cuts = dialed = 0
    for i in range(40):
        run = await run_through_cutting_proxy(SECRET if i % 2 else None, 5000, rng)
        runs += 1
        violations += not all(a < b for a, b in itertools.pairwise(run.received))
        sent += run.sent
        delivered += len([s for s in run.received if s < MARKER])
        cuts += run.cuts
        dialed += run.dialed
    print(
        f"soak: {runs} runs, {sent} messages sent, {delivered} delivered "
        f"({sent - delivered} lost to {cuts} cuts), {dialed} connections dialed, "
        f"{violations} runs with a duplicate or reordering"
    )
    assert violations == 0


async def test_backoff_is_jittered_exponential_and_capped() -> None:
    async with open_tcp_transport(PROTO, 1, backoff_initial=0.1, backoff_max=1.0) as t:
        delays = []
        for attempt in range(12):
            base = min(1.0, 0.1 * 2**attempt)
            delay = t._backoff(attempt)
            assert 0.5 * base <= delay <= base
            delays.append(delay)
        assert len(set(delays)) == len(delays)  # jittered


def test_loopback_detection_for_the_unauthenticated_listener_warning() -> None:
    assert _is_loopback("127.0.0.1") and _is_loopback("127.8.0.1") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("::")
    assert not _is_loopback("192.168.1.10") and not _is_loopback("fe80::1%eth0")


async def test_two_nodes_dialing_each_other_send_on_their_own_dialed_connections() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as a:
        async with open_tcp_transport(PROTO, 1, listen=LOCAL) as b:
            assert a.listen_address is not None and b.listen_address is not None
            a.add_peer(1, *address_of(b))
            b.add_peer(0, *address_of(a))
            await a.wait_connected(1)
            await b.wait_connected(0)
            for i in range(10):
                a.send_nowait(1, Ping(i))
                b.send_nowait(0, Pong(i))
            assert [await b.receive() for _ in range(10)] == [
                Envelope(0, Ping(i)) for i in range(10)
            ]
            assert [await a.receive() for _ in range(10)] == [
                Envelope(1, Pong(i)) for i in range(10)
            ]
            for t in (a, b):
                s = t.statistics()
                assert (s.connections_open, s.connections_dialed, s.connections_accepted) == (
                    2,
                    1,
                    1,
                )


def address_of(t: TcpTransport) -> tuple[str, int]:
    assert t.listen_address is not None
    return t.listen_address


async def test_a_cores_attrs_messages_cross_tcp_as_themselves() -> None:
    proto = WireProtocol("lease-lock", 1, [L.AcquireRequest, L.Granted, L.ReleaseRequest])
    async with open_tcp_transport(proto, 0, listen=LOCAL, secret=SECRET) as server:
        async with open_tcp_transport(
            proto, 12345, peers={0: address_of(server)}, secret=SECRET
        ) as client:
            client.send_nowait(0, L.AcquireRequest((1, 1), 5.0))
            request = await server.receive()
            assert request == Envelope(12345, L.AcquireRequest((1, 1), 5.0))
            server.send_nowait(request.src, L.Granted(request.msg.req, 1, request.msg.ttl))
            assert await client.receive() == Envelope(0, L.Granted((1, 1), 1, 5.0))


async def test_connections_are_set_to_detect_a_dead_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, int]] = []
    original = trio_tcp._set_dead_peer_timeout

    def spy(stream: trio.SocketStream, timeout: float | None) -> None:
        original(stream, timeout)
        sock = stream.socket
        seen.append(
            {
                "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "user_timeout": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
            }
        )

    monkeypatch.setattr(trio_tcp, "_set_dead_peer_timeout", spy)
    async with pair(dead_peer_timeout=6.0) as (_server, client):
        await client.wait_connected(0)
    # the client's socket (the server kept its default of 15 s)
    assert {"keepalive": 1, "idle": 2, "user_timeout": 6000} in seen
    assert {"keepalive": 1, "idle": 5, "user_timeout": 15000} in seen


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:7000") == ("127.0.0.1", 7000)
    assert parse_address("localhost:0") == ("localhost", 0)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    assert parse_address("tcp://10.0.0.1:80", scheme="tcp") == ("10.0.0.1", 80)
    assert parse_address("tcp://[fe80::1]:80", scheme="tcp") == ("fe80::1", 80)
    for bad, problem in [
        ("127.0.0.1", "must be HOST:PORT"),
        (":80", "must be HOST:PORT"),
        ("host:http", "port must be a number in 0..65535"),
        ("host:70000", "port must be a number in 0..65535"),
        ("::1:80", "IPv6 host in brackets"),
        ("[::1]80", "must be HOST:PORT"),
    ]:
        with pytest.raises(ValueError, match=re.escape(problem)):
            parse_address(bad)
    with pytest.raises(ValueError, match=re.escape("must start with tcp://")):
        parse_address("http://h:1", scheme="tcp")


async def test_frames_cut_by_a_full_socket_arrive_whole_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message sent while the writer is idle is written at once from send_nowait; when
    the socket takes only part of it, the writer sends the rest before anything else."""
    tails = 0
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:
        nonlocal tails
        tails += 1
        return real_write(fd, data[: len(data) // 3])  # the socket takes a third

    monkeypatch.setattr(trio_tcp.os, "write", short_write)
    body = bytes(range(256)) * 40
    async with pair(server_secret=SECRET, client_secret=SECRET) as (server, client):
        await client.wait_connected(0)
        for i in range(30):
            client.send_nowait(0, Ping(i, body))
            await trio.sleep(0.002)  # the writer parks again: the fast path is taken
            if i % 3 == 0:
                client.send_nowait(0, Ping(1000 + i))  # ... and the burst path
        got = [(await server.receive()).msg for _ in range(40)]
    expected = []
    for i in range(30):
        expected.append(Ping(i, body))
        if i % 3 == 0:
            expected.append(Ping(1000 + i))
    assert got == expected
    assert tails >= 20


async def test_an_on_message_handler_gets_every_message_in_the_reader() -> None:
    server_ref: list[TcpTransport] = []
    seen: list[Envelope] = []

    def handle(envelope: Envelope) -> None:
        seen.append(envelope)
        server_ref[0].send_nowait(envelope.src, Pong(envelope.msg.seq))

    async with open_tcp_transport(PROTO, 0, listen=LOCAL, on_message=handle) as server:
        server_ref.append(server)
        async with open_tcp_transport(PROTO, 1, peers={0: address_of(server)}) as client:
            for i in range(50):
                client.send_nowait(0, Ping(i))
            assert [await client.receive() for _ in range(50)] == [
                Envelope(0, Pong(i)) for i in range(50)
            ]
            assert seen == [Envelope(1, Ping(i)) for i in range(50)]
            assert server.statistics().frames_received == 50
            with pytest.raises(RuntimeError, match="delivers messages to its on_message handler"):
                await server.receive()
            with pytest.raises(RuntimeError, match="on_message handler"):
                server.receive_nowait()


async def test_an_exception_in_the_handler_ends_the_transport() -> None:
    def broken(envelope: Envelope) -> None:
        raise ZeroDivisionError("a bug in the handler")

    with pytest.raises(BaseExceptionGroup) as info:
        async with open_tcp_transport(PROTO, 0, listen=LOCAL, on_message=broken) as server:
            async with open_tcp_transport(PROTO, 1, peers={0: address_of(server)}) as client:
                client.send_nowait(0, Ping(1))
                await trio.sleep_forever()
    assert info.group_contains(ZeroDivisionError, match="a bug in the handler")


async def test_accepted_connections_are_capped() -> None:
    async with open_tcp_transport(
        PROTO, 0, listen=LOCAL, max_connections=2, handshake_timeout=0.5
    ) as server:
        streams = [await trio.open_tcp_stream(*address_of(server)) for _ in range(3)]
        try:
            assert await closed_by_peer(streams[2])  # the third is refused at once
            assert server.statistics().drops == {"too-many-connections": 1}
            # once the silent ones time out, a good client gets in
            async with open_tcp_transport(PROTO, 1, peers={0: address_of(server)}, **FAST) as c:
                c.send_nowait(0, Ping(1))
                with trio.fail_after(5):
                    assert await server.receive() == Envelope(1, Ping(1))
            await wait_for(lambda: server.statistics().drops.get("timeout") == 2)
        finally:
            for stream in streams:
                await stream.aclose()


async def test_the_send_queue_is_bounded_in_bytes_too() -> None:
    async with open_tcp_transport(PROTO, 0, listen=LOCAL) as server:
        address = address_of(server)
    async with open_tcp_transport(
        PROTO, 1, peers={0: address}, send_queue=100, send_queue_bytes=10_000, **FAST
    ) as client:
        for i in range(10):
            client.send_nowait(0, Ping(i, b"b" * 3000))
        stats = client.statistics()
        assert (stats.queued, stats.send_queue_overflows) == (3, 7)
        client.send_nowait(0, Ping(99, b"b" * 20_000))  # alone above the limit: still kept
        assert client.statistics().queued == 1


async def test_port_0_on_a_name_with_several_addresses_serves_the_reported_one() -> None:
    async with open_tcp_transport(PROTO, 0, listen=("localhost", 0)) as server:
        host, port = address_of(server)
        async with open_tcp_transport(PROTO, 1, peers={0: (host, port)}) as client:
            client.send_nowait(0, Ping(1))
            with trio.fail_after(5):
                assert await server.receive() == Envelope(1, Ping(1))


async def test_a_stranger_gets_no_proof_from_the_listener() -> None:
    """The dialer proves first: a client without the secret, whose proof is wrong,
    receives the listener's hello and nothing else (no proof to attack offline)."""
    async with open_tcp_transport(PROTO, 0, listen=LOCAL, secret=SECRET) as server:
        stranger = await raw_handshake(address_of(server), auth=True)
        decoder = FrameDecoder(HANDSHAKE_PROTOCOL, Crc32Seal())
        while (hello := decoder.next_message()) is None:
            decoder.feed(await stranger.receive_some(4096))
        assert isinstance(hello, Hello) and hello.auth
        await stranger.send_all(frame(HANDSHAKE_PROTOCOL.encode(Proof(bytes(32))), Crc32Seal()))
        rest = b""
        with trio.fail_after(5):
            try:
                while data := await stranger.receive_some(4096):
                    rest += data
            except trio.BrokenResourceError:
                pass
        assert rest == b"" and decoder.take_buffer() == b""  # closed, no proof sent
        await wait_for(lambda: server.statistics().drops.get("auth-failed") == 1)
        await stranger.aclose()
