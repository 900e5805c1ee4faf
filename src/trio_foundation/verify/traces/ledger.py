"""Ledger trace validation: runs of the real ledger node → ``specs/LedgerTrace.tla`` → TLC.

:func:`simulated_run` runs the real :class:`~trio_foundation.protocols.ledger.Ledger`
behind the real :class:`~trio_foundation.protocols.auction.LedgerNode` (node 0) with
four clients (nodes 1..4) in the deterministic simulator
(:class:`~trio_foundation.runtime.sim.Simulation`, every node a
:class:`~trio_foundation.runtime.driver.NodeDriver`). The clients speak the node's
protocol (a :class:`~trio_foundation.protocols.auction.LedgerRequest` answered by a
:class:`~trio_foundation.protocols.auction.LedgerAnswer`): a treasury mints and
burns; three account holders transfer (some with an idempotency key), hold,
settle and release, and also send what the ledger must refuse — overdrafts, an
unknown account, an amount out of range (0, negative, ``2**63``, a bool), a
mint by a non-authority, a reused key, an account opened twice, a settle or a
release of a hold that is closed or was never opened. Each client re-sends a
command until it is answered, and sometimes once more after (a retry: a keyed
transfer or a re-issued hold must not apply twice; a second settle is a double
settle). Balance reads come as client requests. The schedule, drawn from the
seed, loses, duplicates, delays and reorders messages and crashes the ledger
node, which restarts from its last ``Persist``. Every transition is recorded
through the drivers' trace hook, the ledger node's with the projection
:func:`project`.

**Durability.** :class:`~trio_foundation.protocols.auction.LedgerNode` persists
nothing: it is documented as the in-process ledger or the front of the
replicated one, and gives a snapshot on demand
(:meth:`~trio_foundation.protocols.auction.LedgerNode.snapshot_persistent`). A
ledger node that is restarted by the runtime must persist what it answers;
:class:`DurableLedgerNode` is that front, built from the real node: after each
input it emits ``Persist(snapshot)`` whenever the snapshot changed, *before*
the node's answer, and its restart hands the snapshot to
:meth:`LedgerNode.restore <trio_foundation.protocols.auction.LedgerNode.restore>`
(which re-checks conservation and the journal replay). The bare node comes
back from a crash as it was built, every balance at 0; with ``durable=False``
the trace is rejected already at its first ``Ok`` (``AnswersDurable``: nothing
it answers is durable).

:func:`trace_of` maps the ledger node's transitions to records of
``specs/LedgerTrace.tla``, one per step of ``specs/Ledger.tla``;
:func:`check_traces` writes many runs into one module ``LedgerTraceData`` and
asks TLC, in one run, whether each is a behaviour of ``Ledger`` that keeps its
safety invariants, ``KeyedOnce`` (a keyed transfer applies once) and
``AnswersDurable`` (persist before answer).

The mapping
-----------

The trace starts at the node's first start, once the accounts are open: the
spec's ``Init`` (every account at 0, nothing held, an empty journal). A node
transition becomes:

* a command that **changed** the logged state → the spec action of its type
  (:class:`~trio_foundation.protocols.ledger.Mint` → ``Mint(a, n)``,
  ``Burn`` → ``Burn``, ``Transfer`` → ``Transfer(src, dst, n)``, ``Hold`` →
  ``PutHold(h, a, n)``, ``Settle`` → ``Settle(h, payee, n)``, ``Release`` →
  ``Release(h)``), whatever the answer said; then one ``Checkpoint`` record per
  entry the core folded into its base (the core appends, then folds the oldest
  entry when its window is full: the action's record logs the window before the
  fold). Anything else that changes the logged state (an ``Open``, a restart
  that did not restore the state) is an ``Ignored`` record: the spec stutters,
  the trace spec rejects it;
* a transfer **refused** ``insufficient_funds`` between two accounts
  → ``RefuseOverdraft(src, dst, n)``, whose guard checks the balance really was
  short — unless the answer is the cached one of a keyed retry (the core does
  not look at the balance again: nothing);
* a **balance read** answered → ``Read`` (the spec stutters; the balance must be
  the spec's);
* any other input the core consumed without a change (a refusal, a retry
  answered from the cache or the open hold) → nothing, or an ``Ignored`` record
  carrying its effects when it answered ``Ok`` (the answer must be durable).

Each record logs, after its step, every balance, the open holds, the
checkpoint base, the journal window, the entries written since the trace
began and the core's supply counter, read through the ledger's public API
(:meth:`~trio_foundation.protocols.ledger.Ledger.balances`, ``holds``,
``checkpoint``, ``journal``, ``seq``, ``supply``). The last record of a
transition also logs its ``Persist`` effects (the seq of the snapshot's
journal) and its answers (``Ok`` with its seq, or a refusal) *in the order the
core emitted them*; the trace spec reads them in that order against the last
persisted seq and checks ``AnswersDurable``: a node that sends an ``Ok`` before
the ``Persist`` of the entry is rejected, although the node driver executes the
``Persist`` first anyway.

Abstractions (where the core is finer than the spec)
----------------------------------------------------

* **Accounts and holds.** The spec's ``Accounts`` are the account names
  (:data:`ACCOUNTS`), all open from ``Init``; the core opens them first (one
  ``open`` journal entry each, before the trace begins), so the trace's
  ``seq`` counts entries from there and an ``open`` entry is not in the spec's
  window (nor its fold a ``Checkpoint``: it adds a zero balance the spec's base
  already has). An account missing from the core's base is logged at 0. Hold
  ids are strings in the core and ``1..H`` in the spec (:data:`HOLDS`, in
  order); journal entries of other ids are logged with hold 0.
* **Entries.** The core's :class:`~trio_foundation.protocols.ledger.Entry`
  names the counterparty only for transfers and settles and records a
  release's amount; the spec's ``Entry`` repeats the account as ``other`` for
  mint, burn, hold and release and records a release with amount 0 (the
  amount is the hold's). The mapping writes the spec's form.
* **Amounts.** The spec's amounts are ``1..MaxAmount`` (0 too for a settle)
  and its supply at most ``MaxSupply``; the core's bound is ``2**63 - 1``. The
  clients move amounts of at most 60 credits, so the trace config sets both
  bounds far above anything a run reaches (TLC's integers are 32-bit);
  out-of-range amounts are refused by the core and change nothing.
* **Refusals** other than a transfer's overdraft (unknown account or hold, a
  closed hold, a bad amount, a non-authority, a reused key, an account that
  exists, an overdraft by a burn or a hold) are not steps of the spec: they
  must change nothing, which the mapping checks by what it logs.
* **Idempotency keys** are not in ``Ledger.tla``: a ``Transfer`` record carries
  its key, and the trace spec checks ``KeyedOnce`` beside the spec's invariants
  (a second ``Transfer`` record under a key: a retry applied again). A re-issued
  hold or a second settle needs no such check: the spec's ``PutHold`` and
  ``Settle`` refuse them.
* **Not in the spec**: the messages and their faults (the network delivers a
  command zero, one or more times; the spec sees each application), the
  clients, and the node's crash and restart (the spec's ledger never loses
  state: a restart must bring back the state it had).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, final

import attrs

from ...protocols.auction import LedgerAnswer, LedgerNode, LedgerRequest
from ...protocols.effects import ClientRequest, Effect, Persist, Reply, Send, SetTimer
from ...protocols.ledger import (
    MAX_AMOUNT,
    Burn,
    Command,
    Entry,
    ErrorResult,
    Hold,
    Ledger,
    LedgerConfig,
    Mint,
    Ok,
    Open,
    Release,
    Settle,
    Transfer,
    replay,
)
from ...runtime.driver import Start, Transition
from ...runtime.faults import (
    Crash,
    FaultEvent,
    Restart,
    SetDropRate,
    SetDuplicateRate,
    SetReorderRate,
    UniformDelay,
)
from ...runtime.sim import SimConfig, Simulation
from ...runtime.transport import Envelope
from ..tla_values import Record, to_tla
from .lease_lock import TraceCheck, check_record_traces, traces_tla

__all__ = [
    "ACCOUNTS",
    "HOLDS",
    "INVARIANTS",
    "DurableLedgerNode",
    "LedgerView",
    "NodeFactory",
    "RunParams",
    "TraceClient",
    "check_trace_module",
    "check_traces",
    "ledger_config",
    "project",
    "simulated_run",
    "simulated_trace",
    "trace_config",
    "trace_module",
    "trace_of",
    "write_trace_module",
]

LEDGER: Final = 0
TREASURY: Final = 1
ACCOUNTS: Final = ("alice", "bob", "carol")
"""The spec's ``Accounts``: opened before the trace begins; clients 2, 3, 4 hold them."""
HOLDS: Final = tuple(f"h{k}" for k in range(1, 9))
"""The hold ids the clients use; the spec's ``HoldIds`` are ``1..len(HOLDS)`` in this order."""
AUTHORITY: Final = "treasury"
STRANGER: Final = "zed"
INVARIANTS: Final = (
    "HoldsSettledOnce",
    "Conservation",
    "NonNegative",
    "JournalReplays",
    "KeyedOnce",
    "AnswersDurable",
    "FollowsSpec",
)
"""What the trace config checks along every trace (the first one a state breaks is named)."""
_BIG: Final = 1_000_000_000  # the spec's MaxAmount, MaxSupply and MaxOps in the trace config


