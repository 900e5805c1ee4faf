"""Hypothesis strategies for fault schedules.

Import this module only where Hypothesis is installed (tests); the package
never imports it. A property test searches over schedules and Hypothesis shrinks
a failing one towards few, early, simple faults::

    from hypothesis import given
    from trio_foundation.verify.strategies import fault_schedules

    @given(fault_schedules(nodes=3, max_faults=6))
    def test_register_survives(schedule):
        ...

Within each family, the strategies are ordered so that shrinking moves towards
the mildest fault (``Heal`` before ``Partition``, a fixed delay before a random
one, rates towards 0).
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from .nemesis import (
    FAULT_KINDS,
    ClockSkew,
    Crash,
    Cut,
    DelayDistribution,
    ExponentialDelay,
    Fault,
    FaultEvent,
    FaultSchedule,
    FixedDelay,
    Heal,
    Partition,
    Pause,
    Restart,
    Resume,
    SetDelay,
    SetDropRate,
    SetDuplicateRate,
    SetReorderRate,
    UniformDelay,
)

__all__ = ["delay_distributions", "fault_events", "fault_schedules", "faults", "partitions"]


def _millis(low: float, high: float) -> st.SearchStrategy[float]:
    """Numbers in ``[low, high]`` with millisecond resolution (they shrink and print well)."""
    return st.integers(round(low * 1000), round(high * 1000)).map(lambda ms: ms / 1000)


def delay_distributions(*, max_delay: float = 0.5) -> st.SearchStrategy[DelayDistribution]:
    """Fixed, uniform and (capped) exponential delay distributions up to ``max_delay``."""
    fixed = _millis(0.0, max_delay).map(FixedDelay)
    uniform = st.tuples(_millis(0.0, max_delay), _millis(0.0, max_delay)).map(
        lambda lh: UniformDelay(min(lh), max(lh))
    )
    exponential = st.tuples(_millis(0.0, max_delay / 4), _millis(0.0, max_delay)).map(
        lambda mc: ExponentialDelay(mc[0], mc[1])
    )
    return st.one_of(fixed, uniform, exponential)


def partitions(nodes: int) -> st.SearchStrategy[Partition]:
    """Partitions of ``range(nodes)`` into two or more non-empty groups."""
    if nodes < 2:
        raise ValueError(f"a partition needs >= 2 nodes, got {nodes}")

    def build(labels: list[int]) -> Partition:
        groups: dict[int, list[int]] = {}
        for node, label in enumerate(labels):
            groups.setdefault(label, []).append(node)
        return Partition([groups[k] for k in sorted(groups)])

    return (
        st.lists(st.integers(0, nodes - 1), min_size=nodes, max_size=nodes)
        .filter(lambda labels: len(set(labels)) >= 2)
        .map(build)
    )


def faults(
    nodes: int,
    *,
    kinds: Sequence[str] = FAULT_KINDS,
    max_rate: float = 0.5,
    max_offset: float = 2.0,
    max_drift: float = 0.2,
) -> st.SearchStrategy[Fault]:
    """Single faults of the families in ``kinds`` (see :data:`FAULT_KINDS`).

    ``partition`` covers :class:`Partition`, one-way :class:`Cut` and
    :class:`Heal`; ``crash`` covers :class:`Crash` and :class:`Restart`; ``pause``
    covers :class:`Pause` and :class:`Resume`.

    Raises:
        ValueError: on an unknown kind or a bad bound.
    """
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(f"unknown fault kind(s) {', '.join(unknown)}")
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    node = st.integers(0, nodes - 1)
    rate = _millis(0.0, max_rate)
    options: list[st.SearchStrategy[Fault]] = []
    if "partition" in kinds:
        options.append(st.just(Heal()))
        if nodes >= 2:
            options.append(partitions(nodes))
            options.append(
                st.builds(
                    lambda src, hop: Cut(src, (src + hop) % nodes),
                    node,
                    st.integers(1, nodes - 1),
                )
            )
    if "crash" in kinds:
        options.append(node.map(Restart))
        options.append(node.map(Crash))
    if "pause" in kinds:
        options.append(node.map(Resume))
        options.append(node.map(Pause))
    if "drop" in kinds:
        options.append(rate.map(SetDropRate))
    if "dup" in kinds:
        options.append(rate.map(SetDuplicateRate))
    if "reorder" in kinds:
        options.append(st.builds(SetReorderRate, rate, _millis(0.0, 1.0)))
    if "delay" in kinds:
        options.append(delay_distributions().map(SetDelay))
    if "skew" in kinds:
        options.append(
            st.builds(
                ClockSkew, node, _millis(-max_offset, max_offset), _millis(-max_drift, max_drift)
            )
        )
    if not options:
        raise ValueError("no fault kinds to draw from")
    return st.one_of(options)


def fault_events(
    nodes: int, *, horizon: float = 5.0, kinds: Sequence[str] = FAULT_KINDS
) -> st.SearchStrategy[FaultEvent]:
    """One :class:`FaultEvent` at a time in ``[0, horizon]`` (millisecond resolution)."""
    return st.builds(FaultEvent, _millis(0.0, horizon), faults(nodes, kinds=kinds))


def fault_schedules(
    nodes: int,
    *,
    max_faults: int = 8,
    horizon: float = 5.0,
    kinds: Sequence[str] = FAULT_KINDS,
) -> st.SearchStrategy[FaultSchedule]:
    """Fault schedules: up to ``max_faults`` events, sorted by time.

    Shrinks towards fewer faults, earlier times and milder faults.
    """
    if max_faults < 0:
        raise ValueError(f"max_faults must be >= 0, got {max_faults}")
    return st.lists(fault_events(nodes, horizon=horizon, kinds=kinds), max_size=max_faults).map(
        lambda events: tuple(sorted(events, key=lambda ev: ev.at))
    )
