"""Fault schedules as plain data: the faults a simulated cluster suffers.

A :data:`FaultSchedule` is a tuple of :class:`FaultEvent` ``(at, fault)`` pairs,
sorted by time. Faults are frozen attrs values, so a schedule can be compared,
hashed and printed as Python. The simulator (:mod:`trio_foundation.runtime.sim`)
gives each fault its meaning:

* :class:`Partition` cuts every link between nodes of different groups (a node
  listed in no group is isolated); :class:`Cut` blocks one direction of one link;
  :class:`Heal` removes every cut. Cuts add up until healed.
* :class:`Crash` stops a node and loses its volatile state and the messages in
  flight to it; :class:`Restart` rebuilds its core from its persisted data.
* :class:`Pause` freezes a node (messages and client requests queue up, timers
  are deferred); :class:`Resume` lets it catch up.
* :class:`ClockSkew` sets a node's clock to ``offset + (1 + drift) * true_now``.
* :class:`SetDropRate`, :class:`SetDuplicateRate`, :class:`SetReorderRate` and
  :class:`SetDelay` change the network's behaviour from then on.

The tools that write, read, draw and shrink schedules (JSON, random schedules,
Hypothesis strategies) live in :mod:`trio_foundation.verify.nemesis` and
:mod:`trio_foundation.verify.strategies`, above the runtime.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Any, ClassVar, Final, TypeAlias, final

import attrs

__all__ = [
    "FAULT_TYPES",
    "ClockSkew",
    "Crash",
    "Cut",
    "DelayDistribution",
    "ExponentialDelay",
    "Fault",
    "FaultEvent",
    "FaultSchedule",
    "FixedDelay",
    "Heal",
    "Partition",
    "Pause",
    "Restart",
    "Resume",
    "SetDelay",
    "SetDropRate",
    "SetDuplicateRate",
    "SetReorderRate",
    "UniformDelay",
    "delay_from_json",
]


def _probability(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attr.name} must be in [0, 1], got {value!r}")


def _non_negative(_inst: object, attr: attrs.Attribute[float], value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"{attr.name} must be a finite number >= 0, got {value!r}")


def _node(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{attr.name} must be a node id >= 0, got {value!r}")


# ---------------------------------------------------------------- delays


@final
@attrs.frozen
class FixedDelay:
    """Every message takes exactly ``delay`` seconds."""

    delay: float = attrs.field(validator=_non_negative)
    kind: ClassVar[str] = "fixed"

    def sample(self, rng: random.Random) -> float:
        """One delay (draws nothing from ``rng``)."""
        return self.delay


@final
@attrs.frozen
class UniformDelay:
    """Delays drawn uniformly from ``[low, high]``."""

    low: float = attrs.field(validator=_non_negative)
    high: float = attrs.field(validator=_non_negative)
    kind: ClassVar[str] = "uniform"

    def __attrs_post_init__(self) -> None:
        if self.high < self.low:
            raise ValueError(f"high must be >= low, got low={self.low} high={self.high}")

    def sample(self, rng: random.Random) -> float:
        """One delay."""
        return rng.uniform(self.low, self.high)


@final
@attrs.frozen
class ExponentialDelay:
    """Delays drawn from an exponential distribution of mean ``mean``, capped at ``cap``."""

    mean: float = attrs.field(validator=_non_negative)
    cap: float = attrs.field(validator=_non_negative)
    kind: ClassVar[str] = "exponential"

    def sample(self, rng: random.Random) -> float:
        """One delay."""
        if self.mean == 0:
            return 0.0
        return min(rng.expovariate(1.0 / self.mean), self.cap)


DelayDistribution: TypeAlias = FixedDelay | UniformDelay | ExponentialDelay
_DELAYS: Final[dict[str, type[DelayDistribution]]] = {
    c.kind: c for c in (FixedDelay, UniformDelay, ExponentialDelay)
}


def delay_from_json(obj: Any) -> DelayDistribution:
    """Rebuild a delay distribution from ``{"kind": ..., <fields>}``.

    Raises:
        ValueError: if the object is not a known distribution.
    """
    if not isinstance(obj, dict) or obj.get("kind") not in _DELAYS:
        raise ValueError(f"not a delay distribution: {obj!r}")
    fields = {k: v for k, v in obj.items() if k != "kind"}
    try:
        return _DELAYS[obj["kind"]](**fields)
    except TypeError as exc:
        raise ValueError(f"bad delay distribution {obj!r}: {exc}") from None


# ---------------------------------------------------------------- faults


def _groups_converter(value: Iterable[Iterable[int]]) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(sorted(g)) for g in value)


@final
@attrs.frozen
class Partition:
    """Cut every link between nodes of different ``groups``; unlisted nodes are isolated."""

    groups: tuple[tuple[int, ...], ...] = attrs.field(converter=_groups_converter)
    kind: ClassVar[str] = "partition"

    def __attrs_post_init__(self) -> None:
        seen: list[int] = []
        for group in self.groups:
            for node in group:
                if not isinstance(node, int) or isinstance(node, bool) or node < 0:
                    raise ValueError(f"partition groups must hold node ids >= 0, got {node!r}")
                if node in seen:
                    raise ValueError(f"node {node} is in two partition groups: {self.groups}")
                seen.append(node)


@final
@attrs.frozen
class Cut:
    """Block messages from ``src`` to ``dst`` (one direction only)."""

    src: int = attrs.field(validator=_node)
    dst: int = attrs.field(validator=_node)
    kind: ClassVar[str] = "cut"


@final
@attrs.frozen
class Heal:
    """Remove every partition and cut."""

    kind: ClassVar[str] = "heal"


@final
@attrs.frozen
class Crash:
    """Crash ``node``: volatile state and messages in flight to it are lost."""

    node: int = attrs.field(validator=_node)
    kind: ClassVar[str] = "crash"


@final
@attrs.frozen
class Restart:
    """Restart a crashed ``node`` from its persisted state (no effect if it is up)."""

    node: int = attrs.field(validator=_node)
    kind: ClassVar[str] = "restart"


@final
@attrs.frozen
class Pause:
    """Freeze ``node``: its inputs queue up and its timers are deferred."""

    node: int = attrs.field(validator=_node)
    kind: ClassVar[str] = "pause"


@final
@attrs.frozen
class Resume:
    """Unfreeze a paused ``node``; it processes what queued up, in order."""

    node: int = attrs.field(validator=_node)
    kind: ClassVar[str] = "resume"


@final
@attrs.frozen
class ClockSkew:
    """Set ``node``'s clock to ``offset + (1 + drift) * true_now``."""

    node: int = attrs.field(validator=_node)
    offset: float = 0.0
    drift: float = 0.0
    kind: ClassVar[str] = "skew"

    def __attrs_post_init__(self) -> None:
        if not (math.isfinite(self.offset) and -1.0 < self.drift < 1.0):
            raise ValueError(
                f"skew needs a finite offset and -1 < drift < 1, got {self.offset}, {self.drift}"
            )


