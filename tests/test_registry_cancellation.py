"""The registry's async API under injected cancellations (``verify.cancellation``).

Owners register (singly and in batches), update and unregister while a watcher reads;
every scope is attackable. After every step of the scheduler: no entry belongs to an owner
that has left its ``async with`` block, and the registry's indexes agree with its entries.
At the end: nothing is left — no entry, no posting list, no watch.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import given, settings

from trio_foundation.registry import Index, Registry
from trio_foundation.verify.cancellation import Injector, injection_plans, run_injected

SETTINGS = settings(max_examples=min(60, settings().max_examples), deadline=None)


def _scenario(state: dict[str, Any]) -> Any:
    async def scenario(inj: Injector) -> None:
        registry = Registry(indexes=[Index("node"), Index("caps", multi=True)])
        inside: set[str] = set()  # keys whose owner is inside (or entering) its block
        state["registry"], state["inside"] = registry, inside

        async def owner(i: int) -> None:
            key = f"k{i}"
            with inj.scope(f"owner{i}"):
                inside.add(key)
                try:
                    async with registry.register(key, {"node": i % 2, "caps": [i]}) as entry:
                        await trio.sleep(i + 1)
                        await registry.update(entry, {"node": 7}, merge=True)
                        await trio.sleep(1)
                        if i == 0:
                            await registry.unregister(entry)
                            await trio.sleep(1)
                finally:
                    inside.discard(key)

        async def batch() -> None:
            keys = ["b1", "b2", "b3"]
            with inj.scope("batch"):
                inside.update(keys)
                try:
                    async with registry.register_many([(k, {"node": 1}) for k in keys]):
                        await trio.sleep(2.5)
                finally:
                    inside.difference_update(keys)

        async def watcher(task_status: trio.TaskStatus[None]) -> None:
            started = False
            with inj.scope("watch"):
                async with registry.watch(capacity=2) as watch:
                    task_status.started()
                    started = True
                    while True:
                        await watch.receive()
                        await trio.sleep(0.7)
            if not started:  # cancelled before the watch opened
                task_status.started()

        async with trio.open_nursery() as outer:
            await outer.start(watcher)
            async with trio.open_nursery() as nursery:
                for i in range(3):
                    nursery.start_soon(owner, i)
                nursery.start_soon(batch)
            outer.cancel_scope.cancel()

    return scenario


def _check(state: dict[str, Any]) -> None:
    registry: Registry | None = state.get("registry")
    if registry is None:
        return
    for entry in registry:
        assert entry.key in state["inside"], f"entry {entry.key!r} outlived its owner"
    for node in (0, 1, 7):
        ids = {e.id for e in registry.select({"node": node}, limit=100).entries}
        assert ids == {e.id for e in registry if e.meta.get("node") == node}
    assert registry.statistics().watchers <= 1


@SETTINGS
@given(plan=injection_plans(max_step=60))
def test_registry_under_injected_cancellation(plan: Any) -> None:
    state: dict[str, Any] = {}
    run_injected(_scenario(state), plan, check=lambda: _check(state))
    registry: Registry = state["registry"]
    assert registry.statistics().entries == 0
    assert registry.statistics().postings == 0
    assert registry.statistics().watchers == 0
