"""Metrics with fixed memory: counters, gauges, log-linear histograms, windowed rates.

Every metric's memory is fixed when it is created: a histogram is an array of bucket
counts, a rate a ring of slots, and a :class:`MetricRegistry` holds at most
``max_series`` (metric, labels) series — a new label combination beyond that is refused.

Histogram buckets are *log-linear* (as HdrHistogram): each power of two between
``lowest`` and ``highest`` is split into ``sub_buckets`` equal-width buckets, so a
percentile is reported with a relative error of at most ``1 / sub_buckets`` over many
orders of magnitude, in ``octaves * sub_buckets + 2`` counters (an underflow bucket below
``lowest`` and an overflow bucket at or above ``highest``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Generic, Literal, TypeVar, final

import attrs

__all__ = [
    "Counter",
    "Gauge",
    "Histogram",
    "MetricFamily",
    "MetricRegistry",
    "Rate",
    "TooManySeriesError",
]

_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class TooManySeriesError(RuntimeError):
    """A registry already holds ``max_series`` series; a new label combination was refused.

    Attributes:
        metric: the metric's name.
        max_series: the registry's bound.
    """

    def __init__(self, metric: str, max_series: int) -> None:
        super().__init__(
            f"metric {metric!r}: refusing a new label combination, the registry already"
            f" holds max_series={max_series} series"
        )
        self.metric = metric
        self.max_series = max_series


@final
class Counter:
    """A monotonically increasing count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount`` (>= 0).

        Raises:
            ValueError: ``amount`` is negative.
        """
        if amount < 0:
            raise ValueError(f"a counter only goes up: amount must be >= 0, got {amount}")
        self.value += amount


@final
class Gauge:
    """A value that goes up and down."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        """Set the value."""
        self.value = value

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        """Subtract ``amount``."""
        self.value -= amount


@final
class Histogram:
    """Distribution of non-negative values in log-linear buckets (fixed memory).

    Args:
        lowest: the smallest value resolved (> 0); smaller values share one bucket.
        highest: values at or above it share the overflow bucket (> ``lowest``).
        sub_buckets: linear buckets per power of two (>= 1); relative error <= 1/sub_buckets.

    Raises:
        ValueError: a bound is out of range.
    """

    __slots__ = (
        "_counts",
        "_lowest",
        "_octaves",
        "_sub",
        "count",
        "highest",
        "max",
        "min",
        "sum",
    )

    def __init__(
        self, *, lowest: float = 1e-6, highest: float = 1e4, sub_buckets: int = 16
    ) -> None:
        if not lowest > 0:
            raise ValueError(f"lowest must be > 0, got {lowest!r}")
        if not highest > lowest:
            raise ValueError(f"highest must be > lowest ({lowest}), got {highest!r}")
        if isinstance(sub_buckets, bool) or not isinstance(sub_buckets, int) or sub_buckets < 1:
            raise ValueError(f"sub_buckets must be an int >= 1, got {sub_buckets!r}")
        self._lowest = lowest
        self.highest = highest
        self._sub = sub_buckets
        self._octaves = max(1, math.ceil(math.log2(highest / lowest)))
        self._counts = [0] * (self._octaves * sub_buckets + 2)
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def buckets(self) -> int:
        """How many counters the histogram holds."""
        return len(self._counts)

    def _index(self, value: float) -> int:
        if value < self._lowest:
            return 0
        if value >= self.highest:
            return len(self._counts) - 1
        mantissa, exponent = math.frexp(value / self._lowest)  # value/lowest = m * 2**e
        octave = exponent - 1
        if octave >= self._octaves:
            return len(self._counts) - 1
        return 1 + octave * self._sub + int((mantissa * 2.0 - 1.0) * self._sub)

    def _upper(self, index: int) -> float:
        if index == 0:
            return self._lowest
        if index == len(self._counts) - 1:
            return math.inf
        octave, sub = divmod(index - 1, self._sub)
        return self._lowest * 2.0**octave * (1.0 + (sub + 1) / self._sub)

    def observe(self, value: float) -> None:
        """Record one value (>= 0; NaN is refused).

        Raises:
            ValueError: ``value`` is negative or NaN.
        """
        if not value >= 0:
            raise ValueError(f"histogram values must be >= 0, got {value!r}")
        self._counts[self._index(value)] += 1
        self.count += 1
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def percentile(self, q: float) -> float:
        """The ``q``-quantile (``0 <= q <= 1``): an upper bound within 1/sub_buckets.

        Returns ``nan`` for an empty histogram. The answer is clamped to the exact
        minimum and maximum observed.

        Raises:
            ValueError: ``q`` is outside ``[0, 1]``.
        """
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be within [0, 1], got {q!r}")
        if self.count == 0:
            return math.nan
        if q == 0.0:
            return self.min
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index, count in enumerate(self._counts):
            seen += count
            if seen >= rank:
                return min(max(self._upper(index), self.min), self.max)
        return self.max  # pragma: no cover - unreachable: seen reaches count

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """``(upper bound, values <= it)`` at every power-of-two boundary, then ``inf``."""
        seen = self._counts[0]
        yield self._lowest, seen
        for octave in range(self._octaves):
            start = 1 + octave * self._sub
            seen += sum(self._counts[start : start + self._sub])
            yield self._lowest * 2.0 ** (octave + 1), seen
        yield math.inf, self.count


@final
class Rate:
    """Events per second over a sliding window, in a fixed ring of slots.

    Args:
        window: the window's length in seconds (> 0).
        slots: how many slots the window is divided into (>= 1); the window slides one
            slot at a time.
        clock: returns the current time in seconds (default ``time.monotonic``; pass
            ``trio.current_time`` inside trio).

    Raises:
        ValueError: a bound is out of range.
    """

    __slots__ = ("_clock", "_counts", "_epochs", "_width", "window")

    def __init__(
        self,
        *,
        window: float = 60.0,
        slots: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not window > 0:
            raise ValueError(f"window must be > 0 seconds, got {window!r}")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise ValueError(f"slots must be an int >= 1, got {slots!r}")
        self.window = window
        self._width = window / slots
        self._counts = [0.0] * slots
        self._epochs = [-1] * slots
        self._clock = clock

    def mark(self, count: float = 1.0) -> None:
        """Record ``count`` events now."""
        epoch = int(self._clock() // self._width)
        slot = epoch % len(self._counts)
        if self._epochs[slot] != epoch:
            self._epochs[slot] = epoch
            self._counts[slot] = 0.0
        self._counts[slot] += count

    def total(self) -> float:
        """Events recorded within the window ending now."""
        epoch = int(self._clock() // self._width)
        oldest = epoch - len(self._counts) + 1
        return sum(c for c, e in zip(self._counts, self._epochs, strict=True) if e >= oldest)

    def rate(self) -> float:
        """Events per second over the window ending now."""
        return self.total() / self.window


Kind = Literal["counter", "gauge", "histogram", "rate"]
M = TypeVar("M", bound="Counter | Gauge | Histogram | Rate")


@final
class MetricFamily(Generic[M]):
    """A named metric with label names; each label combination is one series.

    Get a series with :meth:`labels`; an unlabelled family has one series, :attr:`value`.
    """

    def __init__(
        self,
        registry: MetricRegistry,
        name: str,
        kind: Kind,
        help: str,
        label_names: tuple[str, ...],
        factory: Callable[[], M],
    ) -> None:
        self.name = name
        self.kind: Kind = kind
        self.help = help
        self.label_names = label_names
        self._registry = registry
        self._factory: Callable[[], M] = factory
        self._series: dict[tuple[str, ...], M] = {}

    def labels(self, *values: str) -> M:
        """The series for these label values (created on first use).

        Raises:
            ValueError: wrong number of label values.
            TooManySeriesError: a new combination and the registry is full.
        """
        series = self._series.get(values)
        if series is not None:
            return series
        if len(values) != len(self.label_names):
            raise ValueError(
                f"metric {self.name!r} has labels {self.label_names}, got {len(values)} values"
            )
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            self._registry._reserve(self.name)
            series = self._series[key] = self._factory()
        return series

    @property
    def value(self) -> M:
        """The single series of an unlabelled family."""
        return self.labels()

    def series(self) -> Iterator[tuple[tuple[str, ...], M]]:
        """Every ``(label values, series)``."""
        return iter(list(self._series.items()))


@final
@attrs.define(eq=False)
class MetricRegistry:
    """A bounded set of metric families.

    Args:
        max_series: the most series over all families (> 0).
    """

    max_series: int = 10_000
    _families: dict[str, MetricFamily[Counter | Gauge | Histogram | Rate]] = attrs.field(
        factory=dict, init=False
    )
    _count: int = attrs.field(default=0, init=False)

    def __attrs_post_init__(self) -> None:
        if isinstance(self.max_series, bool) or not isinstance(self.max_series, int):
            raise ValueError(f"max_series must be a positive int, got {self.max_series!r}")
        if self.max_series <= 0:
            raise ValueError(f"max_series must be a positive int, got {self.max_series!r}")

    def _reserve(self, name: str) -> None:
        if self._count >= self.max_series:
            raise TooManySeriesError(name, self.max_series)
        self._count += 1

    def _family(
        self,
        name: str,
        kind: Kind,
        help: str,
        labels: Sequence[str],
        factory: Callable[[], M],
    ) -> MetricFamily[M]:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"metric names match [a-zA-Z_][a-zA-Z0-9_]*, got {name!r}")
        for label in labels:
            if not isinstance(label, str) or not _NAME.match(label):
                raise ValueError(f"label names match [a-zA-Z_][a-zA-Z0-9_]*, got {label!r}")
        existing = self._families.get(name)
        if existing is not None:
            if existing.kind != kind or existing.label_names != tuple(labels):
                raise ValueError(
                    f"metric {name!r} already exists as a {existing.kind} with labels"
                    f" {existing.label_names}"
                )
            return existing  # type: ignore[return-value]
        family = MetricFamily(self, name, kind, help, tuple(labels), factory)
        self._families[name] = family  # type: ignore[assignment]
        return family

    def counter(
        self, name: str, help: str = "", labels: Sequence[str] = ()
    ) -> MetricFamily[Counter]:
        """Get or create a counter family.

        Raises:
            ValueError: a bad name, or the name exists with another kind or labels.
        """
        return self._family(name, "counter", help, labels, Counter)

    def gauge(self, name: str, help: str = "", labels: Sequence[str] = ()) -> MetricFamily[Gauge]:
        """Get or create a gauge family (errors as :meth:`counter`)."""
        return self._family(name, "gauge", help, labels, Gauge)

    def histogram(
        self,
        name: str,
        help: str = "",
        labels: Sequence[str] = (),
        *,
        lowest: float = 1e-6,
        highest: float = 1e4,
        sub_buckets: int = 16,
    ) -> MetricFamily[Histogram]:
        """Get or create a histogram family (errors as :meth:`counter` and :class:`Histogram`)."""
        Histogram(lowest=lowest, highest=highest, sub_buckets=sub_buckets)  # validate now
        return self._family(
            name,
            "histogram",
            help,
            labels,
            lambda: Histogram(lowest=lowest, highest=highest, sub_buckets=sub_buckets),
        )

    def rate(
        self,
        name: str,
        help: str = "",
        labels: Sequence[str] = (),
        *,
        window: float = 60.0,
        slots: int = 60,
        clock: Callable[[], float] = time.monotonic,
    ) -> MetricFamily[Rate]:
        """Get or create a windowed-rate family (errors as :meth:`counter` and :class:`Rate`)."""
        Rate(window=window, slots=slots, clock=clock)
        return self._family(
            name, "rate", help, labels, lambda: Rate(window=window, slots=slots, clock=clock)
        )

    def families(self) -> tuple[MetricFamily[Counter | Gauge | Histogram | Rate], ...]:
        """Every family, in creation order."""
        return tuple(self._families.values())

    @property
    def series_count(self) -> int:
        """Series held, over all families."""
        return self._count
