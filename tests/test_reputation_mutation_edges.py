"""Exact edges of the reputation scores (protocols/reputation.py) that the mutation
run of ``protocols/`` found unchecked."""

from __future__ import annotations

import re

import pytest

from trio_foundation.protocols.reputation import Reputation


def test_scores_gives_each_agents_own_score_in_the_order_asked() -> None:
    rep = Reputation(10.0, prior=0.5, prior_weight=1.0)
    rep.record("good", 1.0, now=0.0)
    rep.record("bad", 0.0, now=0.0)
    scores = rep.scores(["bad", "never", "good"], now=0.0)
    assert list(scores) == ["bad", "never", "good"]
    assert scores == {"bad": 0.25, "never": 0.5, "good": 0.75}


def test_a_time_that_is_not_a_number_is_named() -> None:
    rep = Reputation(10.0)
    with pytest.raises(TypeError, match=r"^now must be a number, got str$"):
        rep.score("a", "soon")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "error", "text"),
    [
        ("half_life", TypeError, "half_life must be a number, got str"),
        ("prior", TypeError, "prior must be a number, got str"),
        ("prior_weight", TypeError, "prior_weight must be a number, got str"),
    ],
)
def test_a_parameter_that_is_not_a_number_is_named(
    field: str, error: type[Exception], text: str
) -> None:
    args: dict[str, object] = {"half_life": 10.0, field: "1"}
    with pytest.raises(error, match=f"^{text}$"):
        Reputation(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ({"half_life": 0}, "half_life must be > 0 seconds, got 0"),
        ({"half_life": 1.0, "prior": 1.5}, "prior must be in [0, 1], got 1.5"),
        ({"half_life": 1.0, "prior": -0.1}, "prior must be in [0, 1], got -0.1"),
        ({"half_life": 1.0, "prior_weight": -1}, "prior_weight must be >= 0, got -1"),
        ({"half_life": 1.0, "max_agents": 0}, "max_agents must be an int >= 1, got 0"),
    ],
)
def test_parameters_out_of_range_are_named(args: dict[str, object], text: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(text) + "$"):
        Reputation(**args)  # type: ignore[arg-type]


def test_the_range_bounds_are_accepted() -> None:
    r = Reputation(1.0, prior=0, prior_weight=0, max_agents=1)
    assert (r.prior, r.prior_weight, r.max_agents) == (0.0, 0.0, 1)
    assert Reputation(1.0, prior=1).prior == 1.0


@pytest.mark.parametrize("outcome", [1.5, -0.5])
def test_an_outcome_out_of_range_is_named_and_not_recorded(outcome: float) -> None:
    r = Reputation(10.0)
    with pytest.raises(ValueError, match=f"^outcome must be in \\[0, 1\\], got {outcome}$"):
        r.record("a", outcome, 0.0)
    assert r.score("a", 0.0) == 0.5  # still the prior: nothing recorded


def test_a_time_before_the_agents_last_observation_is_named() -> None:
    rep = Reputation(10.0)
    rep.record("a", 1.0, now=5.0)
    text = "now=4.0 is before the last observation of 'a' at 5.0: time must not go backwards"
    with pytest.raises(ValueError, match=f"^{re.escape(text)}$"):
        rep.record("a", 0.0, now=4.0)
    assert rep.record("a", 1.0, now=5.0) > 0.5  # the same time is not going backwards


@pytest.mark.parametrize("value", [2.0, "3", True])
def test_max_agents_that_is_not_an_int_is_named(value: object) -> None:
    with pytest.raises(
        ValueError, match=f"^max_agents must be an int >= 1, got {re.escape(repr(value))}$"
    ):
        Reputation(1.0, max_agents=value)  # type: ignore[arg-type]
