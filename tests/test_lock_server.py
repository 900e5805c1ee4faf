"""The lock server process's pieces in one process: store, named locks over TCP, bad peers."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest
import trio

from trio_foundation import LeaseLostError, LeaseRefusedError
from trio_foundation.coordination.connect import connect_lock_service
from trio_foundation.coordination.lock_server import ServerStore, serve_lock_service
from trio_foundation.coordination.tcp_lock import open_remote_lock_service
from trio_foundation.protocols.lease_lock import ServerDurable
from trio_foundation.runtime.driver import NO_STATE
from trio_foundation.runtime.storage import CorruptStateError

SECRET = b"0123456789abcdef-a-test-secret"


def test_store_reserves_blocks_and_restarts_above_the_mark(tmp_path: Path) -> None:
    store = ServerStore(tmp_path / "d", block=10)
    assert store.restored() is NO_STATE
    for token in range(1, 26):
        store.persist(ServerDurable(token, 2.0))
    assert (store.mark, store.saves) == (30, 3)  # marks 10, 20, 30
    store.persist(ServerDurable(25, 7.0))  # a longer ttl is persisted at once
    assert (store.mark, store.max_ttl_granted, store.saves) == (30, 7.0, 4)
    store.close()
    again = ServerStore(tmp_path / "d", block=10)
    assert again.restored() == ServerDurable(30, 7.0)
    again.persist(ServerDurable(31, 7.0))
    assert again.mark == 40
    # a lock first used later starts from the mark read at start, with the quiet time left
    assert again.restored(elapsed=5.0) == ServerDurable(30, 2.0)
    assert again.restored(elapsed=9.0) == ServerDurable(30, 0.0)
    again.close()


def test_store_refuses_a_foreign_or_corrupt_directory(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "something").write_text("x")
    with pytest.raises(CorruptStateError, match="no FORMAT"):
        ServerStore(tmp_path / "other")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "FORMAT").write_text("not a format file")
    with pytest.raises(CorruptStateError):
        ServerStore(tmp_path / "d")
    with pytest.raises(ValueError, match="block"):
        ServerStore(tmp_path / "d", block=0)


async def _serve(nursery: trio.Nursery, data_dir: Path, **kwargs: Any) -> str:
    address = await nursery.start(
        lambda task_status: serve_lock_service(
            ("127.0.0.1", 0), data_dir, task_status=task_status, **kwargs
        )
    )
    return f"tcp://{address[0]}:{address[1]}"


async def test_named_locks_are_independent_and_exclusive(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", max_ttl=10)
            async with (
                open_remote_lock_service(url) as a,
                open_remote_lock_service(url) as b,
            ):
                async with a.acquire(ttl=2) as la, a.acquire(ttl=2, name="other") as lo:
                    assert la.token >= 1 and lo.token >= 1
                    # b waits for "default" while a holds it
                    with trio.move_on_after(0.5) as waited:
                        async with b.acquire(ttl=2):
                            pytest.fail("two holders of one lock")
                    assert waited.cancelled_caught
                async with b.acquire(ttl=2) as lb:
                    assert lb.token > la.token
                with pytest.raises(LeaseRefusedError, match="exceeds max_ttl"):
                    async with b.acquire(ttl=11):
                        pass
                with pytest.raises(ValueError, match="lock name"):
                    async with b.acquire(ttl=1, name=""):
                        pass
            nursery.cancel_scope.cancel()


async def test_renewals_keep_the_body_running_and_a_dead_server_cancels_it(
    tmp_path: Path,
) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as server:
                url = await _serve(server, tmp_path / "d", max_ttl=10)
                async with open_remote_lock_service(url, retry_interval=0.1) as client:
                    async with client.acquire(ttl=0.6) as lease:
                        await trio.sleep(1.5)  # past the ttl: renewed
                        assert lease.renewals >= 2
                    with pytest.raises(LeaseLostError):
                        async with client.acquire(ttl=0.6) as lease:
                            server.cancel_scope.cancel()  # the server dies
                            await trio.sleep(5)
                            pytest.fail("the body outlived its lease")
                    assert trio.current_time() < lease.deadline + 0.5
            outer.cancel_scope.cancel()


async def test_a_restarted_server_never_reissues_a_token(tmp_path: Path) -> None:
    tokens: list[int] = []
    with trio.fail_after(30):
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                url = await _serve(nursery, tmp_path / "d", max_ttl=0.3, block=5)
                async with open_remote_lock_service(url) as client:
                    for _ in range(3):
                        async with client.acquire(ttl=0.3) as lease:
                            tokens.append(lease.token)
                nursery.cancel_scope.cancel()  # a crash: nothing flushed
    assert tokens == sorted(set(tokens))
    assert tokens[3] > 5 and tokens[6] > 10  # each restart begins above the block


async def test_wrong_secret_and_bad_frames_drop_only_that_connection(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", secret=SECRET)
            host, port = url.removeprefix("tcp://").rsplit(":", 1)
            async with open_remote_lock_service(url, secret=SECRET) as good:
                with pytest.raises(ConnectionError, match="no connection"):
                    async with open_remote_lock_service(url, secret=b"x" * 16, timeout=1):
                        pass
                with pytest.raises(ConnectionError):
                    async with open_remote_lock_service(url, timeout=1):  # no secret
                        pass
                for garbage in (b"\x00\x00\x00\x05hello!!!!", struct.pack(">I", 1 << 30)):
                    stream = await trio.open_tcp_stream(host, int(port))
                    await stream.send_all(garbage)
                    with trio.fail_after(10):
                        while await stream.receive_some(4096):
                            pass  # the server closes it
                    await stream.aclose()
                async with good.acquire(ttl=1) as lease:  # still served
                    assert lease.token >= 1
            nursery.cancel_scope.cancel()


async def test_connect_lock_service_tcp_url_and_secret_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    os.chmod(secret_file, 0o600)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", secret=SECRET)
            async with connect_lock_service(url, secret_file=str(secret_file)) as service:
                async with service.acquire(ttl=1, name="jobs") as lease:
                    assert lease.token >= 1
            with pytest.raises(ValueError, match="secret_file is for tcp"):
                async with connect_lock_service("etcd://127.0.0.1:1", secret_file="x"):
                    pass
            nursery.cancel_scope.cancel()
    with pytest.raises(ConnectionError):
        async with connect_lock_service(url, timeout=0.5, secret_file=str(secret_file)):
            pass


async def test_cancelled_while_waiting_holds_nothing(tmp_path: Path) -> None:
    """A caller that leaves while waiting holds nothing: a grant it took is released at
    once, one still in flight when it left expires on the server after its ttl (as
    documented); so another client gets the lock within the ttl."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", max_ttl=5)
            async with (
                open_remote_lock_service(url) as a,
                open_remote_lock_service(url) as b,
            ):
                for delay in (0.0, 0.001, 0.003, 0.01, 0.03):
                    with trio.move_on_after(delay):
                        async with a.acquire(ttl=1):
                            await trio.lowlevel.checkpoint()
                    with trio.fail_after(2.5):  # within the ttl (plus b's backoff)
                        async with b.acquire(ttl=1):
                            pass
            nursery.cancel_scope.cancel()


async def test_the_number_of_lock_names_is_bounded(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            url = await _serve(nursery, tmp_path / "d", max_locks=2)
            async with open_remote_lock_service(url, max_locks=3) as client:
                for name in ("a", "b"):
                    async with client.acquire(ttl=1, name=name):
                        pass
                with pytest.raises(LeaseRefusedError, match="too many locks"):
                    async with client.acquire(ttl=1, name="c"):
                        pass
                async with client.acquire(ttl=1, name="a"):  # known names still served
                    pass
                with pytest.raises(RuntimeError, match="already used 3 lock names"):
                    async with client.acquire(ttl=1, name="d"):
                        pass
            nursery.cancel_scope.cancel()
