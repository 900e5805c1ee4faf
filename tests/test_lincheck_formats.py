"""Reading Jepsen's formats, Jepsen's crash semantics, the models by name,
``--initial``, keyed histories, and the CLI's bad-input paths."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from trio_foundation.cli import main
from trio_foundation.verify.history import (
    HistoryError,
    HistoryEvent,
    detect_format,
    looks_independent,
    parse_edn,
    parse_jepsen_log,
    read_history,
    split_independent,
)
from trio_foundation.verify.lincheck import MODELS, check_exhaustively, check_history

EDN = """\
{:process 0, :type :invoke, :f :write, :value 1, :index 0, :time 10}
{:process :nemesis, :type :info, :f :start, :value nil}
{:process 1, :type :invoke, :f :read, :value nil, :index 1}
{:process 0, :type :ok, :f :write, :value 1, :index 2}
{:process 1, :type :ok, :f :read, :value 1, :index 3}
{:process 0, :type :invoke, :f :cas, :value [1 2], :index 4}
{:process 0, :type :ok, :f :cas, :value [1 2], :index 5}
{:process 1, :type :invoke, :f :read, :value nil, :index 6}
{:process 1, :type :ok, :f :read, :value 1, :index 7}
"""

LOG = """\
2017-01-01 12:00:00,000 INFO  jepsen.core - starting
INFO  jepsen.util - 0\t:invoke\t:write\t1
INFO  jepsen.util - 1\t:invoke\t:read\tnil
INFO  jepsen.util - 0\t:ok\t:write\t1
INFO  jepsen.util - 1\t:ok\t:read\t1
INFO  jepsen.util - :nemesis\t:info\t:start\tnil
INFO  jepsen.util - 0\t:invoke\t:cas\t[1 2]
INFO  jepsen.util - 0\t:ok\t:cas\t[1 2]
INFO  jepsen.util - 1\t:invoke\t:read\tnil
INFO  jepsen.util - 1\t:ok\t:read\t1
"""


def test_edn_is_read_with_keywords_as_strings_and_the_nemesis_skipped() -> None:
    loaded = parse_edn(EDN)
    assert loaded.format == "edn"
    assert loaded.skipped == 1
    assert loaded.events[0] == HistoryEvent(0, "invoke", "write", 1, time=10)
    assert loaded.events[4] == HistoryEvent(0, "invoke", "cas", [1, 2])
    assert loaded.lines == (1, 3, 4, 5, 6, 7, 8, 9)
    assert check_history(list(loaded.events), "cas-register").verdict == "not-linearizable"


def test_edn_wrapped_in_a_vector() -> None:
    wrapped = "[" + EDN.replace("\n{:process :nemesis", "\n;{:process :nemesis") + "]"
    loaded = parse_edn(wrapped)
    assert len(loaded.events) == 8
    assert loaded.events == parse_edn(EDN).events


def test_malformed_edn_names_its_line(tmp_path: Path) -> None:
    bad = EDN.replace("{:process 1, :type :ok, :f :read, :value 1, :index 3}", "{:process 1 :type")
    path = tmp_path / "history.edn"
    path.write_text(bad, encoding="utf-8")
    with pytest.raises(HistoryError, match=r"history\.edn line 5: not valid EDN") as info:
        read_history(path)
    assert info.value.line == 5


def test_jepsen_log_is_read_and_other_lines_skipped() -> None:
    loaded = parse_jepsen_log(LOG)
    assert loaded.format == "jepsen-log"
    assert loaded.skipped == 1  # the nemesis line; other loggers' lines are not operations
    assert [e.type for e in loaded.events][:4] == ["invoke", "invoke", "ok", "ok"]
    assert loaded.events[4].value == [1, 2]
    assert loaded.lines[0] == 2
    edn = [attrs.evolve(e, time=None) for e in parse_edn(EDN).events]
    assert list(loaded.events) == edn


def test_format_is_detected_from_the_content() -> None:
    assert detect_format('\n{"process": 0, "type": "invoke", "f": "read"}') == "jsonl"
    assert detect_format(EDN) == "edn"
    assert detect_format("[" + EDN + "]") == "edn"
    assert detect_format(LOG) == "jepsen-log"
    with pytest.raises(HistoryError, match="cannot tell the history's format"):
        detect_format("hello\n")


def test_timed_out_operations_follow_jepsen() -> None:
    log = (
        "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
        "INFO  jepsen.util - 0\t:info\t:write\t:timed-out\n"
        "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 1\t:fail\t:read\t:timed-out\n"
        # process 0 goes on after its crash: a fresh process
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 0\t:ok\t:read\t3\n"
        "INFO  jepsen.util - 1\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 1\t:info\t:read\t:timed-out\n"
    )
    events = list(parse_jepsen_log(log).events)
    result = check_history(events, "register")
    assert result.verdict == "linearizable"
    assert result.treated.indeterminate == 1  # the write: pending for ever
    assert result.treated.ignored == 2  # the failed read and the timed-out read
    assert result.treated.reincarnated == 1  # process 0's read after its crash
    assert check_exhaustively(events, "register") == "linearizable"


def test_a_reused_process_number_is_a_fresh_lock_owner() -> None:
    events = [
        HistoryEvent(0, "invoke", "acquire"),
        HistoryEvent(0, "info", "acquire"),
        HistoryEvent(0, "invoke", "release"),  # a new client: it holds nothing
        HistoryEvent(0, "ok", "release"),
    ]
    assert check_history(events, "lock").verdict == "not-linearizable"
    assert check_exhaustively(events, "lock") == "not-linearizable"


@pytest.mark.parametrize(
    ("model", "events", "expected"),
    [
        (
            "mutex",
            [
                HistoryEvent(0, "invoke", "acquire"),
                HistoryEvent(0, "ok", "acquire"),
                HistoryEvent(1, "invoke", "release"),  # anyone may release a mutex
                HistoryEvent(1, "ok", "release"),
                HistoryEvent(2, "invoke", "acquire"),
                HistoryEvent(2, "ok", "acquire"),
            ],
            "linearizable",
        ),
        (
            "mutex",
            [
                HistoryEvent(0, "invoke", "acquire"),
                HistoryEvent(0, "ok", "acquire"),
                HistoryEvent(1, "invoke", "acquire"),
                HistoryEvent(1, "ok", "acquire"),
            ],
            "not-linearizable",
        ),
        (
            "unordered-queue",
            [
                HistoryEvent(0, "invoke", "enqueue", 1),
                HistoryEvent(0, "ok", "enqueue", 1),
                HistoryEvent(0, "invoke", "enqueue", 2),
                HistoryEvent(0, "ok", "enqueue", 2),
                HistoryEvent(1, "invoke", "dequeue"),
                HistoryEvent(1, "ok", "dequeue", 2),  # any order
                HistoryEvent(1, "invoke", "dequeue"),
                HistoryEvent(1, "ok", "dequeue", 1),
            ],
            "linearizable",
        ),
        (
            "fifo-queue",
            [
                HistoryEvent(0, "invoke", "enqueue", 1),
                HistoryEvent(0, "ok", "enqueue", 1),
                HistoryEvent(0, "invoke", "enqueue", 2),
                HistoryEvent(0, "ok", "enqueue", 2),
                HistoryEvent(1, "invoke", "dequeue"),
                HistoryEvent(1, "ok", "dequeue", 2),
            ],
            "not-linearizable",
        ),
        (
            "unordered-queue",
            [
                HistoryEvent(0, "invoke", "enqueue", 1),
                HistoryEvent(0, "ok", "enqueue", 1),
                HistoryEvent(1, "invoke", "dequeue"),
                HistoryEvent(1, "ok", "dequeue", 1),
                HistoryEvent(1, "invoke", "dequeue"),
                HistoryEvent(1, "ok", "dequeue", 1),  # only one was enqueued
            ],
            "not-linearizable",
        ),
    ],
)
def test_jepsen_model_family(model: str, events: list[HistoryEvent], expected: str) -> None:
    assert check_history(events, model).verdict == expected
    assert check_exhaustively(events, model) == expected


def test_queue_is_fifo_queue() -> None:
    assert MODELS["queue"].step is MODELS["fifo-queue"].step


def test_every_model_is_checked_key_by_key() -> None:
    # A cas-register history over two keys: each key alone is linearizable,
    # but the two keys together as one register would not be.
    events = [
        HistoryEvent(0, "invoke", "write", 1, key="a"),
        HistoryEvent(0, "ok", "write", 1, key="a"),
        HistoryEvent(1, "invoke", "write", 2, key="b"),
        HistoryEvent(1, "ok", "write", 2, key="b"),
        HistoryEvent(0, "invoke", "cas", [1, 3], key="a"),
        HistoryEvent(0, "ok", "cas", [1, 3], key="a"),
        HistoryEvent(1, "invoke", "read", None, key="b"),
        HistoryEvent(1, "ok", "read", 2, key="b"),
    ]
    result = check_history(events, "cas-register")
    assert result.verdict == "linearizable"
    assert [p.key for p in result.partitions] == ["a", "b"]
    assert check_exhaustively(events, "cas-register") == "linearizable"


def test_initial_value_and_string_append_make_porcupines_kv() -> None:
    kv = MODELS["kv"].with_initial("")
    events = [
        HistoryEvent(0, "invoke", "get", None, key="k"),
        HistoryEvent(0, "ok", "get", "", key="k"),
        HistoryEvent(1, "invoke", "append", "x 1 y", key="k"),
        HistoryEvent(1, "ok", "append", "x 1 y", key="k"),
        HistoryEvent(1, "invoke", "append", "x 2 y", key="k"),
        HistoryEvent(1, "ok", "append", "x 2 y", key="k"),
        HistoryEvent(0, "invoke", "get", None, key="k"),
        HistoryEvent(0, "ok", "get", "x 1 yx 2 y", key="k"),
    ]
    assert check_history(events, kv).verdict == "linearizable"
    assert check_exhaustively(events, kv) == "linearizable"
    # From null, the first get would have to return null.
    assert check_history(events, "kv").verdict == "not-linearizable"
    assert MODELS["set"].with_initial([1, 2]).init == frozenset({1, 2})
    with pytest.raises(ValueError, match="mutex starts free"):
        MODELS["mutex"].with_initial(3)


# --- the command line ---------------------------------------------------------


def _file(tmp_path: Path, name: str, text: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(("name", "text"), [("h.edn", EDN), ("h.log", LOG)])
def test_cli_reads_jepsen_formats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str
) -> None:
    path = _file(tmp_path, name, text)
    assert main(["lincheck", "--model", "cas-register", path]) == 1
    out = capsys.readouterr().out
    assert "cannot linearize: p1 read() -> 1  (lines" in out


def test_cli_format_flag_overrides_detection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, "h.txt", EDN)
    assert main(["lincheck", "--model", "cas-register", "--format", "jsonl", path]) == 2
    assert "h.txt line 1: not valid JSON" in capsys.readouterr().err


def test_cli_says_how_many_operations_crash_semantics_touched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = (
        "INFO  jepsen.util - 0\t:invoke\t:write\t3\n"
        "INFO  jepsen.util - 0\t:info\t:write\t:timed-out\n"
        "INFO  jepsen.util - 0\t:invoke\t:read\tnil\n"
        "INFO  jepsen.util - 0\t:fail\t:read\t:timed-out\n"
    )
    path = _file(tmp_path, "etcd.log", log)
    assert main(["lincheck", "--model", "register", path]) == 0
    out = capsys.readouterr().out
    assert (
        "crash semantics: 1 indeterminate (info) operations left pending for ever; "
        "1 operations of a process number reused after its crash counted as a fresh process; "
        "1 failed or timed-out operations ignored as having no effect"
    ) in out


def test_cli_initial(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edn = (
        '{:process 0, :type :invoke, :f :get, :key "k", :value nil}\n'
        '{:process 0, :type :ok, :f :get, :key "k", :value ""}\n'
    )
    path = _file(tmp_path, "kv.txt", edn)
    assert main(["lincheck", "--model", "kv", path]) == 1
    assert main(["lincheck", "--model", "kv", "--initial", '""', path]) == 0
    capsys.readouterr()
    assert main(["lincheck", "--model", "kv", "--initial", "{oops", path]) == 2
    assert "--initial must be JSON" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["", "\n  \n\n"])
def test_cli_empty_history_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    path = _file(tmp_path, "empty.jsonl", text)
    assert main(["lincheck", "--model", "register", path]) == 2
    err = capsys.readouterr().err
    assert "empty.jsonl" in err and ("empty" in err or "no operations" in err)
    assert main(["lincheck", "--model", "register", "--format", "jsonl", path]) == 2
    assert "empty.jsonl: the history has no operations to check" in capsys.readouterr().err


def test_cli_binary_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "history.bin", b"\x89PNG\r\n\x1a\n\x00\xff\xfe")
    assert main(["lincheck", "--model", "register", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("foundation: error: ")
    assert "history.bin: not a text history" in err and "\n" == err[-1] and err.count("\n") == 1


def test_cli_unwritable_svg_keeps_the_verdicts_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _file(tmp_path, "h.edn", EDN)
    svg = str(tmp_path / "no-such-dir" / "t.svg")
    assert main(["lincheck", "--model", "cas-register", path, "--svg", svg]) == 1
    captured = capsys.readouterr()
    assert "not-linearizable" in captured.out
    assert f"warning: cannot write the timeline to {svg}" in captured.err


def test_cli_explains_a_stale_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 40 concurrent writers keep the search busy past its first budget; the
    # read of 5 at the end is stale: p40 read 1 after write(5) had returned.
    rows = [HistoryEvent(p, "invoke", "write", p) for p in range(40)]
    rows += [HistoryEvent(p, "ok", "write", p) for p in range(40)]
    rows += [
        HistoryEvent(40, "invoke", "read", None),
        HistoryEvent(41, "invoke", "read", None),
        HistoryEvent(40, "ok", "read", 1),
        HistoryEvent(41, "ok", "read", 0),  # concurrent with the read of 1: hard
        HistoryEvent(42, "invoke", "write", 77),
        HistoryEvent(42, "ok", "write", 77),
        HistoryEvent(43, "invoke", "read", None),
        HistoryEvent(43, "ok", "read", 5),  # stale: write(77) came after write(5)
    ]
    path = _file(tmp_path, "h.jsonl", "".join(json.dumps(e.to_json()) + "\n" for e in rows))
    assert main(["lincheck", "--model", "register", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "cannot linearize: p43 read() -> 5  (lines 87-88)"
    assert out[2] == "  a stale value: every operation that can set it had returned when"
    assert out[3] == "  p40 read() -> 1  (lines 81-83)"  # the first to leave another value
    assert out[5] == "  the last to set it: p5 write(5) -> ok  (lines 6-46)"


def jsonl(rows: list[dict[str, object]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_jsonl_accepts_and_ignores_jepsens_metadata(tmp_path: Path) -> None:
    # As Jepsen writes operations, exported to JSON: index, time, error, node.
    rows: list[dict[str, object]] = [
        {"index": 0, "time": 10, "process": 0, "type": "invoke", "f": "write", "value": 1},
        {"index": 1, "time": 12, "process": 0, "type": "ok", "f": "write", "value": 1},
        {"index": 2, "time": 13, "process": 1, "type": "invoke", "f": "write", "value": 2},
        {"index": 3, "time": 19, "process": 1, "type": "info", "f": "write", "value": 2,
         "error": ["timeout", "no reply in 5 s"], "node": "n3"},
        {"index": 4, "time": 20, "process": 2, "type": "invoke", "f": "read", "node": "n1"},
        {"index": 5, "time": 21, "process": 2, "type": "ok", "f": "read", "value": 2},
    ]  # fmt: skip
    plain = [{k: v for k, v in row.items() if k not in ("index", "error", "node")} for row in rows]
    with_meta = read_history(_file(tmp_path, "meta.jsonl", jsonl(rows)))
    without = read_history(_file(tmp_path, "plain.jsonl", jsonl(plain)))
    assert with_meta.events == without.events
    assert with_meta.events[0].time == 10
    assert check_history(list(with_meta.events), "register").verdict == "linearizable"


@pytest.mark.parametrize(
    ("field", "typo", "message"),
    [
        ("process", "proces", "unknown field(s) 'proces' (did you mean 'process'?)"),
        ("type", "tyep", "unknown field(s) 'tyep' (did you mean 'type'?)"),
        ("value", "vaule", "unknown field(s) 'vaule' (did you mean 'value'?)"),
        (None, "indx", "unknown field(s) 'indx' (did you mean 'index'?)"),
        (None, "latency", "unknown field(s) 'latency'; known: process, type, f, key, value, time"),
    ],
)
def test_jsonl_typos_are_named_with_their_line(
    tmp_path: Path, field: str | None, typo: str, message: str
) -> None:
    rows: list[dict[str, object]] = [
        {"process": 0, "type": "invoke", "f": "write", "value": 1},
        {"process": 0, "type": "ok", "f": "write", "value": 1},
    ]
    rows[1][typo] = rows[1].pop(field) if field else 7
    path = _file(tmp_path, "h.jsonl", jsonl(rows))
    with pytest.raises(HistoryError) as info:
        read_history(path)
    assert str(info.value).startswith(f"{path} line 2: {message}")
    assert info.value.line == 2


def test_jsonl_missing_field_and_bad_index(tmp_path: Path) -> None:
    path = _file(tmp_path, "h.jsonl", jsonl([{"process": 0, "f": "read"}]))
    with pytest.raises(HistoryError, match=r"h\.jsonl line 1: missing field\(s\) 'type'$"):
        read_history(path)
    row = {"process": 0, "type": "invoke", "f": "read", "index": "3"}
    path = _file(tmp_path, "h.jsonl", jsonl([row]))
    with pytest.raises(HistoryError, match=r"line 1: 'index' must be an integer, got '3'"):
        read_history(path)


def test_edn_ignores_other_fields_but_not_a_misspelt_required_one(tmp_path: Path) -> None:
    extra = EDN.replace(":index 2}", ':index 2, :node "n1", :error [:timeout], :latency 3}')
    assert parse_edn(extra).events == parse_edn(EDN).events
    typo = EDN.replace("{:process 0, :type :ok, :f :write", "{:proces 0, :type :ok, :f :write")
    path = _file(tmp_path, "h.edn", typo)
    with pytest.raises(
        HistoryError, match=r"h\.edn line 4: field 'proces': did you mean 'process'"
    ):
        read_history(path)


def test_cli_typo_is_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[dict[str, object]] = [{"process": 0, "typ": "invoke", "f": "read"}]
    path = _file(tmp_path, "h.jsonl", jsonl(rows))
    assert main(["lincheck", "--model", "register", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"foundation: error: {path} line 1: unknown field(s) 'typ' ")
    assert "(did you mean 'type'?)" in err and err.count("\n") == 1


# A jepsen.independent history: one cas-register per key, values [key value].
INDEPENDENT = """\
[{:process 0, :type :invoke, :f :write, :value [:x 1], :index 0}
{:process 1, :type :invoke, :f :write, :value [:y 5], :index 1}
{:process 0, :type :ok, :f :write, :value [:x 1], :index 2}
{:process 1, :type :ok, :f :write, :value [:y 5], :index 3}
{:process :nemesis, :type :info, :f :start, :value nil, :index 4}
{:process 0, :type :invoke, :f :cas, :value [:x [1 2]], :index 5}
{:process 2, :type :invoke, :f :read, :value [:y nil], :index 6}
{:process 0, :type :ok, :f :cas, :value [:x [1 2]], :index 7}
{:process 2, :type :ok, :f :read, :value [:y 5], :index 8}
{:process 1, :type :invoke, :f :write, :value [:y 6], :index 9}
{:process 1, :type :info, :f :write, :value :timed-out, :error :timeout, :index 10}
{:process 2, :type :invoke, :f :read, :value [:x nil], :index 11}
{:process 2, :type :ok, :f :read, :value [:x READ], :index 12}]
"""


def test_independent_values_split_into_keys() -> None:
    loaded = parse_edn(INDEPENDENT.replace("READ", "1"))
    assert looks_independent(loaded.events)
    split = split_independent(loaded.events, loaded.lines)
    assert split[:2] == (
        HistoryEvent(0, "invoke", "write", 1, key="x"),
        HistoryEvent(1, "invoke", "write", 5, key="y"),
    )
    assert split[4] == HistoryEvent(0, "invoke", "cas", [1, 2], key="x")
    # an info completion that carries no pair keeps its invocation's key
    assert split[9] == HistoryEvent(1, "info", "write", "timed-out", key="y")
    result = check_history(list(split), "cas-register")
    assert result.verdict == "not-linearizable" and result.failing_key == "x"
    good = split_independent(parse_edn(INDEPENDENT.replace("READ", "2")).events)
    assert check_history(list(good), "cas-register").verdict == "linearizable"
    # Checked whole, the pairs are values of one register: a different question.
    whole = check_history(list(loaded.events), "cas-register")
    assert not whole.partitioned


def test_independent_detection_needs_an_unambiguous_history() -> None:
    events = list(parse_edn(INDEPENDENT.replace("READ", "1")).events)
    # A plain cas-register history of cas operations only: pairs everywhere.
    cas_only = [ev for ev in events if ev.f == "cas"]
    assert not looks_independent(cas_only)
    assert split_independent(cas_only)[0].key == "x"  # but it can be asked for
    # A plain register history: reads are invoked with null.
    assert not looks_independent(parse_edn(EDN).events)
    # Keys already given.
    keyed = [attrs.evolve(ev, key="k") for ev in events]
    assert not looks_independent(keyed)
    with pytest.raises(HistoryError, match="already has a key"):
        split_independent(keyed)


def test_independent_mismatch_names_the_line() -> None:
    bad = INDEPENDENT.replace("READ", "1").replace(
        ":value [:y 5], :index 8", ":value [:z 5], :index 8"
    )
    loaded = parse_edn(bad)
    with pytest.raises(HistoryError, match=r"^line 9: process 2 completed with \['z', 5\]"):
        split_independent(loaded.events, loaded.lines)


def test_cli_independent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _file(tmp_path, "h.edn", INDEPENDENT.replace("READ", "1"))
    assert main(["lincheck", "--model", "cas-register", path]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("not-linearizable: model cas-register, 6 operations, 2 keys,")
    assert out[1] == (
        "values split as jepsen.independent [key value] pairs, 2 keys "
        "(detected; --no-independent to check the values whole)"
    )
    assert "key 'x' is not linearizable" in out
    assert main(["lincheck", "--model", "cas-register", "--no-independent", path]) == 1
    assert "2 keys" not in capsys.readouterr().out
    # asked for on a history that is not one
    plain = _file(tmp_path, "plain.edn", EDN)
    assert main(["lincheck", "--model", "cas-register", "--independent", plain]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"foundation: error: {plain} line 1: an independent history's values are "
        "[key value] pairs with a string or number key, got 1\n"
    )
