"""A linearizability checker for recorded histories.

Usage::

    from trio_foundation.verify.history import load_history
    from trio_foundation.verify.lincheck import check_history

    result = check_history(load_history("history.jsonl"), "cas-register", timeout=10)
    if result.verdict == "not-linearizable":
        print(result.unplaceable[0].describe())

The search is Wing-Gong/Lowe with state caching, as in Knossos and Porcupine;
per-key models are checked key by key. See ``docs/linearizability.md``.
"""

from __future__ import annotations

from typing import Any

from ._check import (
    DEFAULT_MAX_STATES,
    LinearizabilityResult,
    PartitionResult,
    Verdict,
    check_history,
    check_operations,
    resolve_model,
)
from ._models import MODELS, Model, StepFunction
from ._ops import Operation, Status, freeze, pair_operations
from ._reference import check_exhaustively

__all__ = [
    "DEFAULT_MAX_STATES",
    "MODELS",
    "LinearizabilityResult",
    "Model",
    "Operation",
    "PartitionResult",
    "Status",
    "StepFunction",
    "Verdict",
    "check_exhaustively",
    "check_history",
    "check_operations",
    "freeze",
    "pair_operations",
    "resolve_model",
]


def __getattr__(name: str) -> Any:
    # The timeline renderers live in trio_foundation.verify.timeline (which
    # imports this package); offer them here too, loaded on first use.
    if name in ("render_timeline_svg", "render_timeline_html"):
        from .. import timeline

        return getattr(timeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
