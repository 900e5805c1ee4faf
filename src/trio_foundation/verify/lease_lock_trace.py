"""Former home of the lease lock's trace validation: see ``verify/traces/lease_lock.py``.

Kept so that existing imports keep working; new code imports the module above.
"""

from __future__ import annotations

from .traces.lease_lock import (
    ACTIONS,
    LeaseLockCluster,
    SpecParams,
    TraceCheck,
    TraceStep,
    check_trace_module,
    check_traces,
    effects_of,
    random_trace,
    trace_config,
    trace_module,
    write_trace_module,
)

__all__ = [
    "ACTIONS",
    "LeaseLockCluster",
    "SpecParams",
    "TraceCheck",
    "TraceStep",
    "check_trace_module",
    "check_traces",
    "effects_of",
    "random_trace",
    "trace_config",
    "trace_module",
    "write_trace_module",
]