def ledger_config() -> LedgerConfig:
    """The ledger of the traced runs: a journal window of 3 entries, so the core folds
    entries into its base (a spec ``Checkpoint``) on most commands."""
    return LedgerConfig(authorities=(AUTHORITY,), journal_window=3)


def _opened(config: LedgerConfig) -> Ledger:
    ledger = Ledger(config)
    for account in ACCOUNTS:
        ledger.apply(Open(account))
    return ledger


# ---------------------------------------------------------------------- the node


@final
class DurableLedgerNode:
    """The real :class:`~trio_foundation.protocols.auction.LedgerNode`, durable: each
    input that changed the ledger's snapshot emits ``Persist(snapshot)`` before the
    node's answer; a restart restores the last one (module docstring, "Durability").

    Args:
        ledger: the ledger (already holding the accounts).
    """

    def __init__(self, ledger: Ledger) -> None:
        self.node = LedgerNode(ledger)
        self._stored: bytes | None = None

    @property
    def ledger(self) -> Ledger:
        """The ledger the node serves."""
        return self.node.ledger

    def _durable(self, effects: list[Effect]) -> list[Effect]:
        snapshot = self.ledger.snapshot()
        if snapshot == self._stored:
            return effects
        self._stored = snapshot
        return [Persist(snapshot), *effects]

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        """Persist the initial snapshot (first start only: a restart restored it)."""
        return self._durable(self.node.on_start(now, rng))

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        """Apply a :class:`LedgerRequest`; persist, then answer."""
        return self._durable(self.node.on_message(now, src, msg))

    def on_timer(self, now: float, name: str) -> list[Effect]:
        """No timers."""
        return self.node.on_timer(now, name)

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        """A balance read (``op="balance"``), answered by the node."""
        return self.node.on_client(now, request)

    def snapshot_persistent(self) -> Any:
        """The ledger's snapshot bytes."""
        return self.node.snapshot_persistent()

    def restore(self, snapshot: Any) -> None:
        """Load the ledger from the last persisted snapshot."""
        self.node.restore(snapshot)
        self._stored = snapshot


