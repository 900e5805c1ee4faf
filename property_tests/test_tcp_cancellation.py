"""The TCP transport's public async calls under injected cancellations and deadlines
(trio_foundation.verify.cancellation): whatever checkpoint a cancellation hits, no
task outlives the block, no socket stays open, only documented exceptions escape,
and a cancelled receive loses no message."""

from __future__ import annotations

from descriptors import left_open, open_descriptors
from hypothesis import given
from hypothesis import strategies as st

from trio_foundation.runtime.codec import WireMessage, WireProtocol
from trio_foundation.runtime.tcp import open_tcp_transport
from trio_foundation.verify.cancellation import (
    InjectionPlan,
    Injector,
    injection_plans,
    run_injected,
)


class Ping(WireMessage, frozen=True):
    seq: int


PROTO = WireProtocol("injected", 1, [Ping])
SECRET = b"sixteen+ bytes of secret"
# The harness runs on a MockClock that jumps to the next deadline whenever every
# task waits, including on real sockets: keep the transport's own timeouts out of
# reach, so only the injected cancellations fire.
FAR: dict[str, float] = {"handshake_timeout": 1e5, "connect_timeout": 1e5}


def scenario_for(secret: bytes | None, received: list[int]):  # type: ignore[no-untyped-def]
    async def scenario(inj: Injector) -> None:
        with inj.scope("server"):
            async with open_tcp_transport(
                PROTO, 0, listen=("127.0.0.1", 0), secret=secret, **FAR
            ) as server:
                assert server.listen_address is not None
                with inj.scope("client"):
                    async with open_tcp_transport(
                        PROTO, 1, peers={0: server.listen_address}, secret=secret, **FAR
                    ) as client:
                        with inj.scope("wait_connected"):
                            await client.wait_connected(0)
                        for i in range(4):
                            client.send_nowait(0, Ping(i))
                        # receive until all four arrived; a cancelled receive must
                        # not lose the message it was waiting for
                        while len(received) < 4:
                            with inj.scope("receive"):
                                received.append((await server.receive()).msg.seq)

    return scenario


@given(st.sampled_from([None, SECRET]), injection_plans(max_step=55, max_target=3, max_delay=2))
def test_transport_calls_under_injected_cancellation(
    secret: bytes | None, plan: InjectionPlan
) -> None:
    baseline = open_descriptors()
    received: list[int] = []
    result = run_injected(scenario_for(secret, received), plan, real_time_limit=30)
    assert not (leaked := left_open(baseline)), f"outlived the transport: {leaked}"
    # what arrived is a prefix of what was sent: in order, nothing lost to a cancelled
    # receive, nothing duplicated
    assert received == list(range(len(received)))
    if not result.applied:
        assert received == [0, 1, 2, 3]
