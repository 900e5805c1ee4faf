"""Nemesis schedules: the faults a simulated cluster suffers, as plain data.

A :data:`FaultSchedule` is a tuple of :class:`FaultEvent` ``(at, fault)`` pairs,
sorted by time. Faults are frozen attrs values, so a schedule can be compared,
hashed, printed as Python, written as JSON (:func:`schedule_to_json`,
:func:`schedule_from_json`) and generated and shrunk by Hypothesis
(:mod:`trio_foundation.verify.strategies`). :func:`random_schedule` draws one from
a seed, for the chaos command line.

The simulator (:mod:`trio_foundation.runtime.sim`) gives each fault its meaning:

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
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any, Final

import attrs

from ..runtime.faults import (
    FAULT_TYPES,
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
    delay_from_json,
)

__all__ = [
    "FAULT_KINDS",
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
    "fault_from_json",
    "fault_to_json",
    "random_schedule",
    "schedule_from_json",
    "schedule_to_json",
]


FAULT_KINDS: Final = ("drop", "dup", "delay", "reorder", "partition", "crash", "pause", "skew")
"""The fault families :func:`random_schedule` (and ``foundation chaos run --faults``) know."""


def fault_to_json(fault: Fault) -> dict[str, Any]:
    """``fault`` as a JSON object ``{"fault": kind, <fields>}``."""
    obj: dict[str, Any] = {"fault": fault.kind}
    for field in attrs.fields(type(fault)):
        value = getattr(fault, field.name)
        if isinstance(value, FixedDelay | UniformDelay | ExponentialDelay):
            obj[field.name] = {"kind": value.kind, **attrs.asdict(value)}
        elif field.name == "groups":
            obj[field.name] = [list(g) for g in value]
        else:
            obj[field.name] = value
    return obj


def fault_from_json(obj: Any) -> Fault:
    """Rebuild a fault from :func:`fault_to_json`'s output.

    Raises:
        ValueError: if ``obj`` is not a valid fault.
    """
    if not isinstance(obj, dict) or obj.get("fault") not in FAULT_TYPES:
        raise ValueError(f"not a fault: {obj!r}")
    fields = {k: v for k, v in obj.items() if k not in ("fault", "at")}
    if "dist" in fields:
        fields["dist"] = delay_from_json(fields["dist"])
    try:
        return FAULT_TYPES[obj["fault"]](**fields)
    except TypeError as exc:
        raise ValueError(f"bad fault {obj!r}: {exc}") from None


def schedule_to_json(schedule: Sequence[FaultEvent]) -> str:
    """The schedule as a JSON array of ``{"at": t, "fault": kind, ...}`` objects."""
    return json.dumps([{"at": ev.at, **fault_to_json(ev.fault)} for ev in schedule])


def schedule_from_json(text: str) -> FaultSchedule:
    """Parse :func:`schedule_to_json`'s output (events are sorted by time, stably).

    Raises:
        ValueError: on malformed JSON or an unknown fault.
    """
    data = json.loads(text)
    if not isinstance(data, list):
        raise ValueError("a fault schedule must be a JSON array")
    events = [FaultEvent(at=float(item["at"]), fault=fault_from_json(item)) for item in data]
    return tuple(sorted(events, key=lambda ev: ev.at))


def random_schedule(
    seed: int,
    *,
    nodes: int,
    kinds: Sequence[str],
    horizon: float,
    intensity: float = 1.0,
) -> FaultSchedule:
    """Draw a fault schedule over ``[0, horizon]`` from ``seed``.

    Network faults (``drop``, ``dup``, ``delay``, ``reorder``) are switched on at
    time 0; episodic faults (``partition``, ``crash``, ``pause``, ``skew``) come as
    about ``intensity`` episodes per second, each undone after a while
    (heal, restart, resume). At ``horizon`` every fault is undone so the cluster
    can finish outstanding work.

    Args:
        seed: the seed; the same arguments give the same schedule.
        nodes: the cluster size (>= 1).
        kinds: a subset of :data:`FAULT_KINDS`.
        horizon: the length of the faulty period, in simulated seconds (> 0).
        intensity: how hard to hit (> 0); 1.0 is moderate.

    Raises:
        ValueError: on an unknown kind or a bad number.
    """
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(FAULT_KINDS)}"
        )
    if nodes < 1:
        raise ValueError(f"nodes must be >= 1, got {nodes}")
    if not (horizon > 0 and intensity > 0):
        raise ValueError(f"horizon and intensity must be > 0, got {horizon}, {intensity}")
    rng = random.Random(f"nemesis:{seed}")
    level = min(intensity, 6.0) / 2.0
    events: list[FaultEvent] = []
    chosen = [k for k in FAULT_KINDS if k in kinds]
    if "drop" in chosen:
        events.append(FaultEvent(0.0, SetDropRate(round(min(0.6, 0.1 * level), 3))))
    if "dup" in chosen:
        events.append(FaultEvent(0.0, SetDuplicateRate(round(min(0.6, 0.1 * level), 3))))
    if "delay" in chosen:
        events.append(FaultEvent(0.0, SetDelay(ExponentialDelay(0.02 * level, 0.5 * level))))
    if "reorder" in chosen:
        events.append(FaultEvent(0.0, SetReorderRate(round(min(0.8, 0.2 * level), 3), 0.3)))
    episodic = [k for k in chosen if k in ("partition", "crash", "pause", "skew")]
    touched: list[int] = []
    if episodic:
        count = max(1, round(horizon * intensity))
        for _ in range(count):
            kind = rng.choice(episodic)
            start = round(rng.uniform(0.0, horizon), 3)
            end = round(min(horizon, start + rng.uniform(0.2, 2.0)), 3)
            node = rng.randrange(nodes)
            if kind == "partition":
                if rng.random() < 0.25 and nodes > 1:
                    other = rng.choice([m for m in range(nodes) if m != node])
                    events.append(FaultEvent(start, Cut(node, other)))
                else:
                    order = list(range(nodes))
                    rng.shuffle(order)
                    split = rng.randint(1, max(1, nodes - 1))
                    events.append(FaultEvent(start, Partition((order[:split], order[split:]))))
                events.append(FaultEvent(end, Heal()))
            elif kind == "crash":
                events.append(FaultEvent(start, Crash(node)))
                events.append(FaultEvent(end, Restart(node)))
                touched.append(node)
            elif kind == "pause":
                events.append(FaultEvent(start, Pause(node)))
                events.append(FaultEvent(end, Resume(node)))
                touched.append(node)
            else:
                offset = round(rng.uniform(-1.0, 1.0) * level, 3)
                drift = round(rng.uniform(-0.1, 0.1) * min(level, 2.0), 4)
                events.append(FaultEvent(start, ClockSkew(node, offset, drift)))
    end_time = float(horizon)
    if "partition" in episodic:
        events.append(FaultEvent(end_time, Heal()))
    for node in sorted(set(touched)):
        events.append(FaultEvent(end_time, Resume(node)))
        events.append(FaultEvent(end_time, Restart(node)))
    return tuple(sorted(events, key=lambda ev: ev.at))