NodeFactory = Callable[[Ledger], Any]
"""Builds the ledger node core around a ledger (tests pass deliberately broken nodes)."""


# ---------------------------------------------------------------------- clients


@final
class TraceClient:
    """A client of the traced runs (an effects core; persists nothing).

    Node 1 is the treasury (mints, burns, and now and then a mint for an unknown
    account, of a bad amount or by a non-authority); nodes 2..4 hold
    ``ACCOUNTS[node - 2]`` and transfer, hold, settle and release, valid or not
    (module docstring). A command is re-sent every 0.3 s until it is
    answered (at most 4 times), and once more after its answer with probability
    ``retry``; then the next one is drawn, ``ops`` in all.
    """

    def __init__(self, node: int, ops: int, retry: float) -> None:
        self.node = node
        self.ops = ops
        self.retry = retry
        self.rng = random.Random(0)
        self.pending: Command | None = None
        self.sends = 0
        self.done = 0
        self.keys = 0
        self.used_keys: list[Transfer] = []
        self.mine: list[str] = []  # holds this client opened (answered Ok)

    @property
    def account(self) -> str:
        return ACCOUNTS[self.node - 2] if self.node >= 2 else AUTHORITY

    def on_start(self, now: float, rng: random.Random) -> list[Effect]:
        self.rng = rng
        return [SetTimer("next", rng.uniform(0.0, 0.3))]

    def on_message(self, now: float, src: int, msg: Any) -> list[Effect]:
        if isinstance(msg, LedgerAnswer) and self.pending is not None:
            if msg.command == self.pending:
                command, self.pending = self.pending, None
                if isinstance(command, Hold) and isinstance(msg.result, Ok):
                    self.mine.append(command.hold)
                self.done += 1
                if self.rng.random() < self.retry:
                    return [Send(LEDGER, LedgerRequest(msg.command))]
        return []

    def on_timer(self, now: float, name: str) -> list[Effect]:
        if self.pending is not None and self.sends < 4:
            self.sends += 1
            return [Send(LEDGER, LedgerRequest(self.pending)), SetTimer("next", 0.3)]
        if self.done + (self.pending is not None) >= self.ops:
            return []
        self.pending = self._draw()
        self.sends = 1
        return [Send(LEDGER, LedgerRequest(self.pending)), SetTimer("next", 0.3)]

    def _draw(self) -> Command:
        rng = self.rng
        if self.node == TREASURY:
            kind = rng.choices(("mint", "burn", "bad"), (6, 3, 1))[0]
            account = rng.choice(ACCOUNTS)
            if kind == "mint":
                return Mint(AUTHORITY, account, rng.randint(5, 20))
            if kind == "burn":
                return Burn(AUTHORITY, account, rng.randint(1, 8))
            return rng.choice(
                (
                    Mint(AUTHORITY, STRANGER, 5),
                    Mint(AUTHORITY, account, rng.choice((0, -3, MAX_AMOUNT + 1))),
                    Mint("mallory", account, 5),
                    Burn(account, account, 1),
                )
            )
        own = self.account
        other = rng.choice([a for a in ACCOUNTS if a != own])
        hold = rng.choice(HOLDS)
        if self.mine and rng.random() < 0.8:
            hold = rng.choice(self.mine)
        kind = rng.choices(
            ("transfer", "overdraft", "hold", "settle", "release", "bad"), (5, 2, 3, 3, 2, 2)
        )[0]
        if kind in ("transfer", "overdraft"):
            n = rng.randint(1, 6) if kind == "transfer" else rng.randint(30, 60)
            key = ""
            if rng.random() < 0.5:
                self.keys += 1
                key = f"{own}-{self.keys}"
            command = Transfer(own, other, n, key)
            if key:
                self.used_keys.append(command)
            return command
        if kind == "hold":
            fresh = [h for h in HOLDS if h not in self.mine]
            if fresh and rng.random() < 0.8:
                hold = rng.choice(fresh)
            return Hold(hold, own, rng.randint(1, 5))
        if kind == "settle":
            return Settle(hold, rng.choice(ACCOUNTS), rng.randint(0, 5))
        if kind == "release":
            return Release(hold)
        bad: list[Command] = [
            Transfer(own, STRANGER, 1),
            Hold(hold, STRANGER, 1),
            Transfer(own, other, rng.choice((0, -2, MAX_AMOUNT + 1, True))),
            Release("h-none"),
            Open(own),
        ]
        if self.used_keys:
            reused = rng.choice(self.used_keys)
            bad.append(Transfer(reused.src, reused.dst, reused.amount + 1, reused.key))
        return rng.choice(bad)

    def on_client(self, now: float, request: ClientRequest) -> list[Effect]:
        return [Reply(request.client, "clients take no requests", ok=False)]

    def snapshot_persistent(self) -> Any:
        return None

    def restore(self, snapshot: Any) -> None:
        raise RuntimeError("clients persist nothing")