@final
@attrs.frozen
class SetDropRate:
    """Drop each message with probability ``p``."""

    p: float = attrs.field(validator=_probability)
    kind: ClassVar[str] = "drop"


@final
@attrs.frozen
class SetDuplicateRate:
    """Deliver an extra copy of each message with probability ``p``."""

    p: float = attrs.field(validator=_probability)
    kind: ClassVar[str] = "dup"


@final
@attrs.frozen
class SetReorderRate:
    """Hold back each message with probability ``p`` by up to ``window`` extra seconds."""

    p: float = attrs.field(validator=_probability)
    window: float = attrs.field(default=0.5, validator=_non_negative)
    kind: ClassVar[str] = "reorder"


@final
@attrs.frozen
class SetDelay:
    """Draw message delays from ``dist`` from now on."""

    dist: DelayDistribution
    kind: ClassVar[str] = "delay"


Fault: TypeAlias = (
    Partition
    | Cut
    | Heal
    | Crash
    | Restart
    | Pause
    | Resume
    | ClockSkew
    | SetDropRate
    | SetDuplicateRate
    | SetReorderRate
    | SetDelay
)
FAULT_TYPES: Final[dict[str, type[Fault]]] = {
    c.kind: c
    for c in (
        Partition,
        Cut,
        Heal,
        Crash,
        Restart,
        Pause,
        Resume,
        ClockSkew,
        SetDropRate,
        SetDuplicateRate,
        SetReorderRate,
        SetDelay,
    )
}


@final
@attrs.frozen
class FaultEvent:
    """``fault`` happens at simulated time ``at`` (seconds from the start of the run)."""

    at: float = attrs.field(validator=_non_negative)
    fault: Fault


FaultSchedule: TypeAlias = tuple[FaultEvent, ...]
