"""Unit tests of protocols/reputation.py: decayed scores from contract outcomes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_foundation.protocols.reputation import Reputation


def test_an_agent_never_seen_scores_the_prior() -> None:
    rep = Reputation(60.0, prior=0.3)
    assert rep.score("x", 0.0) == 0.3
    assert len(rep) == 0


def test_outcomes_move_the_score_and_the_prior_shrinks_it() -> None:
    rep = Reputation(60.0, prior=0.5, prior_weight=1.0)
    assert rep.record("a", True, 0.0) == pytest.approx((1 + 0.5) / 2)
    assert rep.record("a", 1.0, 0.0) == pytest.approx((2 + 0.5) / 3)
    assert rep.record("b", False, 0.0) == pytest.approx(0.5 / 2)
    assert rep.score("a", 0.0) > rep.score("b", 0.0)


def test_an_observation_weighs_half_after_one_half_life() -> None:
    rep = Reputation(10.0, prior=0.5, prior_weight=1.0)
    rep.record("a", 0.0, 0.0)  # a failure at t=0
    rep.record("a", 1.0, 10.0)  # a success one half-life later
    # failure weighs 0.5, success 1: (1 + 0.5) / (1.5 + 1)
    assert rep.score("a", 10.0) == pytest.approx(1.5 / 2.5)
    # long after, everything has faded back to the prior
    assert rep.score("a", 10_000.0) == pytest.approx(0.5)


def test_recovery_a_failing_agent_that_now_succeeds_climbs() -> None:
    rep = Reputation(5.0)
    for t in range(5):
        rep.record("a", False, float(t))
    low = rep.score("a", 5.0)
    for t in range(5, 30):
        rep.record("a", True, float(t))
    assert rep.score("a", 30.0) > 0.9 > 0.2 > low


def test_memory_is_bounded_least_recently_observed_first() -> None:
    rep = Reputation(10.0, max_agents=2)
    rep.record("a", 1.0, 0.0)
    rep.record("b", 1.0, 1.0)
    rep.record("a", 1.0, 2.0)
    rep.record("c", 0.0, 3.0)  # evicts b, observed least recently
    assert len(rep) == 2 and "b" not in rep and "a" in rep and "c" in rep
    assert rep.score("b", 4.0) == rep.prior
    assert rep.forget("a") and not rep.forget("a")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"half_life": 0}, ValueError, "half_life must be > 0"),
        ({"half_life": float("inf")}, ValueError, "half_life must be finite"),
        ({"half_life": "1"}, TypeError, "half_life must be a number"),
        ({"half_life": 1, "prior": 1.5}, ValueError, r"prior must be in \[0, 1\]"),
        ({"half_life": 1, "prior_weight": -1}, ValueError, "prior_weight must be >= 0"),
        ({"half_life": 1, "max_agents": 0}, ValueError, "max_agents must be an int >= 1"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Reputation(**kwargs)  # type: ignore[arg-type]


def test_bad_outcomes_and_time_going_backwards_are_refused_and_change_nothing() -> None:
    rep = Reputation(10.0)
    rep.record("a", 1.0, 5.0)
    before = rep.score("a", 5.0)
    with pytest.raises(ValueError, match=r"outcome must be in \[0, 1\], got 2"):
        rep.record("a", 2, 6.0)
    with pytest.raises(ValueError, match=r"before the last observation of 'a' at 5\.0"):
        rep.record("a", 1.0, 4.0)
    with pytest.raises(ValueError, match="time must not go backwards"):
        rep.score("a", 4.0)
    with pytest.raises(TypeError, match="outcome must be a number"):
        rep.record("a", "good", 6.0)  # type: ignore[arg-type]
    assert rep.score("a", 5.0) == before


@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.floats(0, 1), st.floats(0, 100)), max_size=30),
    st.floats(0.1, 1000),
)
def test_scores_stay_in_the_unit_interval(
    events: list[tuple[str, float, float]], half_life: float
) -> None:
    rep = Reputation(half_life, prior_weight=0.0)
    now = 0.0
    for agent, outcome, dt in events:
        now += dt
        assert 0.0 <= rep.record(agent, outcome, now) <= 1.0
        assert 0.0 <= rep.score(agent, now + 1.0) <= 1.0
