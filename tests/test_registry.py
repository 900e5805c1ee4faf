"""Unit tests of the in-memory Registry beyond the backend conformance suite."""

from __future__ import annotations

import pytest

from trio_foundation.registry import (
    Index,
    Registry,
    RegistryFullError,
    RegistryStatistics,
)


def test_constructor_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError, match="max_entries must be a positive int, got -1"):
        Registry(max_entries=-1)
    with pytest.raises(ValueError, match="batch_limit must be a positive int, got 0"):
        Registry(batch_limit=0)
    with pytest.raises(ValueError, match="keys must be 'unique' or 'duplicate'"):
        Registry(keys="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="index names must be distinct"):
        Registry(indexes=[Index("a"), Index("a")])
    with pytest.raises(ValueError, match="watch capacity must be a positive int, got -3"):
        Registry().open_watch(-3)


def test_max_entries_is_enforced_without_corrupting_state() -> None:
    reg = Registry(max_entries=2, indexes=[Index("node")])
    reg.register_nowait("a", {"node": 1})
    reg.register_nowait("b", {"node": 1})
    with pytest.raises(RegistryFullError, match="max_entries=2"):
        reg.register_nowait("c", {"node": 1})
    with pytest.raises(RegistryFullError):
        reg.register_many_nowait([("c", {}), ("d", {})])
    assert len(reg) == 2
    assert reg.statistics() == RegistryStatistics(entries=2, keys=2, postings=1, watchers=0)


def test_user_defined_extractor_index() -> None:
    reg = Registry(
        indexes=[Index("load", extract=lambda m: "high" if m.get("cpu", 0) > 0.8 else "low")]
    )
    busy = reg.register_nowait("a", {"cpu": 0.9})
    reg.register_nowait("b", {"cpu": 0.1})
    assert reg.select({"load": "high"}).entries == (busy,)


def test_removal_frees_posting_lists_and_keys() -> None:
    reg = Registry(keys="duplicate", indexes=[Index("caps", multi=True)])
    entries = [reg.register_nowait("g", {"caps": {f"c{i}", "shared"}}) for i in range(50)]
    assert reg.statistics().postings == 51
    for entry in entries:
        reg.unregister_nowait(entry)
    assert reg.statistics() == RegistryStatistics(entries=0, keys=0, postings=0, watchers=0)


def test_lookup_follows_the_oldest_remaining_entry() -> None:
    reg = Registry(keys="duplicate")
    a, b, c = (reg.register_nowait("k", {"n": i}) for i in range(3))
    reg.unregister_nowait(a)
    assert reg.lookup("k") == b
    reg.update_nowait(b, {"n": 9})
    assert reg.lookup("k").meta == {"n": 9}  # type: ignore[union-attr]
    reg.unregister_nowait(b)
    assert reg.lookup("k") == c


def test_entries_are_immutable_values() -> None:
    reg = Registry()
    meta = {"node": "a"}
    entry = reg.register_nowait("k", meta)
    meta["node"] = "changed"
    assert entry.meta == {"node": "a"}
    with pytest.raises(TypeError):
        entry.meta["node"] = "x"  # type: ignore[index]