# ---------------------------------------------------------------------- projection


@final
@attrs.frozen
class LedgerView:
    """What the trace reads of a ledger after a step (its public API).

    Attributes:
        balances: ``(account, balance)`` in opening order.
        holds: the open holds as ``(id, account, amount)``.
        supply: :attr:`Ledger.supply`.
        seq: :attr:`Ledger.seq`.
        journal: :attr:`Ledger.journal`.
        base_balances: the checkpoint base's balances.
        base_holds: the checkpoint base's open holds as ``(id, account, amount)``.
    """

    balances: tuple[tuple[str, int], ...]
    holds: tuple[tuple[str, str, int], ...]
    supply: int
    seq: int
    journal: tuple[Entry, ...]
    base_balances: tuple[tuple[str, int], ...]
    base_holds: tuple[tuple[str, str, int], ...]


def project(core: Any) -> LedgerView | None:
    """The drivers' projection: a :class:`LedgerView` of any core with a ``ledger``
    attribute holding a :class:`Ledger`, ``None`` for other cores."""
    ledger = getattr(core, "ledger", None)
    if not isinstance(ledger, Ledger):
        return None
    base_bal, base_holds = ledger.checkpoint()
    return LedgerView(
        balances=tuple(ledger.balances().items()),
        holds=tuple((h, a, n) for h, (a, n) in ledger.holds().items()),
        supply=ledger.supply,
        seq=ledger.seq,
        journal=ledger.journal,
        base_balances=tuple(base_bal.items()),
        base_holds=tuple((h, a, n) for h, (a, n) in base_holds.items()),
    )


