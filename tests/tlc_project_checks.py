"""CI's TLC runs over the project's specs/, started in the background when pytest starts.

``foundation specs check`` over every default config, then ``foundation specs check
--mutants --reach``, take about five minutes of two cores, and most of the rest of the
suite keeps only one core busy. So when the two tests of ``tests/test_cli_specs.py``
that check these runs are selected, ``conftest.py`` starts this module as a
subprocess as soon as collection ends (:func:`start`), at the lowest CPU priority
(``nice 19``: it takes only the CPU the other tests leave idle), and moves the two
tests to the end of the session, where they wait for it (:func:`results`) and check
every config's result. The runs are the same commands as before, with the same
options; only when they run changed.

Run as a script (``python tests/tlc_project_checks.py OUT.json``) it makes the two
runs through the CLI's entry point, recording every TLC result, and writes them to
``OUT.json`` (the CLI's output goes to stdout).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SPECS = Path(__file__).resolve().parent.parent / "specs"
# As CI ran them in the tests before: two checks at a time, one worker each. The
# per-check time limit (a guard against a hang, not a check) is higher than the 1200 s
# it was: at nice 19 a check may get no CPU while the other tests keep both cores busy.
OPTIONS = ("--jobs", "2", "--workers", "1", "--timeout", "3000")
RUNS = {
    "default": ("specs", "check", "--dir", str(SPECS), *OPTIONS),
    "variants": ("specs", "check", "--mutants", "--reach", "--dir", str(SPECS), *OPTIONS),
}
# The tests that read the runs' results (their node ids end so), and the run each reads.
TESTS = {
    "test_cli_specs.py::test_the_projects_default_configs_pass": "default",
    "test_cli_specs.py::test_the_projects_mutants_and_reachability_checks_are_caught": "variants",
}

_running: tuple[subprocess.Popen[bytes], Path] | None = None


def wanted(nodeids: Iterable[str]) -> list[str]:
    """The runs (keys of :data:`RUNS`) the tests with these node ids read, in order."""
    names = {run for nodeid in nodeids for test, run in TESTS.items() if nodeid.endswith(test)}
    return [name for name in RUNS if name in names]


def start(names: Iterable[str] = tuple(RUNS)) -> None:
    """Start the runs ``names`` one after the other in a subprocess, at ``nice 19``, in its
    own process group; once (a second call changes nothing)."""
    global _running
    if _running is not None:
        return
    workdir = Path(tempfile.mkdtemp(prefix="foundation-tlc-ci-"))
    with open(workdir / "output.txt", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, __file__, str(workdir / "results.json"), *names],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            process_group=0,  # so stop() also ends the JVMs it started
        )
    _running = (process, workdir)


def results(name: str, timeout: float) -> tuple[dict[str, Any], str]:
    """Wait for the runs (starting every one if nothing did) and return run ``name``'s
    result and the CLI's output.

    Returns:
        ``{"code": the CLI's exit code, "results": {config path: result}}`` (each result
        a dict of :class:`TLCResult`'s fields, the counterexample as its length) and
        the CLI's output.
    """
    start()
    assert _running is not None
    process, workdir = _running
    try:
        # Nothing else is left to run: the remaining checks get their full share of the
        # CPU again (only root may raise a priority; without other load nice changes nothing).
        os.setpriority(os.PRIO_PGRP, process.pid, 0)
    except (PermissionError, ProcessLookupError):
        pass
    code = process.wait(timeout=timeout)
    output = (workdir / "output.txt").read_text(encoding="utf-8", errors="replace")
    assert code == 0, f"the runs' script failed with exit code {code}:\n{output[-4000:]}"
    found = json.loads((workdir / "results.json").read_text(encoding="utf-8"))
    assert name in found, f"run {name} was not started: {sorted(found)}"
    return found[name], output


def stop() -> None:
    """End the runs if they are still going (the session ended early) and remove their files."""
    global _running
    if _running is None:
        return
    process, workdir = _running
    _running = None
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    shutil.rmtree(workdir, ignore_errors=True)


def _end_with_parent(parent: int) -> None:
    """End this process group (this script and its JVMs) when pytest is gone (killed
    without its session's end running :func:`stop`)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _run_all(out: Path, names: Iterable[str]) -> None:
    import trio_foundation.cli.specs as cli_specs
    from trio_foundation.cli import main
    from trio_foundation.verify.tlc import TLCResult

    os.nice(19)  # inherited by every JVM: only the CPU the other tests leave idle
    threading.Thread(target=_end_with_parent, args=(os.getppid(),), daemon=True).start()
    real_run_tlc = cli_specs.run_tlc
    found: dict[str, Any] = {}
    for name in names:
        argv = RUNS[name]
        recorded: dict[str, Any] = {}

        def recording_run_tlc(
            module: Path, config: Path, _into: dict[str, Any] = recorded, **kwargs: Any
        ) -> TLCResult:
            result = real_run_tlc(module, config, **kwargs)
            _into[str(config.resolve())] = {
                "status": result.status.name,
                "violated": result.violated,
                "counterexample": len(result.counterexample),
                "distinct_states": result.distinct_states,
                "states_generated": result.states_generated,
                "seconds": result.seconds,
                "error_message": result.error_message,
            }
            return result

        cli_specs.run_tlc = recording_run_tlc  # type: ignore[assignment]
        code = main(list(argv))
        sys.stdout.flush()
        found[name] = {"code": code, "results": recorded}
    out.write_text(json.dumps(found, indent=1), encoding="utf-8")


if __name__ == "__main__":
    _run_all(Path(sys.argv[1]), sys.argv[2:])
