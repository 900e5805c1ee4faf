"""Helpers shared by the measurement scripts of ``benchmarks/`` (not a benchmark).

The scripts run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``
and ``from _scripts import ...`` finds this module.
"""

from __future__ import annotations

import importlib.util
import os
import signal
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


def stop_like_ctrl_c() -> None:
    """Make SIGTERM stop the script as Ctrl-C does: a ``KeyboardInterrupt``, so the
    script's ``finally`` blocks stop what it started (etcd members by pid) and it can
    print the runs that finished. SIGTERM is passed on as a SIGINT, so that inside
    ``trio.run`` trio's own handler delivers the interrupt where it is safe (raised
    from a signal handler it can land inside trio's machinery and abandon the run);
    SIGINT gets Python's handler even where it was ignored at startup (a background
    job of a shell without job control)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: os.kill(os.getpid(), signal.SIGINT))