# ---------------------------------------------------------------------- the mapping


def _hold_id(hold: str) -> int:
    return HOLDS.index(hold) + 1 if hold in HOLDS else 0


def _entry(e: Entry) -> Record:
    """The spec's ``Entry`` of a core entry (module docstring, "Entries")."""
    other = e.other or e.account
    amount = 0 if e.kind == "release" else e.amount
    return Record(kind=e.kind, acct=e.account, other=other, amt=amount, hold=_hold_id(e.hold))


def _balances(pairs: Sequence[tuple[str, int]]) -> Record:
    found = dict(pairs)
    return Record((a, found.get(a, 0)) for a in ACCOUNTS)


@attrs.define
class _Mapper:
    """The state of :func:`trace_of` along one run."""

    offset: int  # the core's seq when the trace began (the accounts' open entries)
    records: list[Record] = attrs.Factory(list)
    keyed: set[str] = attrs.Factory(set)  # keys of transfers the ledger has answered
    seqs: dict[bytes, int] = attrs.Factory(dict)  # snapshot -> its seq (cache)

    def logged(
        self, view: LedgerView, *, journal: Sequence[Entry] | None = None, base: Any = None
    ) -> Record:
        """The logged state of ``view`` (with another journal or base, for a record
        before the core's fold)."""
        base_bal, base_holds = base if base is not None else (view.base_balances, view.base_holds)
        held = {h: n for h, _, n in base_holds}
        entries = view.journal if journal is None else journal
        return Record(
            bal=_balances(view.balances),
            held=frozenset(Record(h=_hold_id(h), a=a, n=n) for h, a, n in view.holds if h in HOLDS),
            base=Record(bal=_balances(base_bal), held=tuple(held.get(h, 0) for h in HOLDS)),
            window=tuple(_entry(e) for e in entries if e.kind != "open"),
            seq=view.seq - self.offset,
            supply=view.supply,
        )

    def snapshot_seq(self, data: Any) -> int:
        if not isinstance(data, bytes):
            return -1
        if data not in self.seqs:
            ledger = Ledger()
            try:
                ledger.restore(data)
            except ValueError:
                self.seqs[data] = -1
            else:
                self.seqs[data] = ledger.seq - self.offset
        return self.seqs[data]

    def effects(self, t: Transition) -> tuple[Record, ...]:
        """The transition's ``Persist`` effects and answers, in emitted order."""
        out: list[Record] = []
        for e in t.effects:
            if isinstance(e, Persist):
                out.append(Record(kind="persist", seq=self.snapshot_seq(e.data)))
            elif isinstance(e, Send) and isinstance(e.msg, LedgerAnswer):
                result = e.msg.result
                ok = isinstance(result, Ok)
                seq = result.seq - self.offset if isinstance(result, Ok) else 0
                out.append(Record(kind="send", ok=ok, seq=seq))
        return tuple(out)

    def add(
        self, action: str, state: Record, effects: tuple[Record, ...] = (), **params: Any
    ) -> None:
        fields = {"a": "", "b": "", "n": 0, "h": 0, "key": "", **params}
        self.records.append(Record(action=action, **fields, **state, effects=effects))


