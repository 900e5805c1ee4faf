"""Telemetry: events, handlers that cannot block the emitter, metrics, tracing."""

from __future__ import annotations

from ._trace import TraceContext, current_trace, set_id_source, start_span

__all__ = ["TraceContext", "current_trace", "set_id_source", "start_span"]
