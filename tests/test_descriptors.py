"""tests/descriptors.py: a descriptor left open is reported after the full wait,
and a failing test's later checks (Hypothesis shrinking it) do not wait it again."""

from __future__ import annotations

import gc
import socket

import descriptors
import pytest


class _Clock:
    """Stands in for the ``time`` module: ``sleep`` advances ``monotonic``."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_leak_is_reported_once_waited_for_then_without_the_full_wait(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(descriptors, "time", clock)
    monkeypatch.setattr(descriptors, "_leak_found_in", None, raising=False)
    monkeypatch.setattr(gc, "collect", lambda: 0)  # keep the test fast
    monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::test_leaky (call)")
    baseline = descriptors.open_descriptors()
    with socket.socket() as leaked:
        found = f"fd {leaked.fileno()} -> {descriptors.open_descriptors()[leaked.fileno()]}"
        assert descriptors.left_open(baseline) == [found]
        assert 5.0 <= clock.now < 5.1  # the full wait: it could have been transient
        for _ in range(3):  # shrink steps of the same failing test
            start = clock.now
            assert descriptors.left_open(baseline) == [found]
            assert clock.now - start < 0.3
        # another test gets the full wait again
        monkeypatch.setenv("PYTEST_CURRENT_TEST", "tests/x.py::test_other (call)")
        start = clock.now
        assert descriptors.left_open(baseline) == [found]
        assert clock.now - start >= 5.0
    assert descriptors.left_open(baseline) == []  # closed: nothing reported