def _answer(t: Transition) -> Any:
    return next(
        (
            e.msg.result
            for e in t.effects
            if isinstance(e, Send) and isinstance(e.msg, LedgerAnswer)
        ),
        None,
    )


def _step(command: Command) -> tuple[str, dict[str, Any]] | None:
    """The spec action of a command that changed the ledger, with its parameters."""
    if isinstance(command, Mint):
        return "Mint", {"a": command.account, "n": command.amount}
    if isinstance(command, Burn):
        return "Burn", {"a": command.account, "n": command.amount}
    if isinstance(command, Transfer):
        params = {"a": command.src, "b": command.dst, "n": command.amount, "key": command.key}
        return "Transfer", params
    if isinstance(command, Hold):
        return "PutHold", {"h": _hold_id(command.hold), "a": command.account, "n": command.amount}
    if isinstance(command, Settle):
        h = _hold_id(command.hold)
        return "Settle", {"h": h, "b": command.payee, "n": command.amount}
    if isinstance(command, Release):
        return "Release", {"h": _hold_id(command.hold)}
    return None


def _map_command(
    m: _Mapper, t: Transition, command: Command, before: LedgerView, after: LedgerView
) -> None:
    effects = m.effects(t)
    result = _answer(t)
    cached = isinstance(command, Transfer) and command.key != "" and command.key in m.keyed
    shaped = isinstance(result, Ok) or (
        isinstance(result, ErrorResult) and result.code not in ("invalid_amount", "bad_command")
    )
    if isinstance(command, Transfer) and command.key and shaped:
        m.keyed.add(command.key)  # the core remembers it with its result
    final = m.logged(after)
    if final == m.logged(before):
        if (
            isinstance(command, Transfer)
            and isinstance(result, ErrorResult)
            and result.code == "insufficient_funds"
            and not cached
            and command.src != command.dst
            and {command.src, command.dst} <= set(ACCOUNTS)
        ):
            n = command.amount
            m.add("RefuseOverdraft", final, effects, a=command.src, b=command.dst, n=n)
        elif any(e["kind"] == "send" and e["ok"] for e in effects):
            m.add("Ignored", final, effects)
        return
    step = _step(command)
    if step is None:
        m.add("Ignored", final, effects)
        return
    action, params = step
    unfolded = [*before.journal, *(e for e in after.journal if e.seq > before.seq)]
    kept = after.journal[0].seq if after.journal else after.seq + 1
    folded = [e for e in unfolded if e.seq < kept]
    visible = [e for e in folded if e.kind != "open"]
    if not visible:
        m.add(action, final, effects, **params)
        return
    # the record of the action: appended, not yet folded (the base as before)
    base_bal, base_holds = dict(before.base_balances), {h: (a, n) for h, a, n in before.base_holds}
    base: Any = (before.base_balances, before.base_holds)
    m.add(action, m.logged(after, journal=unfolded, base=base), **params)
    for k, entry in enumerate(visible):
        if k == len(visible) - 1:
            m.add("Checkpoint", final, effects)
            break
        # a core that folded several spec entries at once: one Checkpoint each
        upto = [e for e in folded if e.seq <= entry.seq]
        bal, held = replay(base_bal, base_holds, upto)
        base = (tuple(bal.items()), tuple((h, a, n) for h, (a, n) in held.items()))
        rest = [e for e in unfolded if e.seq > entry.seq]
        m.add("Checkpoint", m.logged(after, journal=rest, base=base))


