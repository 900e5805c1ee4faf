"""Resolving ``raft://`` and ``--cluster`` member lists: one bad address never hides the
good ones (a member that hangs, a port that speaks another protocol, a refused port),
and the error when none answers names every failure."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Awaitable, Callable
from functools import partial

import pytest
import trio

from trio_foundation.coordination.raft_lock import resolve_members
from trio_foundation.runtime.codec import Crc32Seal, encode_frame
from trio_foundation.runtime.tcp import HANDSHAKE_PROTOCOL, Hello


async def _serve(
    nursery: trio.Nursery, handler: Callable[[trio.SocketStream], Awaitable[None]]
) -> tuple[str, int]:
    listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
    host, port = listeners[0].socket.getsockname()[:2]
    return host, port


async def _member(stream: trio.SocketStream, node: int = 7) -> None:
    hello = Hello("raft", 1, node, secrets.token_bytes(16), False)
    await stream.send_all(encode_frame(HANDSHAKE_PROTOCOL.encode(hello), Crc32Seal()))
    await trio.sleep_forever()


async def _hung(stream: trio.SocketStream) -> None:
    await trio.sleep_forever()  # accepts, never speaks (a SIGSTOPped member)


async def _http(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def _refused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_hung_or_foreign_member_is_skipped_within_one_timeout() -> None:
    skipped: list[str] = []
    async with trio.open_nursery() as nursery:
        member = await _serve(nursery, _member)
        hung = await _serve(nursery, _hung)
        http = await _serve(nursery, _http)
        refused = ("127.0.0.1", _refused_port())
        entries: list[tuple[int | None, tuple[str, int]]] = [
            (None, hung),
            (None, http),
            (None, refused),
            (None, member),
        ]
        start = trio.current_time()
        members = await resolve_members(entries, timeout=1.0, on_skip=skipped.append)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert members == {7: member}
    # The probes run at once: the hung member costs one timeout, not one per member.
    assert elapsed < 3.0
    assert len(skipped) == 3
    for address in (hung, http, refused):
        assert any(r.startswith(f"{address[0]}:{address[1]} unreachable") for r in skipped)
    assert any("no hello within 1 s" in r for r in skipped)


async def test_ids_given_need_no_probe_and_none_reachable_names_each_failure() -> None:
    refused = ("127.0.0.1", _refused_port())
    assert await resolve_members([(3, refused)], timeout=0.5) == {3: refused}
    with pytest.raises(OSError, match=r"no raft member is reachable: 127\.0\.0\.1:\d+ unreachable"):
        await resolve_members([(None, refused)], timeout=0.5)
