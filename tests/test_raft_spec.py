"""specs/Raft.tla and specs/RaftTrace.tla under TLC.

Fast (CI, marker ``tlc``): every invariant has a mutant in specs/broken/, every mutant and
reachability config declares what TLC must report, and the trace spec accepts a hand-written
run of the protocol and rejects tampered copies of it at the tampered step.

Slow (``pytest -m slow``, minutes each; ``foundation specs check Raft`` and ``foundation specs
check --mutants --reach Raft`` run the same checks): every CI config holds, every mutant is
caught naming the invariant its config declares, every reachability config is reached.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trio_foundation.verify.tlc import TLCResult, TLCStatus, run_tlc

pytestmark = pytest.mark.tlc

SPECS = Path(__file__).resolve().parent.parent / "specs"
SPEC = SPECS / "Raft.tla"
TRACE_SPEC = SPECS / "RaftTrace.tla"

CONFIGS = sorted(SPECS.glob("Raft.cfg")) + sorted(
    c for c in SPECS.glob("Raft.*.cfg") if not c.name.startswith("Raft.full")
)
MUTANTS = sorted((SPECS / "broken").glob("Raft.*.cfg"))
REACH = sorted((SPECS / "reach").glob("Raft.*.cfg"))
INVARIANTS = (
    "ElectionSafety",
    "LogMatching",
    "LeaderCompleteness",
    "StateMachineSafety",
    "LinearizableReads",
    "TermsOpenedByCandidates",
)
# What the issue asks the mutants to cover, by name.
REQUIRED_MUTANTS = {
    "commit_old_term": {"LeaderCompleteness", "StateMachineSafety"},
    "vote_before_persist": {"ElectionSafety"},
    "read_without_quorum": {"LinearizableReads"},
}


def _declared(config: Path) -> list[str]:
    return re.findall(r"^\\\* expect-violation: (\w+)", config.read_text(), re.MULTILINE)


def test_every_invariant_has_a_mutant() -> None:
    declared = {name for config in MUTANTS for name in _declared(config)}
    assert set(INVARIANTS) <= declared, set(INVARIANTS) - declared


def test_the_required_mutants_exist_and_declare_their_invariant() -> None:
    by_name = {c.name.removeprefix("Raft.").removesuffix(".cfg"): c for c in MUTANTS}
    for mutant, invariants in REQUIRED_MUTANTS.items():
        assert mutant in by_name, mutant
        assert set(_declared(by_name[mutant])) & invariants, mutant
        assert f'Variant = "{mutant}"' in by_name[mutant].read_text()


def test_every_variant_config_declares_one_check_it_runs() -> None:
    for config in MUTANTS + REACH:
        declared = _declared(config)
        assert len(declared) == 1, config.name
        text = config.read_text()
        assert re.search(rf"^\s+{declared[0]}$|^PROPERTY {declared[0]}$", text, re.MULTILINE), (
            config.name
        )
    for config in REACH:
        assert _declared(config)[0].startswith("Never"), config.name


# ---------------------------------------------------------------------------
# Trace validation with a hand-written trace: PreVote, an election, a client
# request replicated to one follower and committed.


def _rv(frm: str, to: str, term: int, pre: bool, last_index: int = 0, last_term: int = 0) -> str:
    return (
        f'[type |-> "RequestVote", pre_vote |-> {str(pre).upper()}, term |-> {term}, '
        f'from |-> "{frm}", to |-> "{to}", last_log_index |-> {last_index}, '
        f"last_log_term |-> {last_term}]"
    )


def _rvr(frm: str, to: str, term: int, pre: bool, granted: bool) -> str:
    return (
        f'[type |-> "RequestVoteResponse", pre_vote |-> {str(pre).upper()}, term |-> {term}, '
        f'from |-> "{frm}", to |-> "{to}", granted |-> {str(granted).upper()}]'
    )


def _ae(frm: str, to: str, term: int, prev: int, prev_term: int, entries: str, commit: int) -> str:
    return (
        f'[type |-> "AppendEntries", term |-> {term}, from |-> "{frm}", to |-> "{to}", '
        f"prev_log_index |-> {prev}, prev_log_term |-> {prev_term}, entries |-> {entries}, "
        f"leader_commit |-> {commit}, read_id |-> 0]"
    )


def _aer(frm: str, to: str, term: int, success: bool, index: int) -> str:
    return (
        f'[type |-> "AppendEntriesResponse", term |-> {term}, from |-> "{frm}", to |-> "{to}", '
        f"success |-> {str(success).upper()}, match_index |-> {index}, read_id |-> 0]"
    )


def _step(
    node: str,
    action: str,
    *,
    msg: str = '"none"',
    sent: tuple[str, ...] = (),
    role: str,
    term: int,
    commit: int = 0,
    vote: str = "nil",
    log: str = "<<>>",
) -> str:
    disk = f'term |-> {term}, vote |-> "{vote}", log |-> {log}'
    effects = [f'[kind |-> "persist", {disk}]'] + [f'[kind |-> "send", msg |-> {m}]' for m in sent]
    return (
        f'[node |-> "{node}", action |-> "{action}", msg |-> {msg}, '
        f'sent |-> {{{", ".join(sent)}}}, role |-> "{role}", term |-> {term}, '
        f"commit |-> {commit}, persisted |-> [{disk}], "
        f"effects |-> <<{', '.join(effects)}>>]"
    )


def election_and_commit() -> list[str]:
    """s1 wins a pre-vote and a vote from s2, replicates one entry to s2 and commits it."""
    return [
        _step("s1", "Timeout", sent=(_rv("s1", "s2", 1, True), _rv("s1", "s3", 1, True)),
              role="PreCandidate", term=0),
        _step("s2", "Receive", msg=_rv("s1", "s2", 1, True),
              sent=(_rvr("s2", "s1", 1, True, True),), role="Follower", term=0),
        _step("s1", "Receive", msg=_rvr("s2", "s1", 1, True, True),
              sent=(_rv("s1", "s2", 1, False), _rv("s1", "s3", 1, False)),
              role="Candidate", term=1, vote="s1"),
        _step("s2", "Receive", msg=_rv("s1", "s2", 1, False),
              sent=(_rvr("s2", "s1", 1, False, True),), role="Follower", term=1, vote="s1"),
        _step("s1", "Receive", msg=_rvr("s2", "s1", 1, False, True),
              role="Leader", term=1, vote="s1"),
        _step("s1", "ClientRequest", role="Leader", term=1, vote="s1", log="<<1>>"),
        _step("s1", "AppendEntries",
              sent=(_ae("s1", "s2", 1, 0, 0, "<<1>>", 0), _ae("s1", "s3", 1, 0, 0, "<<1>>", 0)),
              role="Leader", term=1, vote="s1", log="<<1>>"),
        _step("s2", "Receive", msg=_ae("s1", "s2", 1, 0, 0, "<<1>>", 0),
              sent=(_aer("s2", "s1", 1, True, 1),), role="Follower", term=1, vote="s1",
              log="<<1>>"),
        _step("s1", "Receive", msg=_aer("s2", "s1", 1, True, 1),
              role="Leader", term=1, vote="s1", log="<<1>>", commit=1),
    ]  # fmt: skip


def trace_module(traces: list[list[str]]) -> str:
    body = ",\n    ".join("<<" + ",\n      ".join(trace) + ">>" for trace in traces)
    return (
        "---- MODULE RaftTraceData ----\n"
        'TraceServers == {"s1", "s2", "s3"}\n'
        'TraceNil == "nil"\n'
        'TraceFeatures == {"prevote"}\n'
        f"Traces == <<\n    {body}>>\n"
        "====\n"
    )


TRACE_CONFIG = """\
SPECIFICATION TraceSpec
CONSTANTS
    Server <- TraceServers
    Nil <- TraceNil
    Features <- TraceFeatures
    MaxTerm = 100
    MaxLogLen = 100
    MaxMsgs = 100
    MaxReads = 100
    MaxRestarts = 100
    Faults = {"crash", "duplicate"}
    Variant = "correct"