def trace_of(transitions: Sequence[Transition]) -> list[Record]:
    """Map a run's transitions to ``LedgerTrace`` records (module docstring).

    Args:
        transitions: every transition of a run in the order taken (other nodes'
            are skipped); the ledger node's (node 0) recorded with :func:`project`.

    Returns:
        The records (possibly none: a run in which nothing changed).

    Raises:
        ValueError: a ledger transition recorded without the projection, a first
            transition that is not its start, or a start that is not the spec's
            ``Init`` (every account open at 0, nothing held).
    """
    m: _Mapper | None = None
    before: LedgerView | None = None
    for t in transitions:
        if t.node != LEDGER:
            continue
        after = t.state
        if not isinstance(after, LedgerView):
            raise ValueError("a ledger transition recorded without the projection")
        if m is None or before is None:
            if not isinstance(t.input, Start):
                raise ValueError(f"the ledger's first transition is not its start: {t.input!r}")
            if (
                tuple(a for a, _ in after.balances) != ACCOUNTS
                or any(b for _, b in after.balances)
                or after.holds
                or after.supply
            ):
                raise ValueError(f"the ledger did not start with {ACCOUNTS} open at 0: {after!r}")
            m, before = _Mapper(offset=after.seq), after
            continue
        inp = t.input
        if isinstance(inp, Envelope) and isinstance(inp.msg, LedgerRequest):
            _map_command(m, t, inp.msg.command, before, after)
        elif isinstance(inp, ClientRequest):
            reply = next((e for e in t.effects if isinstance(e, Reply)), None)
            final = m.logged(after)
            if final != m.logged(before):
                m.add("Ignored", final, m.effects(t))
            elif reply is not None and reply.ok and inp.value in ACCOUNTS:
                m.add("Read", final, a=inp.value, n=reply.value)
        else:
            final = m.logged(after)
            effects = m.effects(t)
            if final != m.logged(before) or any(e["kind"] == "send" and e["ok"] for e in effects):
                m.add("Ignored", final, effects)
        before = after
    return [] if m is None else m.records


# ---------------------------------------------------------------------- runs


