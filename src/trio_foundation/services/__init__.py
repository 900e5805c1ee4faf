"""Nursery-scoped services: components with dependencies, started and stopped as an app.

Public names:

* :class:`Component` — the protocol: ``name``, ``dependencies``,
  ``async def run(self, *, task_status)`` that calls ``task_status.started(handle)`` when
  ready, optionally ``async def health(self) -> bool``.
* :class:`App` / :func:`open_app` — start components in dependency order (each once its
  predecessors are ready, with a start timeout), stop them in reverse.
* :class:`Supervised` — a component restarted under its own supervisor.
* :func:`dependency_order` — the start order (a cycle is an error naming it).
* Errors :class:`AppStartError`, :class:`ComponentFailedError`.

See ``docs/supervision.md``.
"""

from __future__ import annotations

from ._app import App, AppStartError, ComponentFailedError, dependency_order, open_app
from ._component import Component, Supervised

__all__ = [
    "App",
    "AppStartError",
    "Component",
    "ComponentFailedError",
    "Supervised",
    "dependency_order",
    "open_app",
]
