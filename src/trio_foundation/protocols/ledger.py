"""The credit ledger: a pure, deterministic state machine with a conserved total.

Theory of operation (``specs/Ledger.tla`` is the model-checked version)
-----------------------------------------------------------------------

Credits are non-negative ints (the smallest unit; no floats anywhere). An
*account* has a ``balance``; an *escrow hold* takes credits out of one
account's balance and keeps them aside until it is **settled** (an amount up to
the hold's goes to a payee, the rest back to the account) or **released** (all
back to the account). A hold is closed exactly once: a second settle or release
is refused, never applied.

Two properties hold after every command, whatever the input:

* **Conservation**: ``sum(balances) + sum(open holds) == supply``, where
  ``supply`` changes only through :class:`Mint` and :class:`Burn`, which only a
  configured *authority* may issue and which are journaled like every change.
  A transfer, a hold, a settle and a release move credits; none creates or
  destroys any.
* **NonNegative**: every balance is ``>= 0``: a command that would overdraw an
  account is refused (``insufficient_funds``) and changes nothing.

**Journal.** Every change is an :class:`Entry` (sequence number, kind,
account, counterparty, amount, hold id) appended to the journal. The journal is
bounded by *checkpointing*: the ledger keeps the last ``journal_window``
entries plus a *base* — the balances and open holds as they were just before
the oldest kept entry. When the window is full, the oldest entry is folded into
the base (applied to it) and dropped. So :func:`replay` of the base with the
window always reproduces the current balances and holds (``JournalReplays``);
an auditor that wants the whole history reads entries out before they leave
the window (:attr:`Ledger.journal` with :attr:`Entry.seq`).

**Replicated state machine.** :meth:`Ledger.apply` takes a command (a msgspec
struct or its :func:`encode`'d bytes) and returns a result; it never raises,
reads no clock, draws no randomness and never iterates a hash-ordered
collection, so replicas that apply the same commands in the same order hold the
same state (the shape of :class:`~trio_foundation.protocols.kv_machine.KVMachine`,
ready to run on Raft). A refused command returns an :class:`ErrorResult`
naming the problem, the account and the amount; :func:`raise_for` turns it into
a typed :class:`LedgerError` for callers that prefer exceptions.
:meth:`Ledger.snapshot`/:meth:`Ledger.restore` use msgpack (never pickle), and
a restore re-checks conservation and the journal replay before accepting.

**Idempotency.** A :class:`Transfer` may carry a ``key``: the ledger remembers
the last ``max_keys`` keys with their results, and a transfer whose key is
remembered is not applied again (the cached result is returned; a different
transfer under the same key is refused ``key_reused``). A retry older than the
last ``max_keys`` keyed transfers is no longer recognised: size ``max_keys``
above the number of transfers that can happen while a client retries.

Everything is bounded: accounts (``max_accounts``), open holds
(``max_holds``), closed hold ids remembered to name a double settle
(``max_closed``; an older id is refused ``unknown_hold`` — still refused), keys
and the journal window.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Final, Literal, TypeAlias, final

import msgspec

__all__ = [
    "Burn",
    "Command",
    "Entry",
    "ErrorCode",
    "ErrorResult",
    "Hold",
    "InsufficientFunds",
    "InvalidAmount",
    "Ledger",
    "LedgerConfig",
    "LedgerError",
    "Mint",
    "Ok",
    "Open",
    "Release",
    "Result",
    "Settle",
    "Transfer",
    "UnknownAccount",
    "UnknownHold",
    "decode_command",
    "decode_result",
    "encode",
    "raise_for",
    "replay",
]

MAX_AMOUNT: Final = (1 << 63) - 1

# --------------------------------------------------------------------------- commands


class Open(msgspec.Struct, frozen=True, tag="open"):
    """Open ``account`` with a zero balance (refused if it exists)."""

    account: str


class Mint(msgspec.Struct, frozen=True, tag="mint"):
    """Authority ``by`` creates ``amount`` credits in ``account``."""

    by: str
    account: str
    amount: int


class Burn(msgspec.Struct, frozen=True, tag="burn"):
    """Authority ``by`` destroys ``amount`` credits of ``account``'s balance."""

    by: str
    account: str
    amount: int


