"""coordination/lock_wire.py: exact wire forms, names and refusals (mutation survivors).

Each test pins one behaviour the conformance suites only reach through a whole
server: every core message survives ``to_wire``/``from_wire`` field by field and
through the codec, the lock name is checked with an error naming the problem,
and a message that is not the lock service's is refused by name.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from trio_foundation.coordination.lock_wire import (
    MAX_NAME,
    LockChannel,
    WAcquire,
    WDenied,
    WGranted,
    WRelease,
    WRenew,
    WRenewed,
    check_lock_name,
    from_wire,
    to_wire,
)
from trio_foundation.protocols.lease_lock import (
    AcquireRequest,
    Denied,
    Granted,
    ReleaseRequest,
    Renewed,
    RenewRequest,
)

# distinct values in every field, so a swapped or dropped field shows
MESSAGES: list[Any] = [
    AcquireRequest((3, 4), 2.5),
    RenewRequest((5, 6), 7, 8.5),
    ReleaseRequest(9),
    Granted((10, 11), 12, 13.5),
    Renewed((14, 15), 16, 17.5),
    Denied((18, 19), "held by another client"),
]
WIRE = [WAcquire, WRenew, WRelease, WGranted, WRenewed, WDenied]


@pytest.mark.parametrize(("msg", "kind"), list(zip(MESSAGES, WIRE, strict=True)))
def test_every_message_round_trips_field_by_field(msg: Any, kind: type) -> None:
    wire = to_wire("orders", msg)
    assert type(wire) is kind
    assert wire.lock == "orders"  # type: ignore[attr-defined]
    assert from_wire(wire) == ("orders", msg)
    # and through the codec the TCP transport uses (req arrives as a list there)
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(wire), type=kind)
    assert from_wire(decoded) == ("orders", msg)


def test_the_wire_fields_are_the_cores_fields() -> None:
    assert to_wire("a", RenewRequest((1, 2), 3, 4.0)) == WRenew("a", (1, 2), 3, 4.0)
    assert to_wire("a", Granted((1, 2), 3, 4.0)) == WGranted("a", (1, 2), 3, 4.0)
    assert to_wire("a", Renewed((1, 2), 3, 4.0)) == WRenewed("a", (1, 2), 3, 4.0)
    assert to_wire("a", AcquireRequest((1, 2), 4.0)) == WAcquire("a", (1, 2), 4.0)
    assert to_wire("a", ReleaseRequest(3)) == WRelease("a", 3)


def test_a_long_denial_reason_is_cut_to_what_the_wire_accepts() -> None:
    wire = to_wire("a", Denied((1, 2), "x" * 5000))
    assert isinstance(wire, WDenied)
    assert wire.reason == "x" * 1024
    assert to_wire("a", Denied((1, 2), "y" * 1024)).reason == "y" * 1024  # type: ignore[attr-defined]


def test_a_foreign_message_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match=r"^int is not a message of the lock service$"):
        to_wire("a", 5)
    with pytest.raises(TypeError, match=r"^str is not a message of the lock service$"):
        from_wire("acquire")


def test_lock_names_are_checked_with_a_message_naming_the_problem() -> None:
    assert check_lock_name("a") == "a"
    assert check_lock_name("n" * MAX_NAME) == "n" * MAX_NAME
    with pytest.raises(TypeError, match=r"^lock name must be a str, got bytes$"):
        check_lock_name(b"a")
    with pytest.raises(ValueError, match=r"^lock name must have 1 to 256 characters, got 0$"):
        check_lock_name("")
    with pytest.raises(ValueError, match=r"^lock name must have 1 to 256 characters, got 257$"):
        check_lock_name("n" * (MAX_NAME + 1))


class _Tcp:
    """Records what a LockChannel sends (the TcpTransport's send_nowait)."""

    node_id = 41

    def __init__(self) -> None:
        self.sent: list[tuple[int, Any]] = []

    def send_nowait(self, dst: int, msg: Any) -> bool:
        self.sent.append((dst, msg))
        return len(self.sent) == 1


async def test_a_lock_channel_names_its_messages_and_cannot_be_pulled() -> None:
    tcp = _Tcp()
    channel = LockChannel(tcp, "jobs")  # type: ignore[arg-type]
    assert channel.node_id == 41
    assert channel.lock == "jobs"
    assert channel.send_nowait(0, ReleaseRequest(3)) is True
    assert channel.send_nowait(7, Granted((1, 2), 3, 4.0)) is False
    assert tcp.sent == [(0, WRelease("jobs", 3)), (7, WGranted("jobs", (1, 2), 3, 4.0))]
    with pytest.raises(
        RuntimeError, match=r"^a LockChannel is push-only: run its driver with pull=False$"
    ):
        await channel.receive()
