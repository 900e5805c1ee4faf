"""A linearizability checker for recorded histories.

Usage::

    from trio_foundation.verify.history import load_history
    from trio_foundation.verify.lincheck import check_history

    result = check_history(load_history("history.jsonl"), "cas-register", timeout=10)
    if result.verdict == "not-linearizable":
        print(result.unplaceable[0].describe())

The search is Wing-Gong/Lowe with state caching, as in Knossos and Porcupine;
per-key models are checked key by key. See ``docs/linearizability.md``. The
timeline renderers are in :mod:`trio_foundation.verify.timeline`, which
imports this package (never the other way round).
"""

from __future__ import annotations

from ._check import (
    DEFAULT_MAX_STATES,
    LinearizabilityResult,
    PartitionResult,
    Treated,
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
    "Treated",
    "Verdict",
    "check_exhaustively",
    "check_history",
    "check_operations",
    "freeze",
    "pair_operations",
    "resolve_model",
]
