"""Helpers shared by the measurement scripts of ``benchmarks/`` (not a benchmark).

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``
and ``from _scripts import ...`` finds this module.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def load_module(name: str, path: Path) -> ModuleType:
    """Import the test module at ``path`` under ``name`` (registered in ``sys.modules``,
    so that its dataclasses and Hypothesis state machines can find it), e.g. to run the
    very search a test runs."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, f"cannot load {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load() -> str:
    """The load averages as ``uptime`` shows them (the machine may be shared)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
