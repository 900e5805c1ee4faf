"""The credit ledger on a Raft cluster: every member computes the same balances.

::

    async with open_raft_ledger("raft://127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403") as ledger:
        await ledger.open("alice")
        await ledger.mint("alice", 10)
        await ledger.transfer("alice", "bob", 3, key="order-17")
        print(await ledger.balance("alice"))

The members are ``foundation kv serve`` processes (or
:func:`~trio_foundation.coordination.raft_lock.open_lock_node`): their
:class:`~trio_foundation.protocols.lock_machine.ServiceMachine` applies every
``("ledger", command)`` entry of the replicated log to its
:class:`~trio_foundation.protocols.ledger.Ledger`, in log order, on every
member. The ledger reads no clock, draws no randomness and keeps its state in
insertion order, so replicas that applied the same entries hold byte-equal
snapshots; conservation and non-negativity hold on each (the ledger refuses a
command that would break them, and a refusal changes nothing).

Writes (:meth:`RaftLedger.open`, ``mint``, ``burn``, ``transfer``, ``hold``,
``settle``, ``release``) are Raft submits. Each call has its own Raft session
(a fresh random client id, request id 1): the client retries a call across
timeouts, lost replies and leader changes under that session, and the
replicated session table applies it **once** however often it arrives.
Reads (:meth:`RaftLedger.balance`, :meth:`RaftLedger.snapshot`) are ReadIndex
reads at the leader: linearizable (they see every write that completed before
they started).

**Cancellation.** Every method is a checkpoint. A cancelled read has no effect.
A cancelled write leaves its command *applied once or not at all*, never half:
a command is one log entry, applied atomically by every replica; it may still
be committed after the caller left (the leader already had it), and is then
applied once. To learn which, read (``balance``/``snapshot``), or send the
same command again where the ledger recognises a retry: a :class:`Transfer`
with the same ``key`` returns the first outcome without moving credits twice;
a ``hold`` with the same id, account and amount answers ``Ok`` without holding
twice; a second ``settle``/``release`` of a hold is refused (``UnknownHold``,
code ``hold_closed``: it was closed). An unkeyed transfer, a ``mint`` or a
``burn`` sent again after a cancellation is a *new* command: it may apply
twice. Nothing is kept for a caller that left (the Raft client forgets the
call; no task outlives the method).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final, Protocol, final

import trio

from ..protocols import ledger as led
from ..protocols import lock_machine as lm
from ..protocols.auction import LedgerAnswer, LedgerRequest
from .consensus import open_raft_client
from .raft_lock import SERVICE_CODEC, parse_raft_url, resolve_members
from .raft_wire import MAX_BATCH

__all__ = ["LEDGER_CODEC", "RaftLedger", "open_raft_ledger"]

LEDGER_CODEC: Final = SERVICE_CODEC
"""The codec of a ledger client: the service machine's (the members run
:class:`~trio_foundation.protocols.lock_machine.ServiceMachine`)."""

_COMMANDS: Final = (led.Open, led.Mint, led.Burn, led.Transfer, led.Hold, led.Settle, led.Release)


class _Submitter(Protocol):
    async def submit(self, command: Any) -> Any: ...

    async def submit_many(self, commands: list[Any]) -> list[Any]: ...

    async def read(self, query: Any) -> Any: ...


def _name(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{what} must be a non-empty str")
    return value


def _amount(value: object, account: str, *, zero: bool = False) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"amount must be an int, got {type(value).__name__}")
    low = 0 if zero else 1
    if not low <= value <= led.MAX_AMOUNT:
        raise led.InvalidAmount(
            "invalid_amount",
            f"amount must be an int in [{low}, 2**63), got {value}",
            account,
            value,
        )
    return value


def _outcome(answer: object) -> led.Result:
    if isinstance(answer, lm.LedgerOutcome):
        return answer.result
    raise TypeError(f"expected a ledger outcome, the cluster answered {answer!r}")


@final
class RaftLedger:
    """The replicated :class:`~trio_foundation.protocols.ledger.Ledger`, through a
    Raft node or client whose codec is :data:`LEDGER_CODEC`.

    Write methods return the ledger's last journal sequence number written by the
    command (:attr:`~trio_foundation.protocols.ledger.Ok.seq`) or raise the
    ledger's typed refusal; see the module docstring for what a cancelled call
    leaves. Every method is a checkpoint and retries until the cluster answers:
    put a deadline on it (``trio.fail_after``) if the cluster may be down.

    Args:
        raft: a :class:`~trio_foundation.coordination.consensus.RaftClient` or
            :class:`~trio_foundation.coordination.consensus.RaftNodeHandle` of a
            cluster running :class:`~trio_foundation.protocols.lock_machine.ServiceMachine`.
    """

    def __init__(self, raft: _Submitter) -> None:
        self._raft = raft

    # ----------------------------------------------------------------- writes

    async def apply(self, command: led.Command) -> led.Result:
        """Replicate one ledger command; its result, a refusal included (never raised).

        A checkpoint. Cancellation: the command is applied once or not at all.

        Raises:
            TypeError: ``command`` is not a ledger command.
        """
        if not isinstance(command, _COMMANDS):
            raise TypeError(f"not a ledger command: {type(command).__name__}")
        return _outcome(await self._raft.submit((lm.LEDGER_TAG, command)))

    async def apply_many(self, commands: Sequence[led.Command]) -> list[led.Result]:
        """Replicate many commands in one pipelined request; their results, in order.

        Each command is its own log entry and Raft session, so each is applied
        once however the batch is retried; commands of one batch are applied in
        order, but other clients' commands may come between them (a batch is
        not a transaction). A checkpoint. Cancellation: each command is applied
        once or not at all, independently of the others.

        Raises:
            TypeError: an element is not a ledger command.
            ValueError: more than :data:`~trio_foundation.coordination.raft_wire.MAX_BATCH`
                commands.
        """
        if len(commands) > MAX_BATCH:
            raise ValueError(f"at most {MAX_BATCH} commands per batch, got {len(commands)}")
        for c in commands:
            if not isinstance(c, _COMMANDS):
                raise TypeError(f"not a ledger command: {type(c).__name__}")
        answers = await self._raft.submit_many([(lm.LEDGER_TAG, c) for c in commands])
        return [_outcome(a) for a in answers]

    async def _write(self, command: led.Command) -> int:
        return led.raise_for(await self.apply(command)).seq

    async def open(self, account: str) -> int:
        """Open ``account`` with a zero balance.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            LedgerError: code ``account_exists`` or ``limit``.
        """
        return await self._write(led.Open(_name(account, "account")))

    async def mint(self, account: str, amount: int, *, by: str = "treasury") -> int:
        """Authority ``by`` creates ``amount`` credits in ``account``.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            UnknownAccount, InvalidAmount: as named.
            LedgerError: code ``not_authority`` (``by`` is not in the ledger's
                ``authorities``).
        """
        account = _name(account, "account")
        return await self._write(led.Mint(_name(by, "by"), account, _amount(amount, account)))

    async def burn(self, account: str, amount: int, *, by: str = "treasury") -> int:
        """Authority ``by`` destroys ``amount`` credits of ``account``'s balance.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            UnknownAccount, InsufficientFunds, InvalidAmount: as named.
            LedgerError: code ``not_authority``.
        """
        account = _name(account, "account")
        return await self._write(led.Burn(_name(by, "by"), account, _amount(amount, account)))

    async def transfer(self, src: str, dst: str, amount: int, *, key: str = "") -> int:
        """Move ``amount`` from ``src`` to ``dst``.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Args:
            key: an idempotency key (non-empty: a later transfer with the same
                key and fields returns this one's outcome without moving credits
                again — use it to retry after a cancellation or a crash).

        Raises:
            UnknownAccount, InsufficientFunds, InvalidAmount: as named (nothing moved).
            LedgerError: code ``key_reused`` (the key names another transfer).
        """
        src = _name(src, "src")
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, got {type(key).__name__}")
        return await self._write(led.Transfer(src, _name(dst, "dst"), _amount(amount, src), key))

    async def hold(self, hold: str, account: str, amount: int) -> int:
        """Escrow ``amount`` of ``account``'s balance under the new id ``hold``
        (the same hold again while open is a retry: ``Ok``, held once).

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            UnknownAccount, InsufficientFunds, InvalidAmount: as named.
            UnknownHold: code ``hold_closed`` (the id was used and closed).
            LedgerError: code ``hold_exists`` (open with other fields) or ``limit``.
        """
        account = _name(account, "account")
        return await self._write(led.Hold(_name(hold, "hold"), account, _amount(amount, account)))

    async def settle(self, hold: str, payee: str, amount: int) -> int:
        """Close ``hold``: ``amount`` (0 to the held amount) to ``payee``, the rest back.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            UnknownHold: no open hold (``unknown_hold``), or already closed
                (``hold_closed``).
            UnknownAccount, InsufficientFunds: the payee, or an amount above the hold.
        """
        payee = _name(payee, "payee")
        return await self._write(
            led.Settle(_name(hold, "hold"), payee, _amount(amount, payee, zero=True))
        )

    async def release(self, hold: str) -> int:
        """Close ``hold``: the whole held amount back to its account.

        A checkpoint. Cancellation: applied once or not at all (module docstring).

        Raises:
            UnknownHold: no open hold, or already closed.
        """
        return await self._write(led.Release(_name(hold, "hold")))

    async def answer(self, request: LedgerRequest) -> LedgerAnswer:
        """Serve an auction or contract-net core's :class:`~trio_foundation.protocols.auction.
        LedgerRequest` from the replicated ledger: the :class:`~trio_foundation.protocols.
        auction.LedgerAnswer` the in-process :class:`~trio_foundation.protocols.auction.
        LedgerNode` would send. A checkpoint; cancellation as :meth:`apply`.
        """
        return LedgerAnswer(request.command, await self.apply(request.command))

    # ----------------------------------------------------------------- reads

    async def balance(self, account: str) -> int:
        """``account``'s balance (credits not held), linearizable.

        A checkpoint; cancelling it has no effect.

        Raises:
            UnknownAccount: no such account.
        """
        answer = await self._raft.read(lm.LedgerBalance(_name(account, "account")))
        if isinstance(answer, lm.LedgerBalanceResult):
            return answer.balance
        led.raise_for(_outcome(answer))
        raise TypeError(f"expected a balance, the cluster answered {answer!r}")  # pragma: no cover

    async def snapshot(self) -> led.Ledger:
        """A copy of the whole replicated ledger (balances, holds, journal window,
        supply), linearizable; inspect it with the ``Ledger`` methods.

        A checkpoint; cancelling it has no effect.

        Raises:
            LedgerError: code ``limit``: the snapshot is above
                :data:`~trio_foundation.protocols.lock_machine.LEDGER_READ_LIMIT`
                bytes (read balances one by one).
        """
        answer = await self._raft.read(lm.LedgerSnapshot())
        if not isinstance(answer, lm.LedgerSnapshotResult):
            led.raise_for(_outcome(answer))
            raise TypeError(f"expected a snapshot, the cluster answered {answer!r}")
        copy = led.Ledger()
        copy.restore(answer.data)
        return copy


@asynccontextmanager
async def open_raft_ledger(
    url: str,
    *,
    secret: bytes | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - the connection timeout of the client
    request_timeout: float = 2.0,
) -> AsyncIterator[RaftLedger]:
    """Connect to the ledger of a Raft cluster (``raft://[ID=]HOST:PORT,...``).

    Entering resolves the members' ids and waits until one is connected, at most
    ``timeout`` seconds; a checkpoint; if cancelled on entry nothing is left
    running. Exit closes the connections (nothing is pending: a write whose
    caller left is applied once or not at all).

    Args:
        url: some or all members.
        secret: the cluster's shared secret (``foundation kv serve --secret-file``).
        timeout: seconds to reach the cluster on entry.
        request_timeout: seconds before an unanswered request is re-sent (same session).

    Raises:
        ValueError: a malformed URL or parameter.
        ConnectionError: no member reachable within ``timeout``.
    """
    entries = parse_raft_url(url)
    if not (isinstance(timeout, int | float) and math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
    if not (
        isinstance(request_timeout, int | float)
        and math.isfinite(request_timeout)
        and request_timeout > 0
    ):
        raise ValueError(f"request_timeout must be > 0 seconds, got {request_timeout!r}")
    try:
        members = await resolve_members(entries, timeout=timeout)
    except OSError as exc:
        raise ConnectionError(f"ledger {url}: {exc}") from None
    async with open_raft_client(
        members, codec=LEDGER_CODEC, secret=secret, request_timeout=request_timeout
    ) as client:
        with trio.move_on_after(timeout) as waiting:
            await client.wait_connected()
        if waiting.cancelled_caught:
            raise ConnectionError(f"ledger {url}: no member connected within {timeout:g} s")
        yield RaftLedger(client)