class Transfer(msgspec.Struct, frozen=True, tag="transfer"):
    """Move ``amount`` from ``src`` to ``dst`` (another account: ``same_account`` otherwise);
    ``key`` (non-empty) makes a retry safe."""

    src: str
    dst: str
    amount: int
    key: str = ""


class Hold(msgspec.Struct, frozen=True, tag="hold"):
    """Put ``amount`` of ``account``'s balance in escrow under the new id ``hold``.

    Re-issuing the same hold (same id, account and amount) while it is open is a
    retry and answers ``Ok`` without holding twice.
    """

    hold: str
    account: str
    amount: int


class Settle(msgspec.Struct, frozen=True, tag="settle"):
    """Close ``hold``: ``amount`` (at most the held amount) to ``payee``, the rest back."""

    hold: str
    payee: str
    amount: int


class Release(msgspec.Struct, frozen=True, tag="release"):
    """Close ``hold``: the whole held amount goes back to its account."""

    hold: str


Command: TypeAlias = Open | Mint | Burn | Transfer | Hold | Settle | Release

ErrorCode: TypeAlias = Literal[
    "bad_command",
    "invalid_amount",
    "unknown_account",
    "account_exists",
    "insufficient_funds",
    "not_authority",
    "unknown_hold",
    "hold_exists",
    "hold_closed",
    "key_reused",
    "limit",
    "same_account",
]


class Ok(msgspec.Struct, frozen=True, tag="ok"):
    """The command was applied; ``seq`` is the last journal entry it wrote (0: none)."""

    seq: int


class ErrorResult(msgspec.Struct, frozen=True, tag="error"):
    """The command was refused and changed nothing.

    Attributes:
        code: what is wrong (an :data:`ErrorCode`).
        message: one lowercase line naming the problem.
        account: the account concerned ("" if none).
        amount: the amount concerned (0 if none).
    """

    code: str
    message: str
    account: str = ""
    amount: int = 0


Result: TypeAlias = Ok | ErrorResult

EntryKind: TypeAlias = Literal["open", "mint", "burn", "transfer", "hold", "settle", "release"]


class Entry(msgspec.Struct, frozen=True):
    """One journaled change.

    Attributes:
        seq: 1, 2, 3... over the ledger's life (never reused).
        kind: the change.
        account: the account debited (``transfer``, ``hold``, ``burn``), credited
            (``mint``), opened (``open``), or the hold's account (``settle``,
            ``release``).
        other: the account credited by a ``transfer`` or a ``settle`` ("" otherwise).
        amount: credits moved (for ``settle``: paid to ``other``; the rest of
            the hold returns to ``account``).
        hold: the hold id (``hold``, ``settle``, ``release``), else "".
    """

    seq: int
    kind: str
    account: str
    other: str = ""
    amount: int = 0
    hold: str = ""


_ENCODER: Final = msgspec.msgpack.Encoder()
_COMMAND_DECODER: Final = msgspec.msgpack.Decoder(Command)
_RESULT_DECODER: Final = msgspec.msgpack.Decoder(Result)


def encode(value: Command | Result) -> bytes:
    """msgpack bytes of a command or a result."""
    return _ENCODER.encode(value)


def decode_command(data: bytes) -> Command:
    """A command from :func:`encode`'s bytes.

    Raises:
        msgspec.DecodeError: not a valid command.
    """
    return _COMMAND_DECODER.decode(data)


def decode_result(data: bytes) -> Result:
    """A result from :func:`encode`'s bytes.

    Raises:
        msgspec.DecodeError: not a valid result.
    """
    return _RESULT_DECODER.decode(data)


# --------------------------------------------------------------------------- typed errors