INVARIANTS
    ElectionSafety
    LogMatching
    LeaderCompleteness
    StateMachineSafety
    LinearizableReads
    TermsOpenedByCandidates
    SendsDurable
"""


def check(traces: list[list[str]], tmp_path: Path) -> TLCResult:
    config = tmp_path / "RaftTrace.cfg"
    config.write_text(TRACE_CONFIG)
    return run_tlc(
        TRACE_SPEC,
        config,
        workers=1,
        timeout=120,
        extra_files={"RaftTraceData.tla": trace_module(traces)},
    )


def _stuck_at(result: TLCResult) -> tuple[int, int]:
    last = result.counterexample[-1].state
    return int(last["tr"]), int(last["pos"])  # type: ignore[call-overload]


def test_a_run_of_the_protocol_is_accepted(tmp_path: Path) -> None:
    result = check([election_and_commit()], tmp_path)
    assert result.status is TLCStatus.OK, result.error_message
    # the initial state, one state per record, one per effect replayed after it
    effects = sum(record.count("[kind |-> ") for record in election_and_commit())
    assert result.depth == 1 + len(election_and_commit()) + effects


def _tampered(position: int, old: str, new: str) -> list[str]:
    trace = election_and_commit()
    assert old in trace[position]
    trace[position] = trace[position].replace(old, new, 1)
    return trace


TAMPERED = {
    # s2 sends its vote before making it durable (persisted vote still "nil")
    "vote not persisted": (3, 'vote |-> "s1"', 'vote |-> "nil"'),
    # a pre-vote that takes the term
    "pre-vote bumps the term": (1, "term |-> 0, commit", "term |-> 1, commit"),
    # the leader commits before any follower holds the entry
    "early commit": (6, "commit |-> 0, persisted", "commit |-> 1, persisted"),
    # the new leader's log gains an entry nobody proposed
    "entry out of nowhere": (4, "log |-> <<>>], effects", "log |-> <<1>>], effects"),
}


@pytest.mark.parametrize("name", sorted(TAMPERED))
def test_a_tampered_trace_is_rejected_at_the_tampered_step(name: str, tmp_path: Path) -> None:
    position, old, new = TAMPERED[name]
    result = check([election_and_commit(), _tampered(position, old, new)], tmp_path)
    assert result.status is TLCStatus.DEADLOCK, (result.status, result.error_message)
    assert _stuck_at(result) == (2, position)  # records 1..position matched, not the next


def test_a_vote_sent_before_it_is_persisted_violates_sends_durable(tmp_path: Path) -> None:
    """s2's effects list its granted vote before the Persist of the vote."""
    trace = election_and_commit()
    persist = '[kind |-> "persist", term |-> 1, vote |-> "s1", log |-> <<>>]'
    send = f'[kind |-> "send", msg |-> {_rvr("s2", "s1", 1, False, True)}]'
    assert f"<<{persist}, {send}>>" in trace[3]
    trace[3] = trace[3].replace(f"<<{persist}, {send}>>", f"<<{send}, {persist}>>")
    result = check([trace], tmp_path)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, (result.status, result.error_message)
    assert result.violated == "SendsDurable"
    assert _stuck_at(result) == (1, 4)  # the fourth record's effects


# ---------------------------------------------------------------------------
# The model checks proper: minutes each, outside the default run.


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spec_holds(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=1780)
    assert result.status is TLCStatus.OK, result.error_message
    assert result.distinct_states > 10_000


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("config", MUTANTS, ids=[c.name for c in MUTANTS])
def test_mutant_is_caught(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=1780)
    assert result.status is TLCStatus.INVARIANT_VIOLATED, result.error_message
    assert result.violated in _declared(config)


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("config", REACH, ids=[c.name for c in REACH])
def test_interesting_state_is_reachable(config: Path) -> None:
    result = run_tlc(SPEC, config, workers=2, timeout=1780)
    assert result.status in (TLCStatus.INVARIANT_VIOLATED, TLCStatus.PROPERTY_VIOLATED), (
        result.status,
        result.error_message,
    )
    assert result.violated in _declared(config)
