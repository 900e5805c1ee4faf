"""Settings shared by tests/, property_tests/ and chaos/.

Hypothesis profiles: ``dev`` (default, thorough) and ``ci`` (selected when the
environment variable ``CI`` is set, or with ``HYPOTHESIS_PROFILE=ci``). The ``ci``
profile runs fewer examples of the *same* properties so the whole suite fits
the CI time budget; it does not weaken what is checked.
"""

from __future__ import annotations

import os

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
