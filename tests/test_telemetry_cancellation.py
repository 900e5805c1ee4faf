"""Scope-bound telemetry handlers under injected cancellations (``verify.cancellation``).

Owners open async handlers (``attach_async``) and sync handlers (``attached``) while an
emitter emits; every owner's scope is attackable, and so is the emitter's. After every
step: every attached handler belongs to an owner inside its block. At the end: no handler
is attached, and the emitter was never held up (its 20 emits took their 20 sleeps).
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings

from trio_foundation.telemetry import Event, Telemetry
from trio_foundation.verify.cancellation import Injector, injection_plans, run_injected

SETTINGS = settings(max_examples=min(60, settings().max_examples), deadline=None)


def _scenario(state: dict[str, Any]) -> Any:
    async def scenario(inj: Injector) -> None:
        telemetry = Telemetry(slow_handler=None)
        inside: set[str] = set()
        state.update(telemetry=telemetry, inside=inside, emitted=0)

        async def slow(event: Event) -> None:
            await trio.sleep(0.3)

        async def async_owner(i: int) -> None:
            handler_id = f"async{i}"
            with inj.scope(handler_id):
                inside.add(handler_id)
                try:
                    async with telemetry.attach_async(handler_id, "e", slow, capacity=2):
                        await trio.sleep(1 + i)
                finally:
                    inside.discard(handler_id)

        async def sync_owner() -> None:
            with inj.scope("sync"):
                inside.add("sync")
                try:
                    with telemetry.attached("sync", "e", lambda event: None):
                        await trio.sleep(1.5)
                finally:
                    inside.discard("sync")

        async def emitter() -> None:
            start = trio.current_time()
            for _ in range(20):
                telemetry.emit("e")
                state["emitted"] += 1
                await trio.sleep(0.1)
            state["emit_time"] = trio.current_time() - start

        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(async_owner, i)
            nursery.start_soon(sync_owner)
            nursery.start_soon(emitter)

    return scenario


def _check(state: dict[str, Any]) -> None:
    telemetry: Telemetry | None = state.get("telemetry")
    if telemetry is None:
        return
    for handler in telemetry.handlers():
        assert handler.handler_id in state["inside"], f"{handler.handler_id} outlived its owner"


@SETTINGS
@given(plan=injection_plans(max_step=120))
def test_telemetry_under_injected_cancellation(plan: Any) -> None:
    state: dict[str, Any] = {}
    run_injected(_scenario(state), plan, check=lambda: _check(state))
    assert state["telemetry"].statistics().handlers == 0
    assert state["emitted"] == 20
    assert abs(state["emit_time"] - 2.0) < 1e-9, "the emitter was held up"
