"""Benchmarks: the Registry vs a plain dict-plus-index baseline, in one run.

    python benchmarks/bench_registry.py [--quick]

Sizes N = 10,000 and 1,000,000 entries (``--quick``: 10,000 and 100,000). The baseline
is what one writes by hand: a dict key -> record and, per index, a dict value -> set of
keys, behind methods of the same shape as the registry's (one method call per operation).
Each entry's metadata has ``node`` (100 values) and ``caps`` (a set of 2 of 10 values,
multi-valued index).

* lookup: ``lookup(key)`` for 100,000 random registered keys;
* register/unregister: register 10,000 fresh keys into the filled registry, then
  unregister them (both sides maintain both indexes);
* indexed query: ``select({"node": v, "caps": c}, limit=100)`` vs the baseline's set
  intersection, sorted by registration order, first 100 — 1,000 queries;
* unregister vs index size: time per unregister of 10,000 entries filed under the value
  every one of the N entries shares (posting lists of size N) vs under values of their
  own (posting lists of size 1), in the same registry (same cache pressure); and the
  first figure at both N. A ratio near 1 means removal does not depend on index size.

Best of 5 per figure (3 at 1M), garbage collector disabled while timing; ratio =
baseline time / registry time (>= 1 means the registry is faster).
Goals (issue 12): lookup >= 0.8x dict-plus-index; unregister time independent of N.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable
from typing import Any

from trio_foundation.registry import Index, Registry


class Baseline:
    """A dict plus hand-kept index dicts."""

    def __init__(self) -> None:
        self.records: dict[Any, tuple[int, dict[str, Any]]] = {}
        self.node: dict[Any, set[Any]] = {}
        self.caps: dict[Any, set[Any]] = {}
        self.next = 0

    def register(self, key: Any, meta: dict[str, Any]) -> None:
        self.next += 1
        self.records[key] = (self.next, meta)
        self.node.setdefault(meta["node"], set()).add(key)
        for cap in meta["caps"]:
            self.caps.setdefault(cap, set()).add(key)

    def unregister(self, key: Any) -> None:
        _, meta = self.records.pop(key)
        bucket = self.node[meta["node"]]
        bucket.discard(key)
        if not bucket:
            del self.node[meta["node"]]
        for cap in meta["caps"]:
            bucket = self.caps[cap]
            bucket.discard(key)
            if not bucket:
                del self.caps[cap]

    def lookup(self, key: Any) -> Any:
        return self.records.get(key)

    def query(self, node: Any, cap: Any, limit: int) -> list[Any]:
        keys = self.node.get(node, set()) & self.caps.get(cap, set())
        records = self.records
        return sorted(keys, key=lambda k: records[k][0])[:limit]


def meta_for(i: int) -> dict[str, Any]:
    return {"node": f"n{i % 100}", "caps": (f"c{i % 10}", f"c{(i * 7 + 3) % 10}")}


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        finally:
            gc.enable()
    return min(times)


def pair(
    ours: Callable[[], object], baseline: Callable[[], object], repeat: int
) -> tuple[float, float]:
    """Best times of two functions, measured alternately (load hits both sides alike)."""
    a, b = [], []
    for _ in range(repeat):
        a.append(best(ours, 1))
        b.append(best(baseline, 1))
    return min(a), min(b)


def filled(n: int, *, shared: bool = False) -> tuple[Registry, Baseline]:
    registry = Registry(
        indexes=[Index("node"), Index("caps", multi=True)],
        max_entries=n + 20_000,
        batch_limit=10_000,
    )
    baseline = Baseline()
    for i in range(n):
        meta = {"node": "same", "caps": ("same",)} if shared else meta_for(i)
        registry.register_nowait(i, meta)
        baseline.register(i, meta)
    return registry, baseline


def run(n: int, repeat: int) -> dict[str, float]:
    out: dict[str, float] = {}
    registry, baseline = filled(n)
    rng = random.Random(1)
    keys = [rng.randrange(n) for _ in range(100_000)]
    r_lookup, b_lookup = registry.lookup, baseline.lookup

    def lookups(fn: Callable[[Any], object]) -> Callable[[], None]:
        def go() -> None:
            for key in keys:
                fn(key)

        return go

    ours, base = pair(lookups(r_lookup), lookups(b_lookup), repeat)
    out["lookup_registry_ns"] = ours / len(keys) * 1e9
    out["lookup_baseline_ns"] = base / len(keys) * 1e9

    fresh = [(f"fresh{i}", meta_for(i)) for i in range(10_000)]

    def registry_cycle() -> None:
        entries = [registry.register_nowait(k, m) for k, m in fresh]
        for entry in entries:
            registry.unregister_nowait(entry)

    def baseline_cycle() -> None:
        for k, m in fresh:
            baseline.register(k, m)
        for k, _ in fresh:
            baseline.unregister(k)

    ours, base = pair(registry_cycle, baseline_cycle, repeat)
    out["cycle_registry_ns"] = ours / len(fresh) * 1e9
    out["cycle_baseline_ns"] = base / len(fresh) * 1e9

    queries = [(f"n{rng.randrange(100)}", f"c{rng.randrange(10)}") for _ in range(1000)]

    def registry_queries() -> None:
        for node, cap in queries:
            registry.select({"node": node, "caps": cap}, limit=100)

    def baseline_queries() -> None:
        for node, cap in queries:
            baseline.query(node, cap, 100)

    ours, base = pair(registry_queries, baseline_queries, repeat)
    out["query_registry_us"] = ours / len(queries) * 1e6
    out["query_baseline_us"] = base / len(queries) * 1e6
    registry = baseline = None  # type: ignore[assignment]  # free them before the next fill
    gc.collect()

    def unregister_cost(registry: Registry, meta: dict[str, Any]) -> float:
        entries = [registry.register_nowait(f"v{i}", meta) for i in range(10_000)]
        gc.disable()
        start = time.perf_counter()
        for entry in entries:
            registry.unregister_nowait(entry)
        elapsed = time.perf_counter() - start
        gc.enable()
        return elapsed / len(entries) * 1e9

    # Same N, same cache pressure; only the posting lists' sizes differ: every entry
    # under one value (lists of size N) vs the victims under values of their own.
    shared, _ = filled(n, shared=True)
    big, small = [], []
    for i in range(repeat):
        big.append(unregister_cost(shared, {"node": "same", "caps": ("same",)}))
        small.append(unregister_cost(shared, {"node": f"own{i}", "caps": (f"own{i}",)}))
    out["unregister_shared_index_ns"] = min(big)
    out["unregister_own_index_ns"] = min(small)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 10k and 100k")
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [10_000, 1_000_000]
    results = {}
    for n in sizes:
        results[n] = run(n, 5 if n <= 100_000 else 3)
        r = results[n]
        print(f"N = {n:,}")
        print(
            f"  lookup           registry {r['lookup_registry_ns']:7.0f} ns"
            f"  baseline {r['lookup_baseline_ns']:7.0f} ns"
            f"  ratio {r['lookup_baseline_ns'] / r['lookup_registry_ns']:.2f}x"
        )
        print(
            f"  register+unreg   registry {r['cycle_registry_ns']:7.0f} ns"
            f"  baseline {r['cycle_baseline_ns']:7.0f} ns"
            f"  ratio {r['cycle_baseline_ns'] / r['cycle_registry_ns']:.2f}x"
        )
        print(
            f"  indexed query    registry {r['query_registry_us']:7.1f} us"
            f"  baseline {r['query_baseline_us']:7.1f} us"
            f"  ratio {r['query_baseline_us'] / r['query_registry_us']:.2f}x"
        )
        print(
            f"  unregister       posting lists of size N {r['unregister_shared_index_ns']:5.0f} ns"
            f"  of size 1 {r['unregister_own_index_ns']:5.0f} ns"
            f"  ratio {r['unregister_shared_index_ns'] / r['unregister_own_index_ns']:.2f}"
        )
    small, large = (results[n]["unregister_shared_index_ns"] for n in sizes)
    print(
        f"unregister time at N={sizes[1]:,} / at N={sizes[0]:,}: {large / small:.2f}"
        " (1.0 = independent of index size)"
    )


if __name__ == "__main__":
    main()
