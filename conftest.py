"""Settings shared by tests/, property_tests/ and chaos/.

Hypothesis profiles: ``dev`` (default, thorough) and ``ci`` (selected when the
environment variable ``CI`` is set, or with ``HYPOTHESIS_PROFILE=ci``). The ``ci``
profile runs fewer examples of the *same* properties so the whole suite fits
the CI time budget; it does not weaken what is checked.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=False,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
)


# CI's TLC runs over specs/ (tests/tlc_project_checks.py): started in the background
# as soon as collection ends, when their two tests are selected; the tests move to
# the end of the session and wait for them there.
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    import tlc_project_checks

    waiting = [i for i in items if tlc_project_checks.wanted([i.nodeid])]
    if waiting:
        items[:] = [i for i in items if i not in waiting] + waiting


def pytest_collection_finish(session: pytest.Session) -> None:
    import tlc_project_checks

    runs = tlc_project_checks.wanted(i.nodeid for i in session.items)
    if runs and not session.config.option.collectonly:
        tlc_project_checks.start(runs)


def pytest_sessionfinish(session: pytest.Session) -> None:
    import tlc_project_checks

    tlc_project_checks.stop()