@final
@attrs.frozen
class RunParams:
    """How a simulated run is set up (the commands and faults are drawn from the seed).

    Attributes:
        duration: simulated seconds.
        ops: commands each client issues.
        reads: balance reads sent to the ledger node.
        loss: probability that a message is lost.
        duplicate_rate: probability that a message is delivered twice.
        reorder_rate: probability that a message is held back up to 0.4 s.
        retry: probability that a client sends a command once more after its answer.
        crashes: crashes of the ledger node, each followed by a restart.
        durable: whether the node is :class:`DurableLedgerNode` (``False``: the
            bare :class:`~trio_foundation.protocols.auction.LedgerNode`).
    """

    duration: float = 20.0
    ops: int = 25
    reads: int = 10
    loss: float = 0.1
    duplicate_rate: float = 0.1
    reorder_rate: float = 0.2
    retry: float = 0.15
    crashes: int = 2
    durable: bool = True

    def __attrs_post_init__(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"duration must be > 0, got {self.duration!r}")
        for name in ("ops", "reads", "crashes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("loss", "duplicate_rate", "reorder_rate", "retry"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


def _schedule(rng: random.Random, params: RunParams) -> list[FaultEvent]:
    events = [
        FaultEvent(0.0, SetDropRate(params.loss)),
        FaultEvent(0.0, SetDuplicateRate(params.duplicate_rate)),
        FaultEvent(0.0, SetReorderRate(params.reorder_rate, 0.4)),
    ]
    horizon = params.duration * 0.6
    at = 0.0
    for _ in range(params.crashes):
        at += rng.uniform(0.0, horizon / max(1, params.crashes))
        down = rng.uniform(0.05, 1.0)
        events += [FaultEvent(at, Crash(LEDGER)), FaultEvent(at + down, Restart(LEDGER))]
        at += down
    return sorted(events, key=lambda e: e.at)


def simulated_run(
    seed: int,
    params: RunParams = RunParams(),
    node_factory: NodeFactory | None = None,
) -> list[Transition]:
    """Run the ledger node and four clients in the simulator.

    The commands, reads and the fault schedule derive from ``seed``: the same seed
    gives the same run.

    Args:
        seed: the run's seed.
        params: the run's length and faults.
        node_factory: builds the ledger node around a ledger (default:
            :class:`DurableLedgerNode`, or the bare ``LedgerNode`` when
            ``params.durable`` is false).

    Returns:
        Every transition of every node, in the order taken.
    """
    rng = random.Random(f"{seed}:ledger-trace")
    if node_factory is None:
        node_factory = DurableLedgerNode if params.durable else LedgerNode
    factory_of_node: NodeFactory = node_factory
    config = ledger_config()
    transitions: list[Transition] = []

    def factory(i: int, n: int) -> Any:
        if i == LEDGER:
            return factory_of_node(_opened(config))
        return TraceClient(i, params.ops, params.retry)

    sim = Simulation(
        factory,
        nodes=2 + len(ACCOUNTS),
        seed=seed,
        config=SimConfig(delay=UniformDelay(0.001, 0.05)),
        schedule=_schedule(rng, params),
        trace=transitions.append,
        projection=project,
    )

    # submitted when due: a crash resolves every request outstanding at the node
    def read(account: str) -> Callable[[], None]:
        def submit() -> None:
            sim.submit(LEDGER, "balance", account)

        return submit

    for _ in range(params.reads):
        sim.call_at(rng.uniform(0.0, params.duration), read(rng.choice(ACCOUNTS)))
    sim.run(until=params.duration)
    return transitions


def simulated_trace(
    seed: int, params: RunParams = RunParams(), node_factory: NodeFactory | None = None
) -> list[Record]:
    """:func:`trace_of` a :func:`simulated_run`."""
    return trace_of(simulated_run(seed, params, node_factory))


# ---------------------------------------------------------------------- TLC


def trace_module(traces: Sequence[Sequence[Record]]) -> str:
    """The text of the module ``LedgerTraceData`` holding ``traces``."""
    body = traces_tla(traces)
    return (
        "---- MODULE LedgerTraceData ----\n"
        "EXTENDS Integers, TLC\n"
        "\\* Generated by trio_foundation.verify.traces.ledger; do not edit.\n"
        f"TraceAccounts == {to_tla(frozenset(ACCOUNTS))}\n"
        f"TraceHoldIds == {to_tla(frozenset(range(1, len(HOLDS) + 1)))}\n"
        f"Traces == <<\n{body}\n>>\n"
        "====\n"
    )


def write_trace_module(traces: Sequence[Sequence[Record]], path: Path) -> None:
    """Write ``traces`` as the module ``LedgerTraceData`` at ``path``."""
    path.write_text(trace_module(traces), encoding="utf-8")


def trace_config() -> str:
    """The TLC configuration of ``LedgerTrace`` for traces of :func:`trace_module`."""
    invariants = "".join(f"    {name}\n" for name in INVARIANTS)
    return (
        "SPECIFICATION TraceSpec\n"
        "CONSTANTS\n"
        "    Accounts <- TraceAccounts\n"
        "    HoldIds <- TraceHoldIds\n"
        f"    MaxAmount = {_BIG}\n"
        f"    MaxSupply = {_BIG}\n"
        f"    MaxOps = {_BIG}\n"
        '    Variant = "correct"\n'
        f"INVARIANTS\n{invariants}"
    )


def check_traces(
    traces: Sequence[Sequence[Record]],
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
) -> TraceCheck:
    """Ask TLC, in one run, whether each trace is a behaviour of ``Ledger``.

    A record the spec cannot take is taken with its logged state and the trace
    rejected there, naming the first safety invariant of :data:`INVARIANTS` the
    step breaks (``FollowsSpec``: none but that one):
    :attr:`TraceCheck.violated`, :attr:`TraceCheck.failed_trace`,
    :attr:`TraceCheck.failed_step` (the 1-based record) and
    :attr:`TraceCheck.failed_action`.

    Raises:
        ValueError: no traces, or an empty one.
        VerificationError: Java or TLC is missing, or TLC could not run the check.
    """
    if not traces or any(not t for t in traces):
        raise ValueError("need at least one non-empty trace")
    return check_trace_module(
        trace_module(traces), specs_dir=specs_dir, workers=workers, timeout=timeout, traces=traces
    )


def check_trace_module(
    module_text: str,
    *,
    specs_dir: Path,
    workers: int = 1,
    timeout: float = 300,
    traces: Sequence[Sequence[Record]] | None = None,
) -> TraceCheck:
    """Like :func:`check_traces`, for the text of a ``LedgerTraceData`` module (e.g.
    one written by :func:`write_trace_module` and edited by hand).

    ``traces``, when given, are the traces the module holds; they let the verdict
    name the record's action and count records.
    """

    return check_record_traces(
        "LedgerTrace",
        trace_config(),
        module_text,
        specs_dir=specs_dir,
        workers=workers,
        timeout=timeout,
        traces=traces,
    )