class LedgerError(Exception):
    """A ledger command was refused; nothing changed.

    Attributes:
        code: the :data:`ErrorCode`.
        account: the account concerned ("" if none).
        amount: the amount concerned (0 if none).
    """

    def __init__(self, code: str, message: str, account: str = "", amount: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.account = account
        self.amount = amount


@final
class InsufficientFunds(LedgerError):
    """The account's balance is below the amount."""


@final
class InvalidAmount(LedgerError):
    """The amount is not an int in ``[1, 2**63)``."""


@final
class UnknownAccount(LedgerError):
    """No such account."""


@final
class UnknownHold(LedgerError):
    """No such open hold (never opened, already settled or released)."""


_ERROR_TYPES: Final[dict[str, type[LedgerError]]] = {
    "insufficient_funds": InsufficientFunds,
    "invalid_amount": InvalidAmount,
    "unknown_account": UnknownAccount,
    "unknown_hold": UnknownHold,
    "hold_closed": UnknownHold,
}


def raise_for(result: Result) -> Ok:
    """Return ``result`` if it is :class:`Ok`, else raise the matching :class:`LedgerError`.

    Raises:
        InsufficientFunds, InvalidAmount, UnknownAccount, UnknownHold: by code.
        LedgerError: any other refusal (its ``code`` says which).
    """
    if isinstance(result, Ok):
        return result
    cls = _ERROR_TYPES.get(result.code, LedgerError)
    raise cls(result.code, result.message, result.account, result.amount)


# --------------------------------------------------------------------------- replay


def replay(
    balances: Mapping[str, int],
    holds: Mapping[str, tuple[str, int]],
    entries: Iterable[Entry],
) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
    """Apply journal entries to a base state; the ledger's audit function.

    Args:
        balances: account -> balance before the first entry.
        holds: open hold id -> (account, amount) before the first entry.
        entries: the entries, in ``seq`` order.

    Returns:
        the balances and open holds after the last entry (new dicts).
    """
    bal = dict(balances)
    held = dict(holds)
    for e in entries:
        _fold(bal, held, e)
    return bal, held


def _fold(bal: dict[str, int], held: dict[str, tuple[str, int]], e: Entry) -> None:
    """Apply one entry to ``bal`` and ``held`` in place (one step of :func:`replay`)."""
    if e.kind == "open":
        bal[e.account] = 0
    elif e.kind == "mint":
        bal[e.account] += e.amount
    elif e.kind == "burn":
        bal[e.account] -= e.amount
    elif e.kind == "transfer":
        bal[e.account] -= e.amount
        bal[e.other] += e.amount
    elif e.kind == "hold":
        bal[e.account] -= e.amount
        held[e.hold] = (e.account, e.amount)
    elif e.kind == "settle":
        account, amount = held.pop(e.hold)
        bal[e.other] += e.amount
        bal[account] += amount - e.amount
    elif e.kind == "release":
        account, amount = held.pop(e.hold)
        bal[account] += amount


# --------------------------------------------------------------------------- the machine


class LedgerConfig(msgspec.Struct, frozen=True):
    """The ledger's bounds and authorities; the same on every replica.

    Attributes:
        authorities: the names allowed to :class:`Mint` and :class:`Burn`.
        max_accounts: accounts the ledger may hold.
        max_holds: holds open at once.
        max_closed: closed hold ids remembered (to answer ``hold_closed``).
        max_keys: idempotency keys remembered.
        journal_window: entries kept after the checkpoint base.
    """

    authorities: tuple[str, ...] = ("treasury",)
    max_accounts: int = 100_000
    max_holds: int = 100_000
    max_closed: int = 100_000
    max_keys: int = 100_000
    journal_window: int = 10_000

    def check(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        for name in ("max_accounts", "max_holds", "max_closed", "max_keys", "journal_window"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not all(isinstance(a, str) and a for a in self.authorities):
            raise ValueError(f"authorities must be non-empty strings, got {self.authorities!r}")


class _Snapshot(msgspec.Struct, frozen=True):
    version: int
    config: LedgerConfig
    seq: int
    supply: int
    balances: tuple[tuple[str, int], ...]  # insertion order
    holds: tuple[tuple[str, str, int], ...]  # insertion order
    closed: tuple[str, ...]
    keys: tuple[tuple[str, bytes, bytes], ...]  # (key, command, result)
    base_balances: tuple[tuple[str, int], ...]
    base_holds: tuple[tuple[str, str, int], ...]
    journal: tuple[Entry, ...]


_SNAPSHOT_VERSION: Final = 1
_SNAPSHOT_DECODER: Final = msgspec.msgpack.Decoder(_Snapshot)


def _err(code: ErrorCode, message: str, account: str = "", amount: int = 0) -> ErrorResult:
    return ErrorResult(code, message, account, amount)


def _amount_ok(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_AMOUNT


@final
class Ledger:
    """The credit ledger (see the module docstring).

    Args:
        config: bounds and authorities (the same on every replica).

    Raises:
        ValueError: a bad config field.
    """

    def __init__(self, config: LedgerConfig | None = None) -> None:
        self._reset(config if config is not None else LedgerConfig())

    def _reset(self, config: LedgerConfig) -> None:
        config.check()
        self.config = config
        self._seq = 0  # the last entry's seq
        self._supply = 0  # Invariant: sum(balances) + sum(holds) == supply
        self._bal: dict[str, int] = {}  # Invariant: every value >= 0
        self._holds: dict[str, tuple[str, int]] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self._keys: OrderedDict[str, tuple[bytes, Result]] = OrderedDict()
        self._base_bal: dict[str, int] = {}
        self._base_holds: dict[str, tuple[str, int]] = {}
        # Invariant: replay(base, journal) == (balances, holds)
        self._journal: deque[Entry] = deque()

    # ----------------------------------------------------------------- applying

    def apply(self, command: Command | bytes) -> Result:
        """Apply one command and return its result. Never raises.

        Args:
            command: a :data:`Command`, or its :func:`encode`'d bytes.

        Returns:
            :class:`Ok` with the last journal seq written, or an
            :class:`ErrorResult` (the command changed nothing).
        """
        if isinstance(command, bytes):
            try:
                command = decode_command(command)
            except msgspec.DecodeError as exc:
                return _err("bad_command", f"undecodable command: {exc}")
        handler = _HANDLERS.get(type(command))
        if handler is None:
            return _err("bad_command", f"not a ledger command: {type(command).__name__}")
        shape = _shape_error(command)
        if shape is not None:
            return shape
        result: Result = getattr(self, handler)(command)
        return result

    def _open(self, c: Open) -> Result:
        if c.account in self._bal:
            return _err("account_exists", f"account {c.account!r} exists", c.account)
        if len(self._bal) >= self.config.max_accounts:
            return _err("limit", f"max_accounts ({self.config.max_accounts}) reached", c.account)
        self._bal[c.account] = 0
        return self._record(Entry(self._seq + 1, "open", c.account))

    def _mint(self, c: Mint) -> Result:
        if c.by not in self.config.authorities:
            return _err("not_authority", f"{c.by!r} may not mint", c.account, c.amount)
        if (err := self._known(c.account, c.amount)) is not None:
            return err
        if self._supply + c.amount > MAX_AMOUNT:
            return _err("invalid_amount", "supply would exceed 2**63 - 1", c.account, c.amount)
        self._bal[c.account] += c.amount
        self._supply += c.amount
        return self._record(Entry(self._seq + 1, "mint", c.account, amount=c.amount))

    def _burn(self, c: Burn) -> Result:
        if c.by not in self.config.authorities:
            return _err("not_authority", f"{c.by!r} may not burn", c.account, c.amount)
        if (err := self._funded(c.account, c.amount)) is not None:
            return err
        self._bal[c.account] -= c.amount
        self._supply -= c.amount
        return self._record(Entry(self._seq + 1, "burn", c.account, amount=c.amount))

    def _transfer(self, c: Transfer) -> Result:
        blob = encode(c) if c.key else b""
        if c.key and (cached := self._keys.get(c.key)) is not None:
            if cached[0] != blob:
                return _err("key_reused", f"key {c.key!r} names another transfer", c.src, c.amount)
            return cached[1]
        result = self._do_transfer(c)
        if c.key:
            self._keys[c.key] = (blob, result)
            while len(self._keys) > self.config.max_keys:
                self._keys.popitem(last=False)
        return result

    def _do_transfer(self, c: Transfer) -> Result:
        if (err := self._known(c.dst, c.amount)) is not None:
            return err
        if c.src == c.dst:  # Ledger.tla's Transfer: a # b
            return _err("same_account", f"transfer from {c.src!r} to itself", c.src, c.amount)
        if (err := self._funded(c.src, c.amount)) is not None:
            return err
        self._bal[c.src] -= c.amount
        self._bal[c.dst] += c.amount
        return self._record(Entry(self._seq + 1, "transfer", c.src, c.dst, c.amount))

    def _hold(self, c: Hold) -> Result:
        existing = self._holds.get(c.hold)
        if existing is not None:
            if existing == (c.account, c.amount):
                return Ok(self._seq)  # a retry of the same hold
            return _err("hold_exists", f"hold {c.hold!r} is open", c.account, c.amount)
        if c.hold in self._closed:
            return _err("hold_closed", f"hold {c.hold!r} was closed", c.account, c.amount)
        if (err := self._funded(c.account, c.amount)) is not None:
            return err
        if len(self._holds) >= self.config.max_holds:
            return _err("limit", f"max_holds ({self.config.max_holds}) reached", c.account)
        self._bal[c.account] -= c.amount
        self._holds[c.hold] = (c.account, c.amount)
        return self._record(Entry(self._seq + 1, "hold", c.account, amount=c.amount, hold=c.hold))

    def _settle(self, c: Settle) -> Result:
        if (err := self._open_hold(c.hold, c.amount)) is not None:
            return err
        account, held = self._holds[c.hold]
        if c.payee not in self._bal:
            return _err("unknown_account", f"no account {c.payee!r}", c.payee, c.amount)
        if c.amount > held:
            return _err(
                "insufficient_funds",
                f"hold {c.hold!r} holds {held}, cannot settle {c.amount}",
                account,
                c.amount,
            )
        self._close(c.hold)
        self._bal[c.payee] += c.amount
        self._bal[account] += held - c.amount
        return self._record(Entry(self._seq + 1, "settle", account, c.payee, c.amount, c.hold))

    def _release(self, c: Release) -> Result:
        if (err := self._open_hold(c.hold, 0)) is not None:
            return err
        account, held = self._holds[c.hold]
        self._close(c.hold)
        self._bal[account] += held
        return self._record(Entry(self._seq + 1, "release", account, amount=held, hold=c.hold))

    # ----------------------------------------------------------------- helpers

    def _known(self, account: str, amount: int) -> ErrorResult | None:
        if account not in self._bal:
            return _err("unknown_account", f"no account {account!r}", account, amount)
        return None

    def _funded(self, account: str, amount: int) -> ErrorResult | None:
        if (err := self._known(account, amount)) is not None:
            return err
        if self._bal[account] < amount:
            return _err(
                "insufficient_funds",
                f"account {account!r} has {self._bal[account]}, needs {amount}",
                account,
                amount,
            )
        return None

    def _open_hold(self, hold: str, amount: int) -> ErrorResult | None:
        if hold in self._holds:
            return None
        if hold in self._closed:
            return _err("hold_closed", f"hold {hold!r} is already settled or released", "", amount)
        return _err("unknown_hold", f"no open hold {hold!r}", "", amount)

    def _close(self, hold: str) -> None:
        del self._holds[hold]
        self._closed[hold] = None
        while len(self._closed) > self.config.max_closed:
            self._closed.popitem(last=False)

    def _record(self, entry: Entry) -> Ok:
        """Append ``entry``; fold the oldest entry into the base when the window is full."""
        self._seq = entry.seq
        self._journal.append(entry)
        if len(self._journal) > self.config.journal_window:
            # folded in place: O(1), not a copy of every balance per command
            _fold(self._base_bal, self._base_holds, self._journal.popleft())
        return Ok(entry.seq)

    # ----------------------------------------------------------------- snapshots

    def snapshot(self) -> bytes:
        """The whole state as msgpack bytes; equal states give equal bytes."""
        return _ENCODER.encode(
            _Snapshot(
                version=_SNAPSHOT_VERSION,
                config=self.config,
                seq=self._seq,
                supply=self._supply,
                balances=tuple(self._bal.items()),
                holds=tuple((h, a, n) for h, (a, n) in self._holds.items()),
                closed=tuple(self._closed),
                keys=tuple((k, blob, encode(r)) for k, (blob, r) in self._keys.items()),
                base_balances=tuple(self._base_bal.items()),
                base_holds=tuple((h, a, n) for h, (a, n) in self._base_holds.items()),
                journal=tuple(self._journal),
            )
        )

    def restore(self, data: bytes) -> None:
        """Replace the whole state with a :meth:`snapshot`'s.

        Raises:
            ValueError: not a snapshot of this version, or one that breaks
                conservation, non-negativity or the journal replay (the state is
                unchanged then).
        """
        try:
            snap = _SNAPSHOT_DECODER.decode(data)
            keys = [(k, blob, decode_result(r)) for k, blob, r in snap.keys]
        except msgspec.DecodeError as exc:
            raise ValueError(f"not a ledger snapshot: {exc}") from None
        if snap.version != _SNAPSHOT_VERSION:
            raise ValueError(f"snapshot version {snap.version}, this library reads 1")
        snap.config.check()
        bal = dict(snap.balances)
        holds = {h: (a, n) for h, a, n in snap.holds}
        if any(v < 0 for v in bal.values()):
            raise ValueError("snapshot has a negative balance")
        if sum(bal.values()) + sum(n for _, n in holds.values()) != snap.supply:
            raise ValueError("snapshot breaks conservation")
        try:
            replayed = replay(
                dict(snap.base_balances), {h: (a, n) for h, a, n in snap.base_holds}, snap.journal
            )
        except KeyError as exc:
            raise ValueError(f"snapshot journal names an unknown account or hold: {exc}") from None
        if replayed != (bal, holds):
            raise ValueError("snapshot journal does not replay to its balances")
        self._reset(snap.config)
        self._seq = snap.seq
        self._supply = snap.supply
        self._bal = bal
        self._holds = holds
        self._closed = OrderedDict.fromkeys(snap.closed)
        self._keys = OrderedDict((k, (blob, r)) for k, blob, r in keys)
        self._base_bal = dict(snap.base_balances)
        self._base_holds = {h: (a, n) for h, a, n in snap.base_holds}
        self._journal = deque(snap.journal)

    # ----------------------------------------------------------------- inspection

    def balance(self, account: str) -> int:
        """``account``'s balance (credits not held).

        Raises:
            UnknownAccount: no such account.
        """
        if account not in self._bal:
            raise UnknownAccount("unknown_account", f"no account {account!r}", account)
        return self._bal[account]

    def balances(self) -> dict[str, int]:
        """A copy of every balance, in account-opening order."""
        return dict(self._bal)

    def holds(self) -> dict[str, tuple[str, int]]:
        """A copy of the open holds: id -> (account, amount)."""
        return dict(self._holds)

    @property
    def supply(self) -> int:
        """Credits minted minus credits burned."""
        return self._supply

    @property
    def seq(self) -> int:
        """The last journal entry's sequence number (0: none yet)."""
        return self._seq

    @property
    def journal(self) -> tuple[Entry, ...]:
        """The entries after the checkpoint base (at most ``journal_window``)."""
        return tuple(self._journal)

    def checkpoint(self) -> tuple[dict[str, int], dict[str, tuple[str, int]]]:
        """The base (balances, open holds) just before the oldest kept entry."""
        return dict(self._base_bal), dict(self._base_holds)


def _shape_error(command: object) -> ErrorResult | None:
    """A field of the wrong type or range (msgspec does not check structs built in Python)."""
    for name in getattr(command, "__struct_fields__", ()):
        value = getattr(command, name)
        if name == "amount":
            if not _amount_ok(value) and not (isinstance(command, Settle) and value == 0):
                account = str(getattr(command, "account", getattr(command, "src", "")))
                shown = value if isinstance(value, int) else 0
                return _err(
                    "invalid_amount",
                    f"amount must be an int in [1, 2**63), got {value!r}",
                    account,
                    shown,
                )
        elif not isinstance(value, str) or (name != "key" and not value):
            return _err("bad_command", f"{name} must be a non-empty str, got {value!r}")
    return None


# command type -> the method applying it (looked up on the instance)
_HANDLERS: Final[dict[type, str]] = {
    Open: "_open",
    Mint: "_mint",
    Burn: "_burn",
    Transfer: "_transfer",
    Hold: "_hold",
    Settle: "_settle",
    Release: "_release",
}
