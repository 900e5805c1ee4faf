"""Reputation scores from contract outcomes, exponentially decayed over time.

Theory of operation
-------------------

Each outcome of a contract (1.0 done, 0.0 failed or timed out, or anything in
between for a graded result) is an observation about the contractor. An
observation made ``age`` seconds ago weighs ``2 ** (-age / half_life)``: after
one half-life it counts half, so old behaviour fades and an agent can recover
(or lose) its standing. The score is the decayed mean of the observations,
shrunk towards a ``prior`` by ``prior_weight`` pseudo-observations that never
decay (a Beta-prior estimate, as in Jøsang and Ismail's beta reputation
system, 2002)::

    score = (sum(w_i * x_i) + prior * prior_weight) / (sum(w_i) + prior_weight)

so an agent never seen scores ``prior``, a single success does not make a
perfect score, and every score is in ``[0, 1]``.

Only two decayed sums and the time of the last observation are kept per agent
(decaying both sums by the same factor keeps them exact), so memory is
``O(max_agents)``; when a new agent would exceed ``max_agents``, the agent
observed least recently is forgotten (it scores ``prior`` again).

Time is passed in explicitly (``now``, seconds of one monotonic clock); nothing
here reads a clock. Deterministic: the same calls give the same floats.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import final

__all__ = ["Reputation"]


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


@final
class Reputation:
    """Decayed reputation scores in ``[0, 1]``, one per agent.

    Args:
        half_life: seconds after which an observation weighs half; > 0.
        prior: the score of an agent with no observation, in ``[0, 1]``.
        prior_weight: how many observations the prior is worth; >= 0 (0: the
            score of an agent never seen is still ``prior``, but one
            observation then sets it outright).
        max_agents: agents remembered; >= 1.

    Raises:
        ValueError, TypeError: a bad argument, named.
    """

    def __init__(
        self,
        half_life: float,
        *,
        prior: float = 0.5,
        prior_weight: float = 1.0,
        max_agents: int = 10_000,
    ) -> None:
        self.half_life = _number("half_life", half_life)
        if not self.half_life > 0:
            raise ValueError(f"half_life must be > 0 seconds, got {half_life!r}")
        self.prior = _number("prior", prior)
        if not 0 <= self.prior <= 1:
            raise ValueError(f"prior must be in [0, 1], got {prior!r}")
        self.prior_weight = _number("prior_weight", prior_weight)
        if self.prior_weight < 0:
            raise ValueError(f"prior_weight must be >= 0, got {prior_weight!r}")
        if isinstance(max_agents, bool) or not isinstance(max_agents, int) or max_agents < 1:
            raise ValueError(f"max_agents must be an int >= 1, got {max_agents!r}")
        self.max_agents = max_agents
        # agent -> (decayed sum of outcomes, decayed sum of weights, time of last record);
        # least recently recorded first. Invariant: 0 <= outcomes <= weights.
        self._agents: OrderedDict[Hashable, tuple[float, float, float]] = OrderedDict()

    def __len__(self) -> int:
        """Agents remembered."""
        return len(self._agents)

    def __contains__(self, agent: object) -> bool:
        return agent in self._agents

    def _decay(self, since: float, now: float) -> float:
        return math.pow(2.0, -(now - since) / self.half_life)

    def _check_now(self, agent: Hashable, now: float) -> float:
        now = _number("now", now)
        known = self._agents.get(agent)
        if known is not None and now < known[2]:
            raise ValueError(
                f"now={now!r} is before the last observation of {agent!r} at {known[2]!r}:"
                " time must not go backwards"
            )
        return now

    def record(self, agent: Hashable, outcome: float, now: float) -> float:
        """Record one contract outcome of ``agent`` at time ``now``; return its new score.

        Args:
            agent: any hashable id.
            outcome: 1.0 (or ``True``) done, 0.0 (or ``False``) failed or timed
                out; anything in ``[0, 1]`` for a graded result.
            now: seconds; not before this agent's last observation.

        Raises:
            ValueError: ``outcome`` outside ``[0, 1]``, or ``now`` before the
                agent's last observation (nothing is recorded then).
            TypeError: a non-number.
        """
        if isinstance(outcome, bool):
            outcome = float(outcome)
        x = _number("outcome", outcome)
        if not 0 <= x <= 1:
            raise ValueError(f"outcome must be in [0, 1], got {outcome!r}")
        now = self._check_now(agent, now)
        known = self._agents.pop(agent, None)
        if known is None:
            total, weight = x, 1.0
        else:
            f = self._decay(known[2], now)
            total, weight = known[0] * f + x, known[1] * f + 1.0
        self._agents[agent] = (total, weight, now)
        while len(self._agents) > self.max_agents:
            self._agents.popitem(last=False)
        return self._score(total, weight)

    def _score(self, total: float, weight: float) -> float:
        denominator = weight + self.prior_weight
        if denominator <= 0:
            return self.prior
        return min(1.0, max(0.0, (total + self.prior * self.prior_weight) / denominator))

    def score(self, agent: Hashable, now: float) -> float:
        """``agent``'s score at time ``now``, in ``[0, 1]`` (``prior`` if never seen).

        Raises:
            ValueError: ``now`` before the agent's last observation.
        """
        now = self._check_now(agent, now)
        known = self._agents.get(agent)
        if known is None:
            return self.prior
        f = self._decay(known[2], now)
        return self._score(known[0] * f, known[1] * f)

    def scores(self, agents: Iterable[Hashable], now: float) -> dict[Hashable, float]:
        """:meth:`score` of each agent, in the order given."""
        return {agent: self.score(agent, now) for agent in agents}

    def forget(self, agent: Hashable) -> bool:
        """Drop ``agent``'s observations; True if it was remembered."""
        return self._agents.pop(agent, None) is not None
