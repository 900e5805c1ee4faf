"""How often does a fresh search catch a broken variant?

A broken variant (a core with one bug put in on purpose) counts as caught only by a
search that does not know it: a fresh random seed, no example database, no remembered
failing seed. This module runs one such search of a Hypothesis state machine
(:func:`caught_by_fresh_search`), repeats searches and reports the rate with its
Wilson score interval (:func:`measure_catch_rate`, :class:`CatchRate`).

The Wilson interval is the one to quote for a rate near 0 or 1 measured over a few
hundred searches, where the normal approximation's interval runs past 100 %:
E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
JASA 22 (1927), 209-212.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import final

import attrs
from hypothesis import Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

__all__ = ["CatchRate", "caught_by_fresh_search", "measure_catch_rate", "wilson_interval"]


def wilson_interval(caught: int, runs: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate of ``caught`` in ``runs``.

    Args:
        caught: successes, ``0 <= caught <= runs``.
        runs: trials; ``0`` gives the uninformative ``(0.0, 1.0)``.
        z: the normal quantile; 1.96 (the default) gives the 95 % interval.

    Returns:
        ``(low, high)``, fractions in ``[0, 1]``.

    Raises:
        ValueError: ``runs < 0`` or ``caught`` outside ``[0, runs]``.
    """
    if runs < 0 or not 0 <= caught <= runs:
        raise ValueError(f"need 0 <= caught <= runs, got caught={caught}, runs={runs}")
    if runs == 0:
        return 0.0, 1.0
    p, n = caught / runs, runs
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def caught_by_fresh_search(
    machine: type[RuleBasedStateMachine],
    base: settings,
    expected: Sequence[str],
    *,
    name: str | None = None,
    **overrides: object,
) -> bool:
    """Run one fresh search of ``machine``: did it fail on an expected invariant?

    The search is ``run_state_machine_as_test`` under ``base`` with ``overrides``
    applied (e.g. ``max_examples=300, stateful_step_count=50``) and, always, a fresh
    random seed: no example database, generation only (no replay of stored examples,
    no shrinking), no reproduction blob.

    Args:
        machine: the state machine, built over the broken core.
        base: the Hypothesis settings to start from (the test module's profile).
        expected: invariant names; a failure counts as a catch when its text names one.
        name: how a failure for another reason names the variant (default: the
            machine's class name).
        **overrides: more Hypothesis settings for this search.

    Returns:
        ``True`` when the search failed naming an expected invariant, ``False`` when
        it found nothing.

    Raises:
        AssertionError: the search failed for another reason (its text names none of
            ``expected``): a wrong catch is a test bug, not a catch. An exception other
            than an ``AssertionError`` (or a group of them, as a trio run raises)
            propagates as it is.
    """
    chosen = settings(
        base,
        database=None,
        print_blob=False,
        phases=[Phase.generate],
        **overrides,  # type: ignore[arg-type]
    )
    try:
        run_state_machine_as_test(machine, settings=chosen)
    except (AssertionError, BaseExceptionGroup) as failure:
        text = _describe(failure)
        if not any(e in text for e in expected):
            raise AssertionError(
                f"{name or machine.__name__} failed for another reason: {text}"
            ) from failure
        return True
    return False


def _describe(failure: BaseException) -> str:
    """The failure's repr and, for an exception group, every member's, depth first."""
    parts = [repr(failure)]
    for inner in getattr(failure, "exceptions", ()):
        parts.append(_describe(inner))
    return "".join(parts)


@final
@attrs.frozen
class CatchRate:
    """``caught`` of ``runs`` fresh searches caught the variant, in ``seconds`` of wall time."""

    caught: int
    runs: int
    seconds: float

    @property
    def rate(self) -> float:
        """``caught / runs`` (0.0 for no runs)."""
        return self.caught / self.runs if self.runs else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """The 95 % Wilson score interval of :attr:`rate`."""
        return wilson_interval(self.caught, self.runs)

    def __str__(self) -> str:
        low, high = self.interval
        return (
            f"caught in {self.caught}/{self.runs} fresh runs, "
            f"Wilson 95 % [{low:.3f}, {high:.3f}] ({self.seconds:.1f} s)"
        )


def measure_catch_rate(search: Callable[[], bool], runs: int) -> CatchRate:
    """Call ``search`` ``runs`` times; count the calls that returned ``True``.

    Args:
        search: one fresh search, e.g. a closure over :func:`caught_by_fresh_search`.
        runs: how many searches, ``>= 1``.

    Returns:
        The count, with its wall time.

    Raises:
        ValueError: ``runs < 1``.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    start = time.monotonic()
    caught = sum(bool(search()) for _ in range(runs))
    return CatchRate(caught, runs, time.monotonic() - start)
