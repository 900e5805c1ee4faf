"""Market-based task allocation: registered agents bid for tasks by contract-net or auction.

A :class:`Market` joins three pieces of the library:

* the **registry**: a contractor is an entry registered with its capabilities
  and ledger account for as long as :meth:`Market.serve_contractor` runs (a
  crashed contractor's entry dies with its task);
* the **contract-net manager core** (:mod:`trio_foundation.protocols.contract_net`):
  each :meth:`Market.allocate` call runs one ``Manager`` over in-process,
  bounded mailboxes, with the budget escrowed in the **ledger** and the
  contractors scored by price, capability match and **reputation**
  (:class:`~trio_foundation.protocols.reputation.Reputation`, updated from
  every outcome); or, with :meth:`Market.auction`, one ``Auctioneer``
  (:mod:`trio_foundation.protocols.auction`: sealed first-price or Vickrey, or
  open English ascending or Dutch descending) among the agents that serve a
  ``bid`` function, every bid escrowed in the ledger, the winner settled to the
  seller and the losers (English: the outbid) released;
* Trio: every call is a checkpoint, every wait is cancellable, every task
  runs in the caller's nursery.

A contractor that crashes, hangs or fails after an award is revoked when the
execution timeout passes (or at once on a failure) and the task is announced
again to the contractors registered then. A caller that leaves
:meth:`Market.allocate` (cancelled, or a deadline) leaves nothing held: the
task's escrow is released to the buyer and the awarded contractor is told to
stop (:class:`~trio_foundation.protocols.contract_net.Cancel`); a caller that
leaves :meth:`Market.auction` before the close has every bid's hold released.

Every :class:`Allocation` carries the reasons the core gave for refusing a
proposal or a bid (:attr:`Allocation.refused`), by agent name.

Messages between the manager and contractors go through bounded memory
channels and are dropped when a mailbox is full (the protocol tolerates lost
messages: a lost proposal is a refusal, a lost result a timeout).
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias, final

import attrs
import trio

from ..protocols.auction import (
    DEADLINE_TIMER,
    QUIET_TIMER,
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    BidRefused,
    BidTaken,
    LedgerAnswer,
    LedgerNode,
    LedgerRequest,
    Outcome,
    PriceClock,
    Standing,
)
from ..protocols.contract_net import (
    AcceptProposal,
    CallForProposals,
    Cancel,
    ContractorInfo,
    Failure,
    InformDone,
    Manager,
    Propose,
    Refuse,
    RejectProposal,
    TaskConfig,
    Weights,
)
from ..protocols.effects import CancelTimer, Effect, Persist, Reply, Send, SetTimer
from ..protocols.ledger import Hold, Ledger, Ok, Open, Release
from ..protocols.reputation import Reputation
from ..registry import Registry

if TYPE_CHECKING:
    from .raft_ledger import RaftLedger

__all__ = ["Allocation", "AuctionFormat", "CallForBids", "Market", "MarketStatistics"]

LEDGER_NODE: Final = 0
LEDGER_TIMEOUT: Final = 10.0  # seconds a replicated ledger command may take (shielded)
AuctionFormat: TypeAlias = Literal["first_price", "second_price", "english", "dutch"]
AUCTION_FORMATS: Final = ("first_price", "second_price", "english", "dutch")
OPEN: Final = ("english", "dutch")
# the open formats' parameters of Market.auction: name -> the format that takes it
OPEN_PARAMETERS: Final = {
    "min_increment": "english",
    "quiet": "english",
    "max_bids": "english",
    "start_price": "dutch",
    "decrement": "dutch",
    "tick": "dutch",
}
REQUIRED_PARAMETERS: Final = {"english": ("quiet",), "dutch": ("start_price", "tick")}


def _frozen_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return dict(value)


@final
@attrs.frozen
class Allocation:
    """The outcome of one :meth:`Market.allocate`.

    Attributes:
        task: the task's id.
        state: ``"done"`` (a contractor reported the result and was paid; by
            auction: the winner paid and reported the result) or ``"failed"``.
        winner: the paid contractor's registry key (by auction: the winner,
            also when its execution then failed), or None.
        price: credits paid (0 if failed; by auction: what the winner paid,
            which stands even if its execution failed).
        rounds: announcements made (1 for an auction).
        reason: why it failed (contract-net: ``"no_proposal"``, ``"failure"``,
            ``"timeout"``, ``"insufficient_funds"``; auction: ``"no_bid"``,
            ``"failure"``, ``"timeout"``), "" if done.
        time_to_award: seconds from the call to the award that was completed
            (by auction: to the close; None if failed).
        elapsed: seconds from the call to the outcome.
        result: what the contractor's ``perform`` returned.
        refused: agent name -> the reason the core gave for refusing its last
            proposal or bid (contract-net: ``"unqualified"``, ``"over_budget"``,
            ``"late"``, ``"revoked"``, ``"duplicate"``, ``"not_selected"``, ...;
            auction: ``"below_reserve"``, ``"insufficient_funds"``,
            ``"bad_bid"``, ``"late"``, ``"duplicate"``, ...; English also
            ``"too_low"`` and ``"limit"``, Dutch ``"stale_price"``). In an open
            auction an agent whose later bid was accepted has no entry.
        method: ``"contract_net"`` or the auction's format.
    """

    task: str
    state: Literal["done", "failed"]
    winner: str | None
    price: int
    rounds: int
    reason: str
    time_to_award: float | None
    elapsed: float
    result: Any = None
    refused: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    method: str = "contract_net"


@final
@attrs.frozen
class CallForBids:
    """Market → agent: bid for ``task`` (see :meth:`Market.auction`).

    A sealed auction sends one call per agent. An open one sends a new call
    whenever its public state changes (``version`` + 1): English, to every agent
    but the standing bidder when a new bid stands; Dutch, to every agent when
    the clock's price falls. A call superseded while it waited in the agent's
    mailbox, one for an auction no longer open, or one that reaches the standing
    bidder, is skipped (``bid`` is not awaited for it).

    Attributes:
        task: the task's id (also the auction's id).
        format: ``"first_price"``, ``"second_price"`` (Vickrey: bidding one's
            true value is a dominant strategy), ``"english"`` or ``"dutch"``.
        reserve: the lowest acceptable bid, in credits.
        window: seconds (of trio's clock) from this call to the (hard) close; a hint.
        payload: what the task is.
        standing: English: the standing bid (None before the first one stands).
        minimum: the least bid that can be taken now: the reserve (sealed; English
            before any bid stands); the standing bid plus ``min_increment``
            (English); the clock's price (Dutch).
        price: Dutch: the price on the clock; bid exactly it to accept it (another
            amount is refused ``"stale_price"``). None in the other formats.
        version: 0 for the first call; + 1 with each new standing bid or price.
    """

    task: str
    format: AuctionFormat
    reserve: int
    window: float
    payload: Any = None
    standing: int | None = None
    minimum: int = 0
    price: int | None = None
    version: int = 0


@final
@attrs.frozen
class MarketStatistics:
    """Counters of a market (a snapshot).

    Attributes:
        allocated: tasks done (paid), by either method.
        failed: tasks failed.
        abandoned: allocations whose caller left before the outcome, including
            a call cancelled at its first checkpoint (before its arguments are
            checked): every call that does not raise for bad input is counted
            once, in one of the three.
        credits_paid: credits settled (to contractors; by auction, to sellers).
        contractors: contractors registered now.
        active: allocations running now.
        auctioned: of ``allocated``, the tasks allocated by auction.
    """

    allocated: int
    failed: int
    abandoned: int
    credits_paid: int
    contractors: int
    active: int
    auctioned: int = 0


ProposeFn = Callable[[CallForProposals], Awaitable[int | None]]
PerformFn = Callable[[Any], Awaitable[Any]]
BidFn = Callable[[CallForBids], Awaitable[int | None]]


@attrs.define(eq=False)
class _Seat:
    """A serving contractor as the market sees it."""

    market: Market
    node: int
    name: str
    account: str
    capabilities: frozenset[str]
    inbox: trio.MemorySendChannel[tuple[str, Any]]
    bids: bool = False  # serves a bid function: invited to auctions


@final
class Market:
    """Allocates tasks to contractors registered in ``registry``, by contract-net.

    Args:
        registry: where contractors are registered (any indexes; the market finds
            its own contractors by their entry's value).
        ledger: the credit ledger: buyers' budgets are escrowed in it and
            contractors paid from it. Contractor accounts are opened on demand.
            A :class:`~trio_foundation.protocols.ledger.Ledger` (in-process), or
            a :class:`~trio_foundation.coordination.raft_ledger.RaftLedger` (the
            replicated ledger: each allocation sends its core's ledger commands
            through one task, in the order the core emitted them, each a
            checkpoint that is not abandoned half-way — a shielded scope of at
            most ``LEDGER_TIMEOUT`` seconds, so a caller that leaves never races
            an in-flight hold with its release).
        reputation: scores used by the evaluation and updated from outcomes
            (default: half-life 1 hour, prior 0.5).
        mailbox_size: bound of each contractor's mailbox (>= 1).
        max_jobs: tasks a contractor performs at once; an award beyond it is
            answered with a failure ``"busy"``.
        seed: seeds the managers' ``random.Random`` (unused by the current core).

    Raises:
        ValueError: a bad bound.
        TypeError: ``ledger`` is neither.
    """

    def __init__(
        self,
        registry: Registry,
        ledger: Ledger | RaftLedger,
        *,
        reputation: Reputation | None = None,
        mailbox_size: int = 64,
        max_jobs: int = 4,
        seed: int = 0,
    ) -> None:
        for name, value in (("mailbox_size", mailbox_size), ("max_jobs", max_jobs)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(ledger, Ledger) and not callable(getattr(ledger, "answer", None)):
            raise TypeError(f"ledger must be a Ledger or a RaftLedger, got {type(ledger).__name__}")
        self.registry = registry
        self.ledger = ledger
        self._local: Ledger | None = ledger if isinstance(ledger, Ledger) else None
        self._raft: RaftLedger | None = None if isinstance(ledger, Ledger) else ledger
        self._ledger_node = LedgerNode(ledger) if isinstance(ledger, Ledger) else None
        self.reputation = reputation if reputation is not None else Reputation(3600.0)
        self._mailbox_size = mailbox_size
        self._max_jobs = max_jobs
        self._rng = random.Random(seed)
        self._nodes = itertools.count(LEDGER_NODE + 1)
        self._tasks = itertools.count(1)
        self._seats: dict[int, _Seat] = {}
        # task id -> the mailbox of its running allocation
        self._managers: dict[str, trio.MemorySendChannel[tuple[int, Any]]] = {}
        self._open_runs: dict[str, _AuctionRun] = {}  # task id -> its open auction
        self._allocated = self._failed = self._abandoned = self._paid = self._auctioned = 0

    # ----------------------------------------------------------------- inspection

    def statistics(self) -> MarketStatistics:
        """A snapshot of the market's counters."""
        return MarketStatistics(
            self._allocated,
            self._failed,
            self._abandoned,
            self._paid,
            len(self._seats),
            len(self._managers),
            self._auctioned,
        )

    def contractors(self) -> list[ContractorInfo]:
        """Every contractor registered now, with its reputation at the current time.

        Must be called from within a trio run (it reads ``trio.current_time()``).
        """
        now = trio.current_time()
        infos = []
        for entry in self.registry.select_all(where=self._mine):
            seat = entry.value
            assert isinstance(seat, _Seat)
            rep = self.reputation.score(seat.name, now)
            infos.append(ContractorInfo(seat.node, seat.account, seat.capabilities, rep))
        return infos

    def _mine(self, entry: Any) -> bool:
        return isinstance(entry.value, _Seat) and entry.value.market is self

    # ----------------------------------------------------------------- contractors

    async def serve_contractor(
        self,
        name: str,
        *,
        capabilities: Iterable[str],
        account: str,
        propose: ProposeFn,
        perform: PerformFn,
        bid: BidFn | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve as contractor ``name`` until cancelled; start it with ``nursery.start``.

        The contractor is registered in the registry under ``name`` (meta:
        ``capabilities`` and ``account``) for exactly as long as this call runs.
        For each call for proposals it awaits ``propose(cfp)``: a price in
        credits, or None to refuse. For each award it runs ``await
        perform(payload)`` in a task of its own (at most ``max_jobs`` at once):
        its return value is the result; an ``Exception`` reports a failure; a
        :class:`~trio_foundation.protocols.contract_net.Cancel` from the manager
        cancels it. With ``bid``, the contractor also takes part in
        :meth:`auction`: for each :class:`CallForBids` it awaits ``bid(call)``:
        an amount in credits (escrowed from ``account``), or None to abstain
        (in an open auction: to pass at this standing bid or price; the agent
        is called again when it changes). The calls are awaited one at a time,
        in this task, like the contract-net ones.

        Checkpoint: yes. Cancellation (the way to stop it) unregisters the
        contractor and cancels its jobs; the tasks it held are re-announced by
        their managers after their execution timeout. An exception raised by
        ``propose`` or ``bid`` propagates (the contractor crashes the same way); an
        auction it bid in releases its hold at the close (it loses) or settles it.

        Raises:
            ValueError: bad ``name``/``account``/``capabilities``.
            DuplicateKeyError, RegistryFullError: from the registry.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        if not isinstance(account, str) or not account:
            raise ValueError(f"account must be a non-empty str, got {account!r}")
        caps = ContractorInfo(1, account, capabilities).capabilities  # validates them
        await self._open_account(account)
        send, receive = trio.open_memory_channel[tuple[str, Any]](self._mailbox_size)
        seat = _Seat(self, next(self._nodes), name, account, caps, send, bid is not None)
        jobs: dict[tuple[str, int], trio.CancelScope] = {}
        meta = {"capabilities": caps, "account": account}
        async with send, receive, self.registry.register(name, meta, value=seat):
            self._seats[seat.node] = seat
            try:
                async with trio.open_nursery() as nursery:
                    task_status.started()
                    async for task, msg in receive:
                        await self._contractor_step(
                            seat, task, msg, propose, perform, bid, jobs, nursery
                        )
                    nursery.cancel_scope.cancel()
            finally:
                del self._seats[seat.node]

    async def _contractor_step(
        self,
        seat: _Seat,
        task: str,
        msg: Any,
        propose: ProposeFn,
        perform: PerformFn,
        bid: BidFn | None,
        jobs: dict[tuple[str, int], trio.CancelScope],
        nursery: trio.Nursery,
    ) -> None:
        if isinstance(msg, CallForBids) and msg.format in OPEN:
            run = self._open_runs.get(task)
            if bid is None or run is None or not run.wants(seat.node, msg.version):
                return  # the auction is over, or a newer call is in the mailbox
            self._to_manager(task, seat.node, _Answer(msg.version, await bid(msg)))
        elif isinstance(msg, CallForBids):
            amount = await bid(msg) if bid is not None else None
            self._to_manager(task, seat.node, _Abstain() if amount is None else Bid(task, amount))
        elif isinstance(msg, CallForProposals):
            price = await propose(msg)
            answer: Any = Propose(task, msg.round, price)
            if price is None:
                answer = Refuse(task, msg.round)
            self._to_manager(task, seat.node, answer)
        elif isinstance(msg, AcceptProposal):
            key = (task, msg.round)
            if key in jobs:
                return  # a duplicated award: the job is running
            if len(jobs) >= self._max_jobs:
                self._to_manager(task, seat.node, Failure(task, msg.round, "busy"))
                return
            scope = trio.CancelScope()
            jobs[key] = scope
            nursery.start_soon(self._job, seat, key, msg.payload, perform, scope, jobs)
        elif isinstance(msg, Cancel):
            running = jobs.get((task, msg.round))
            if running is not None:
                running.cancel()

    async def _job(
        self,
        seat: _Seat,
        key: tuple[str, int],
        payload: Any,
        perform: PerformFn,
        scope: trio.CancelScope,
        jobs: dict[tuple[str, int], trio.CancelScope],
    ) -> None:
        task, round_ = key
        try:
            with scope:
                try:
                    result = await perform(payload)
                except Exception as exc:  # the work failed: report it, the contractor lives on
                    self._to_manager(task, seat.node, Failure(task, round_, repr(exc)[:200]))
                else:
                    self._to_manager(task, seat.node, InformDone(task, round_, result))
        finally:
            jobs.pop(key, None)

    async def _open_account(self, account: str) -> None:
        """Open ``account`` unless it exists (on Raft: its refusal ``account_exists``)."""
        if self._raft is not None:
            await self._raft.apply(Open(account))
        elif self._local is not None and account not in self._local.balances():
            self._local.apply(Open(account))

    async def _run(
        self,
        run: _Run | _AuctionRun,
        send: trio.MemorySendChannel[tuple[int, Any]],
        receive: trio.MemoryReceiveChannel[tuple[int, Any]],
    ) -> None:
        """Drive ``run``; on Raft, with its ledger worker, until its commands are applied."""
        if self._raft is None:
            await run.drive(receive)
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run.ledger_worker, self._raft, send, nursery.cancel_scope)
            await run.drive(receive)
            nursery.start_soon(_discard, receive)  # the worker never blocks on a full mailbox
            await run.drained()
            nursery.cancel_scope.cancel()
        if run.ledger_error is not None:
            raise run.ledger_error

    async def _release(self, commands: list[Release]) -> None:
        """Release the holds of an allocation whose caller left (a refusal is ignored:
        the hold was settled, released, or never placed). On Raft: shielded, at most
        ``LEDGER_TIMEOUT`` seconds."""
        if self._local is not None:
            for command in commands:
                if command.hold in self._local.holds():
                    self._local.apply(command)
        elif self._raft is not None and commands:
            with trio.move_on_after(LEDGER_TIMEOUT) as scope:
                scope.shield = True
                await self._raft.apply_many(commands)

    def _to_manager(self, task: str, src: int, msg: Any) -> None:
        mailbox = self._managers.get(task)
        if mailbox is None:
            return  # the allocation is over (or its caller left)
        try:
            mailbox.send_nowait((src, msg))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # a full mailbox loses the message, as a network would

    def _to_contractor(self, node: int, task: str, msg: Any) -> bool:
        """Put ``msg`` in ``node``'s mailbox; False if it was lost (gone, or full)."""
        seat = self._seats.get(node)
        if seat is None:
            return False  # crashed or stopped: the message is lost
        try:
            seat.inbox.send_nowait((task, msg))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    # ----------------------------------------------------------------- allocation

    async def allocate(
        self,
        payload: Any,
        *,
        budget: int,
        buyer: str,
        deadline: float | None,
        execution_timeout: float,
        required: Iterable[str] = (),
        preferred: Iterable[str] = (),
        max_rounds: int = 3,
        weights: Weights | None = None,
        task: str | None = None,
    ) -> Allocation:
        """Allocate one task by contract-net among the contractors registered now.

        Escrows ``budget`` from ``buyer``, calls for proposals with a
        ``deadline`` (seconds of trio's clock per round), awards the best
        proposal, waits for the result, pays the winner its price and returns
        the rest of the budget to ``buyer``; re-announces when the contractor
        fails or times out (``execution_timeout`` seconds), at most
        ``max_rounds`` rounds. Updates the reputation of every awarded
        contractor (1.0 paid, 0.0 revoked).

        Checkpoint: yes. Cancellation: the escrow is released to ``buyer`` and
        the awarded contractor (if any) told to stop; nothing is paid (unless
        the result was already accepted, then the payment stands).

        Args:
            payload: what the task is, handed to the contractors.
            budget: credits escrowed, the highest acceptable price (>= 1).
            buyer: the paying ledger account.
            deadline: seconds per call for proposals (required, > 0).
            execution_timeout: seconds from an award to its revocation (> 0 and
                finite: without it a silent contractor would hold the task and the
                escrow forever).
            required: capabilities a contractor must have.
            preferred: capabilities that raise a proposal's score.
            max_rounds: announcements in all, >= 1.
            weights: the scoring weights (default :class:`Weights`).
            task: the task's id (default ``task-N``); unique among running ones.

        Returns:
            The :class:`Allocation`.

        Raises:
            ValueError, TypeError: bad input, named (a missing deadline, a
                non-positive budget, an execution timeout that is not a positive
                finite number, a task id already running).
        """
        try:
            await trio.lowlevel.checkpoint()  # a checkpoint even if nobody is invited
        except trio.Cancelled:
            self._abandoned += 1  # the caller left before anything started: counted once
            raise
        task_id = task if task is not None else f"task-{next(self._tasks)}"
        if task_id in self._managers:
            raise ValueError(f"task {task_id!r} is already being allocated")
        config = TaskConfig(
            task=task_id,
            buyer=buyer,
            budget=budget,
            ledger=LEDGER_NODE,
            contractors=tuple(self.contractors()),
            deadline=deadline,
            execution_timeout=execution_timeout,
            required=frozenset(required),
            preferred=frozenset(preferred),
            max_rounds=max_rounds,
            weights=weights if weights is not None else Weights(),
            payload=payload,
        )
        names = {c.node: self._seats[c.node].name for c in config.contractors}
        core = Manager(config)
        send, receive = trio.open_memory_channel[tuple[int, Any]](2 * len(names) + 16)
        run = _Run(self, core, names, trio.current_time())
        self._managers[task_id] = send
        try:
            async with send, receive:
                await self._run(run, send, receive)
        finally:
            del self._managers[task_id]
            await self._release(run.leave())
        return run.outcome()

    async def auction(
        self,
        payload: Any,
        *,
        seller: str,
        format: AuctionFormat = "second_price",
        deadline: float | None,
        execution_timeout: float,
        required: Iterable[str] = (),
        reserve: int = 0,
        task: str | None = None,
        min_increment: int | None = None,
        quiet: float | None = None,
        max_bids: int | None = None,
        start_price: int | None = None,
        decrement: int | None = None,
        tick: float | None = None,
    ) -> Allocation:
        """Allocate one task by an auction among the agents registered now.

        Every contractor registered now that serves a ``bid`` function and has
        the ``required`` capabilities gets a :class:`CallForBids`; its bid is
        escrowed from its account (a bid the ledger cannot cover is refused
        ``"insufficient_funds"``). The auction closes at the ``deadline``, or as
        soon as every invited agent has bid or abstained. The best bid wins
        (higher amount, then earlier receipt, then the lower node: the rule of
        :mod:`trio_foundation.protocols.auction`); the winner pays ``seller``
        its own bid (``"first_price"``) or the highest losing bid or the
        reserve, if higher (``"second_price"``, Vickrey); every loser's hold is
        released. The winner is then awarded the task (its ``perform`` runs,
        ``execution_timeout`` seconds at most); its payment stands whatever the
        execution's outcome (an auction sells the task once: use
        :meth:`allocate` for re-announcement). Updates the winner's reputation
        (1.0 done, 0.0 failed or timed out).

        **Open formats** (one unit, the rules of the ``Auctioneer``):

        * ``"english"``: every invited agent is called with the standing bid
          (none at first), and called again each time a new bid stands (except
          the standing bidder). A bid is taken if it beats the standing bid by
          ``min_increment`` (else ``"too_low"``); when it stands the outbid
          bidder's hold is released. The auction closes ``quiet`` seconds after
          the last bid stood, at the ``deadline`` (hard close), or as soon as
          every invited agent but the standing bidder has answered the latest
          call with None (or a bid that was refused) and no bid's hold is being
          placed; the standing bidder wins and pays its bid.
        * ``"dutch"``: every invited agent is called with the clock's price,
          which starts at ``start_price`` and falls by ``decrement`` every
          ``tick`` seconds down to the ``reserve``; an agent accepts by bidding
          the price it was called with (refused ``"stale_price"`` if the clock
          has moved on). The first accept wins at its price; nobody accepting,
          the auction closes unsold one tick after the clock reached the
          reserve, or at the ``deadline``.

        Checkpoint: yes. Cancellation: before the close, every bid's hold is
        released (nothing is paid, nothing held); after the close, the payment
        stands and the winner's job is told to stop. The agents' ``bid`` calls
        run in their own tasks (:meth:`serve_contractor`): a caller that leaves
        does not wait for them, and their late answers are dropped.

        Args:
            payload: what the task is, handed to the bidders and the winner.
            seller: the ledger account paid at the close (opened if missing).
            format: ``"first_price"``, ``"second_price"``, ``"english"`` or
                ``"dutch"``.
            deadline: seconds of trio's clock from the call to the close
                (required, > 0).
            execution_timeout: seconds from the award to a result (> 0 and
                finite: without it a silent winner would hold the task forever).
            required: capabilities a bidder must have.
            reserve: the lowest acceptable bid, in credits (>= 0).
            task: the task's id, also the auction's (default ``task-N``); unique
                among running ones; not empty or blank, no ``/``.
            min_increment: English: credits by which a bid must beat the
                standing bid (>= 1, default 1).
            quiet: English (required): seconds without a new standing bid after
                which the auction closes (> 0).
            max_bids: English: bids taken at most (>= 1, default 1,000).
            start_price: Dutch (required): the clock's first price (>= reserve).
            decrement: Dutch: credits the price falls by per tick (>= 1, default 1).
            tick: Dutch (required): seconds between two prices (> 0).

        Returns:
            The :class:`Allocation` (``method`` is the format).

        Raises:
            ValueError, TypeError: bad input, named (a missing deadline, a
                negative reserve, an unknown format, a task id already running,
                an open format's parameter given to another format, a required
                one missing).
        """
        try:
            await trio.lowlevel.checkpoint()  # a checkpoint even if nobody is invited
        except trio.Cancelled:
            self._abandoned += 1  # the caller left before anything started: counted once
            raise
        if task is not None:  # named here: the auction core would call it "auction id"
            if not isinstance(task, str):
                raise TypeError(f"task must be a str, got {type(task).__name__}")
            if not task.strip():
                raise ValueError(f"task must not be empty or blank, got {task!r}")
            if "/" in task:
                raise ValueError(
                    f"task must not contain '/' (it separates a hold id's parts), got {task!r}"
                )
        task_id = task if task is not None else f"task-{next(self._tasks)}"
        if format not in AUCTION_FORMATS:
            raise ValueError(f"format must be one of {AUCTION_FORMATS}, got {format!r}")
        given: dict[str, Any] = {  # the open parameters given (AuctionConfig checks values)
            name: value
            for name, value in (
                ("min_increment", min_increment), ("quiet", quiet), ("max_bids", max_bids),
                ("start_price", start_price), ("decrement", decrement), ("tick", tick),
            )
            if value is not None
        }  # fmt: skip
        for name in given:
            if OPEN_PARAMETERS[name] != format:
                owner = OPEN_PARAMETERS[name]
                raise ValueError(f"{name} is for {owner} auctions, not {format}")
        for name in REQUIRED_PARAMETERS.get(format, ()):
            if name not in given:
                raise ValueError(f"{name} is required for {format} auctions")
        if deadline is None:
            raise ValueError("deadline is required: an auction without one is refused")
        if isinstance(execution_timeout, bool) or not isinstance(execution_timeout, int | float):
            kind = type(execution_timeout).__name__
            raise TypeError(f"execution_timeout must be a number of seconds, got {kind}")
        if not 0 < execution_timeout < math.inf:
            raise ValueError(
                f"execution_timeout must be > 0 seconds and finite, got {execution_timeout!r}"
            )
        if not isinstance(seller, str) or not seller:
            raise ValueError(f"seller must be a non-empty str, got {seller!r}")
        if task_id in self._managers:
            raise ValueError(f"task {task_id!r} is already being allocated")
        needed = ContractorInfo(1, seller, required).capabilities  # validates them
        seats = [
            self._seats[c.node]
            for c in self.contractors()
            if self._seats[c.node].bids and needed <= c.capabilities
        ]
        config = AuctionConfig(
            auction=task_id,
            format=format,
            deadline=deadline,
            bidders=tuple((seat.node, seat.account) for seat in seats),
            seller=seller,
            ledger=LEDGER_NODE,
            reserve=reserve,
            **given,
        )
        await self._open_account(seller)
        names = {seat.node: seat.name for seat in seats}
        core = Auctioneer(config)
        send, receive = trio.open_memory_channel[tuple[int, Any]](2 * len(names) + 16)
        run = _AuctionRun(self, core, names, trio.current_time(), payload, execution_timeout)
        self._managers[task_id] = send
        if format in OPEN:
            self._open_runs[task_id] = run
        try:
            async with send, receive:
                await self._run(run, send, receive)
        finally:
            del self._managers[task_id]
            self._open_runs.pop(task_id, None)
            await self._release(run.leave())
        return run.outcome()


async def _discard(mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
    """Read and drop what reaches an allocation that is over (until cancelled)."""
    async for _ in mailbox:
        pass


@final
@attrs.frozen
class _Abstain:
    """Agent → auction run: no bid (lets the auction close before its deadline)."""


@final
@attrs.frozen
class _Answer:
    """Agent → open auction run: the answer to call ``version``, an amount or None (pass)."""

    version: int
    amount: Any


class _Interpreter:
    """Executes one allocation core's effects: the ledger in-process, agents by mailbox."""

    core: Manager | Auctioneer

    def __init__(self, market: Market, names: dict[int, str], start: float) -> None:
        self.market = market
        self.names = names
        self.start = start
        self.timers: dict[str, float] = {}
        self.answers: list[Any] = []  # ledger answers to feed back
        # Raft: the core's ledger requests not yet answered, in order (bounded by the
        # commands the core emits for one allocation)
        self.ledger_queue: deque[LedgerRequest] = deque()
        self.ledger_wake = trio.Event()
        self.ledger_idle = trio.Event()
        self.ledger_error: TimeoutError | None = None
        self.placing = 0  # Raft: holds requested and not yet answered to the core
        self.refused: dict[str, str] = {}  # agent name -> the core's last refusal reason
        self.awarded_at: float | None = None
        self.result: Any = None

    @property
    def task(self) -> str:
        raise NotImplementedError

    def to_agent(self, node: int, msg: Any) -> None:
        """A message of the core to agent ``node`` (delivered to its mailbox by default)."""
        self.market._to_contractor(node, self.task, msg)

    def execute(self, effects: list[Effect]) -> None:
        now = trio.current_time()
        for effect in effects:
            if isinstance(effect, Send) and effect.to == LEDGER_NODE:
                node = self.market._ledger_node
                if node is None:  # Raft: the worker applies it and feeds the answer back
                    self.placing += isinstance(effect.msg.command, Hold)
                    self.ledger_queue.append(effect.msg)
                    self.ledger_wake.set()
                    if self.ledger_idle.is_set():
                        self.ledger_idle = trio.Event()
                    continue
                for answer in node.on_message(now, 0, effect.msg):
                    assert isinstance(answer, Send)
                    self.answers.append(answer.msg)
            elif isinstance(effect, Send):
                if isinstance(effect.msg, RejectProposal | BidRefused):
                    name = self.names.get(effect.to)
                    if name is not None:
                        reason = getattr(effect.msg, "reason")  # noqa: B009 - both carry one
                        self.refused[name] = reason
                self.to_agent(effect.to, effect.msg)
            elif isinstance(effect, SetTimer):
                self.timers[effect.name] = now + effect.delay
            elif isinstance(effect, CancelTimer):
                self.timers.pop(effect.name, None)
            else:
                assert isinstance(effect, Persist | Reply)  # in memory: nothing to persist
        while self.answers:
            self.execute(self.core.on_message(now, LEDGER_NODE, self.answers.pop(0)))

    async def ledger_worker(
        self,
        raft: RaftLedger,
        mailbox: trio.MemorySendChannel[tuple[int, Any]],
        run_scope: trio.CancelScope,
    ) -> None:
        """Raft: apply the queued requests one by one, in order; each answer goes to the
        run's mailbox as a message from the ledger node. A request is never abandoned
        half-way (shielded, at most ``LEDGER_TIMEOUT`` seconds); one that takes longer
        stops the run (``ledger_error``, raised by ``Market._run``)."""
        while True:
            while not self.ledger_queue:
                self.ledger_idle.set()
                self.ledger_wake = trio.Event()
                await self.ledger_wake.wait()
            request = self.ledger_queue[0]
            with trio.move_on_after(LEDGER_TIMEOUT) as scope:
                scope.shield = True
                answer = await raft.answer(request)
            if scope.cancelled_caught:
                self.ledger_error = TimeoutError(
                    f"the replicated ledger did not answer {request.command!r}"
                    f" within {LEDGER_TIMEOUT:g} s"
                )
                run_scope.cancel()
                return
            self.ledger_queue.popleft()
            await mailbox.send((LEDGER_NODE, answer))

    async def drained(self) -> None:
        """Raft: wait until every queued ledger request is applied."""
        while self.ledger_queue:
            await self.ledger_idle.wait()

    async def next_input(
        self, mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]
    ) -> tuple[int, Any] | None:
        """The next agent message, or None after firing the earliest due timer."""
        name, at = min(self.timers.items(), key=lambda kv: kv[1], default=("", math.inf))
        with trio.move_on_at(at) as waiting:
            return await mailbox.receive()
        assert waiting.cancelled_caught  # the earliest timer is due
        del self.timers[name]
        self.execute(self.core.on_timer(trio.current_time(), name))
        return None


class _Run(_Interpreter):
    """One contract-net allocation."""

    def __init__(self, market: Market, core: Manager, names: dict[int, str], start: float) -> None:
        super().__init__(market, names, start)
        self.core: Manager = core

    @property
    def task(self) -> str:
        return self.core.config.task

    def to_agent(self, node: int, msg: Any) -> None:
        if isinstance(msg, AcceptProposal):
            self.awarded_at = trio.current_time()
        super().to_agent(node, msg)

    async def drive(self, mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        core = self.core
        self.execute(core.on_start(trio.current_time(), self.market._rng))
        while core.state not in ("done", "failed"):
            received = await self.next_input(mailbox)
            if received is None:
                continue
            src, msg = received
            if isinstance(msg, InformDone) and (src, msg.round) == (core.winner, core.round):
                self.result = msg.result
            self.execute(core.on_message(trio.current_time(), src, msg))

    def leave(self) -> list[Release]:
        """Account for the outcome; if the caller left early, the releases it owes."""
        market, core = self.market, self.core
        now = trio.current_time()
        task = core.config.task
        if core.state not in ("done", "failed"):
            market._abandoned += 1
            if core.state == "awarded" and core.winner is not None:
                market._to_contractor(core.winner, task, Cancel(task, core.round))
            return [Release(task)]
        for _, node in core.revoked:
            if node is not None:
                market.reputation.record(self.names[node], 0.0, now)
        if core.state == "done":
            assert core.winner is not None
            market.reputation.record(self.names[core.winner], 1.0, now)
            market._allocated += 1
            market._paid += core.price
        else:
            market._failed += 1
        return []

    def outcome(self) -> Allocation:
        core = self.core
        done = core.state == "done"
        return Allocation(
            task=core.config.task,
            state="done" if done else "failed",
            winner=self.names[core.winner] if done and core.winner is not None else None,
            price=core.price if done else 0,
            rounds=core.round,
            reason=core.reason,
            time_to_award=(
                self.awarded_at - self.start if done and self.awarded_at is not None else None
            ),
            elapsed=trio.current_time() - self.start,
            result=self.result if done else None,
            refused=self.refused,
        )


class _AuctionRun(_Interpreter):
    """One auction, then the winner's execution.

    Phases: ``"bidding"`` (the core is open; its timers are armed),
    ``"executing"`` (closed and settled; the winner performs the task),
    ``"over"``. An open auction's public state has a ``version`` (+ 1 per new
    standing bid or clock price); every agent is owed an answer to the latest
    call it was sent.
    """

    def __init__(
        self,
        market: Market,
        core: Auctioneer,
        names: dict[int, str],
        start: float,
        payload: Any,
        execution_timeout: float,
    ) -> None:
        super().__init__(market, names, start)
        self.core: Auctioneer = core
        self.payload = payload
        self.execution_timeout = execution_timeout
        self.answered: set[int] = set()  # sealed: invited agents that bid or abstained
        self.state: Literal["done", "failed", ""] = ""
        self.reason = ""
        self.winner: int | None = None
        # open formats
        self.version = 0
        self.news: Standing | PriceClock | None = None  # the latest public state
        self.asked: dict[int, int] = {}  # node -> version of the last call in its mailbox
        self.heard: dict[int, int] = {}  # node -> the latest version it answered
        # English: agents whose bid was refused "duplicate" while their outbid hold's
        # release was in flight (an asynchronous ledger): called again at its answer
        self.retry: set[int] = set()

    @property
    def task(self) -> str:
        return self.core.config.auction

    def wants(self, node: int, version: int) -> bool:
        """Whether ``node`` should still answer call ``version``: the auction is open, no
        newer call is in its mailbox, and it does not hold the standing bid (English)."""
        leading = isinstance(self.news, Standing) and self.news.bidder == node
        return self.core.state == "open" and version >= self.asked.get(node, 0) and not leading

    def _call(self, node: int) -> None:
        """Send ``node`` a call for the auction's current public state."""
        c = self.core.config
        now = trio.current_time()
        window = max(0.0, self.start + c.deadline - now)
        assert c.format == "english" or c.format == "dutch"
        call = CallForBids(c.auction, c.format, c.reserve, window, self.payload,
                           minimum=c.reserve, version=self.version)  # fmt: skip
        news = self.news
        if isinstance(news, PriceClock):
            call = attrs.evolve(call, minimum=news.price, price=news.price)
        elif isinstance(news, Standing):
            call = attrs.evolve(call, standing=news.amount, minimum=news.amount + c.min_increment)
        if self.market._to_contractor(node, self.task, call):
            self.asked[node] = self.version

    def to_agent(self, node: int, msg: Any) -> None:
        # BidAccepted / BidRefused / Outcome: the market's agents learn the outcome
        # from the Allocation and the award (AcceptProposal) below; an open auction's
        # news (Standing, PriceClock) becomes a new call.
        if isinstance(msg, Standing | PriceClock):
            if msg != self.news:
                self.news, self.version = msg, self.version + 1
            leading = isinstance(msg, Standing) and msg.bidder == node
            if self.core.state == "open" and not leading:
                self._call(node)
            return
        assert isinstance(msg, BidAccepted | BidRefused | Outcome)
        name = self.names.get(node)
        if isinstance(msg, BidAccepted) and name is not None:
            self.refused.pop(name, None)  # its latest bid was taken
        leading = isinstance(self.news, Standing) and self.news.bidder == node
        english = self.core.config.format == "english"
        if isinstance(msg, BidRefused) and msg.reason == "duplicate" and english and not leading:
            self.retry.add(node)  # its outbid hold is being released: not a pass

    def _everyone_passed(self) -> bool:
        """English: every invited agent but the standing bidder answered the latest call,
        and no bid's hold is being placed (it may stand, or fail and lower the bar)."""
        leader = self.news.bidder if isinstance(self.news, Standing) else None
        return self.placing == 0 and all(
            self.heard.get(node, -1) >= self.version for node in self.names if node != leader
        )

    async def drive(self, mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        core, config = self.core, self.core.config
        self.execute(core.on_start(trio.current_time(), self.market._rng))
        if config.format in OPEN:
            await self._bid_open(mailbox)
        else:
            await self._bid_sealed(mailbox)
        self.awarded_at = trio.current_time()
        if not core.winners:
            self.state, self.reason = "failed", "no_bid"
            return
        winner = self.winner = core.winners[0]
        price = core.prices[winner]
        self.market._to_contractor(winner, self.task, AcceptProposal(self.task, 1, price,
                                                                     self.payload))  # fmt: skip
        with trio.move_on_after(self.execution_timeout):
            while True:
                src, msg = await mailbox.receive()
                if isinstance(msg, _Answer) and msg.amount is not None:
                    msg = Bid(self.task, msg.amount)
                if isinstance(msg, Bid | LedgerAnswer):  # a bid now: refused "late", recorded
                    self.execute(core.on_message(trio.current_time(), src, msg))
                if src != winner or getattr(msg, "round", None) != 1:
                    continue
                if isinstance(msg, InformDone):
                    self.state, self.result = "done", msg.result
                    return
                if isinstance(msg, Failure):
                    self.state, self.reason = "failed", "failure"
                    return
        self.state, self.reason = "failed", "timeout"
        self.market._to_contractor(winner, self.task, Cancel(self.task, 1))

    async def _bid_sealed(self, mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        core, config = self.core, self.core.config
        assert config.format == "first_price" or config.format == "second_price"  # sealed, 1 unit
        call = CallForBids(config.auction, config.format, config.reserve, config.deadline,
                           self.payload, minimum=config.reserve)  # fmt: skip
        for node in self.names:
            self.market._to_contractor(node, self.task, call)
        while core.state != "closed":
            if core.state == "open" and len(self.answered) == len(self.names):
                self.timers.clear()  # every invited agent answered: close now
                self.execute(core.on_timer(trio.current_time(), "deadline"))
                continue  # closed, or closing until the holds being placed are answered
            received = await self.next_input(mailbox)
            if received is None:
                continue
            src, msg = received
            if src in self.names and isinstance(msg, Bid | _Abstain):
                self.answered.add(src)
            if isinstance(msg, Bid | LedgerAnswer):  # the core checks a ledger answer's src
                self.execute(core.on_message(trio.current_time(), src, msg))

    async def _bid_open(self, mailbox: trio.MemoryReceiveChannel[tuple[int, Any]]) -> None:
        core, config = self.core, self.core.config
        if config.format == "english":
            for node in self.names:
                self._call(node)  # the Dutch clock's first price called them already
        while core.state != "closed":
            quiet = config.format == "english" and self._everyone_passed()
            if core.state == "open" and (quiet or not self.names):
                self.timers.clear()  # nobody will bid again: close now
                name = QUIET_TIMER if config.format == "english" else DEADLINE_TIMER
                self.execute(core.on_timer(trio.current_time(), name))
                continue
            received = await self.next_input(mailbox)
            if received is None:
                continue
            src, msg = received
            if isinstance(msg, LedgerAnswer):  # the core checks a ledger answer's src
                self.execute(core.on_message(trio.current_time(), src, msg))
                retry, self.retry = sorted(self.retry), set()
                if isinstance(msg.command, Hold) and src == LEDGER_NODE:
                    self.placing -= 1
                    if not isinstance(msg.result, Ok) and config.format == "english":
                        self.version += 1  # the bar fell back: everybody is asked again
                        retry = [n for n in self.names if self.wants(n, self.version)]
                for node in retry:  # a release may have been answered: bid again
                    if core.state == "open":
                        self._call(node)
                continue
            if src not in self.names or not isinstance(msg, _Answer):
                continue
            if msg.amount is not None:
                self.retry.discard(src)
                self.execute(core.on_message(trio.current_time(), src, Bid(self.task, msg.amount)))
            if src not in self.retry:  # else it is owed another call: not an answer
                self.heard[src] = max(self.heard.get(src, -1), msg.version)

    def leave(self) -> list[Release]:
        """Account for the outcome; if the caller left early, the releases it owes."""
        market, core = self.market, self.core
        now = trio.current_time()
        if core.state == "closed":
            market._paid += sum(core.prices.values())
        if not self.state:
            market._abandoned += 1
            if core.state != "closed":  # every bid's escrow goes back to its bidder
                taken = [r for r in core.snapshot_persistent() if isinstance(r, BidTaken)]
                holds = dict.fromkeys(core.hold_id(r.bidder, r.receipt) for r in taken)
                return [Release(hold) for hold in holds]
            if self.winner is not None:
                market._to_contractor(self.winner, self.task, Cancel(self.task, 1))
            return []
        if self.winner is not None:
            market.reputation.record(self.names[self.winner], 1.0 if self.state == "done" else 0.0,
                                     now)  # fmt: skip
        if self.state == "done":
            market._allocated += 1
            market._auctioned += 1
        else:
            market._failed += 1
        return []

    def outcome(self) -> Allocation:
        core = self.core
        winner = self.winner
        return Allocation(
            task=self.task,
            state="done" if self.state == "done" else "failed",
            winner=self.names[winner] if winner is not None else None,
            price=core.prices.get(winner, 0) if winner is not None else 0,
            rounds=1,
            reason=self.reason,
            time_to_award=(
                self.awarded_at - self.start
                if self.state == "done" and self.awarded_at is not None
                else None
            ),
            elapsed=trio.current_time() - self.start,
            result=self.result if self.state == "done" else None,
            refused=self.refused,
            method=core.config.format,
        )
