"""Exact edges of the reputation scores (protocols/reputation.py) that the mutation
run of ``protocols/`` found unchecked."""

from __future__ import annotations

from trio_foundation.protocols.reputation import Reputation


def test_scores_gives_each_agents_own_score_in_the_order_asked() -> None:
    rep = Reputation(10.0, prior=0.5, prior_weight=1.0)
    rep.record("good", 1.0, now=0.0)
    rep.record("bad", 0.0, now=0.0)
    scores = rep.scores(["bad", "never", "good"], now=0.0)
    assert list(scores) == ["bad", "never", "good"]
    assert scores == {"bad": 0.25, "never": 0.5, "good": 0.75}
