"""Sealed-bid and contract-net allocation time, market throughput, ledger throughput.

Run: ``.venv/bin/python benchmarks/bench_market.py`` (prints ``uptime`` first:
the machine may be shared). Figures: time to allocate one item by a Vickrey
auction among 10, 100 and 1,000 bidders (every bid escrowed in the ledger,
losers released, the winner settled — the cores driven directly, no network),
and ledger transfers per second (in memory, ``Ledger.apply``); for contract-net:
time to award one task among 10, 100 and 1,000 contractors (the manager core
driven directly: budget escrowed, every contractor proposing, the best awarded,
the winner paid), the English and Dutch auctions among 10, 100 and 1,000 bidders
(private values, bidders raising by the increment in turns / the clock falling to the
best value; every price or standing bid broadcast), and the
:class:`~trio_foundation.coordination.market.Market`
under Trio: time to award among 10/100/1,000 registered contractors, and tasks
allocated per second (call, proposals, award, result, payment) by one caller
and by 10 concurrent callers among 100 contractors.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import time
from typing import Any

import trio

from trio_foundation.coordination.market import Market
from trio_foundation.protocols.auction import (
    AuctionConfig,
    Auctioneer,
    Bid,
    BidAccepted,
    LedgerNode,
)
from trio_foundation.protocols.contract_net import (
    CallForProposals,
    ContractorInfo,
    InformDone,
    Manager,
    Propose,
    TaskConfig,
)
from trio_foundation.protocols.effects import Send
from trio_foundation.protocols.ledger import Ledger, LedgerConfig, Mint, Open, Transfer
from trio_foundation.registry import Registry

LEDGER = 0


def allocate(n: int, rng: random.Random) -> float:
    """Seconds from the first bid to the settled close, ``n`` bidders."""
    ledger = Ledger(LedgerConfig(max_accounts=n + 1))
    ledger.apply(Open("seller"))
    for b in range(1, n + 1):
        ledger.apply(Open(f"b{b}"))
        ledger.apply(Mint("treasury", f"b{b}", 1000))
    node = LedgerNode(ledger)
    config = AuctionConfig(
        "a", "second_price", 1.0, tuple((b, f"b{b}") for b in range(1, n + 1)), "seller", LEDGER
    )
    core = Auctioneer(config)
    bids = [(b, rng.randint(1, 1000)) for b in range(1, n + 1)]

    def run(effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, Send) and e.to == LEDGER:
                for answer in node.on_message(0.0, 1, e.msg):
                    if isinstance(answer, Send):
                        run(core.on_message(0.0, LEDGER, answer.msg))

    run(core.on_start(0.0, rng))
    start = time.perf_counter()
    for b, amount in bids:
        run(core.on_message(0.5, b, Bid("a", amount)))
    run(core.on_timer(1.0, "deadline"))
    elapsed = time.perf_counter() - start
    assert core.state == "closed" and len(core.winners) == 1 and not ledger.holds()
    return elapsed


def _open_world(n: int, fmt: str, **fields: Any) -> tuple[Auctioneer, Ledger, Any]:
    """An open-format auctioneer among ``n`` funded bidders and its one-process runtime."""
    ledger = Ledger(LedgerConfig(max_accounts=n + 1))
    ledger.apply(Open("seller"))
    for b in range(1, n + 1):
        ledger.apply(Open(f"b{b}"))
        ledger.apply(Mint("treasury", f"b{b}", 1000))
    node = LedgerNode(ledger)
    bidders = tuple((b, f"b{b}") for b in range(1, n + 1))
    config = AuctionConfig("a", fmt, 10_000.0, bidders, "seller", LEDGER, **fields)  # type: ignore[arg-type]
    core = Auctioneer(config)
    accepted: list[int] = []

    def run(effects: list[Any], now: float) -> None:
        for e in effects:
            if isinstance(e, Send) and e.to == LEDGER:
                for answer in node.on_message(now, 1, e.msg):
                    if isinstance(answer, Send):
                        run(core.on_message(now, LEDGER, answer.msg), now)
            elif isinstance(e, Send) and isinstance(e.msg, BidAccepted):
                accepted.append(e.to)

    return core, ledger, run


def english_allocate(n: int, rng: random.Random) -> float:
    """Seconds from the first bid to the settled close of an English auction, ``n``
    bidders with private values in 1..1000 raising by the increment (10) in turns while
    the price is below their value (the quiet timer fires after the last raise)."""
    core, ledger, run = _open_world(n, "english", quiet=5.0, min_increment=10)
    values = {b: rng.randint(1, 1000) for b in range(1, n + 1)}
    order = list(values)
    rng.shuffle(order)
    run(core.on_start(0.0, rng), 0.0)
    start = time.perf_counter()
    raised = True
    while raised:
        raised = False
        for b in order:
            standing = core.standing
            bar = standing[1] + 10 if standing is not None else 0
            if (standing is None or standing[0] != b) and bar <= values[b]:
                run(core.on_message(1.0, b, Bid("a", bar)), 1.0)
                raised = True
    run(core.on_timer(6.0, "quiet"), 6.0)
    elapsed = time.perf_counter() - start
    assert core.state == "closed" and len(core.winners) == 1 and not ledger.holds()
    assert values[core.winners[0]] > max(values.values()) - 10  # efficient up to the increment
    return elapsed


def dutch_allocate(n: int, rng: random.Random) -> float:
    """Seconds from the clock's start to the settled close of a Dutch auction, ``n``
    bidders with private values in 1..1000; the clock falls from 1000 by 10 per tick (every
    price broadcast to all); the first bidder whose value reaches the price accepts."""
    core, ledger, run = _open_world(n, "dutch", start_price=1000, decrement=10, tick=1.0)
    values = {b: rng.randint(1, 1000) for b in range(1, n + 1)}
    best = max(values, key=lambda b: values[b])
    start = time.perf_counter()
    run(core.on_start(0.0, rng), 0.0)
    now = 0.0
    while core.clock_price(now) > values[best]:
        now += 1.0
        run(core.on_timer(now, "tick"), now)
    run(core.on_message(now + 0.5, best, Bid("a", core.clock_price(now))), now + 0.5)
    elapsed = time.perf_counter() - start
    assert core.state == "closed" and core.winners == [best] and not ledger.holds()
    return elapsed


def transfers_per_second(count: int = 200_000) -> float:
    ledger = Ledger()
    for a in ("x", "y"):
        ledger.apply(Open(a))
        ledger.apply(Mint("treasury", a, 10**9))
    commands = [Transfer("x", "y", 1) if i % 2 else Transfer("y", "x", 1) for i in range(count)]
    start = time.perf_counter()
    for c in commands:
        ledger.apply(c)
    return count / (time.perf_counter() - start)


def contract_net_award(n: int, rng: random.Random) -> float:
    """Seconds from the call for proposals to the paid result, ``n`` contractors (cores only)."""
    ledger = Ledger(LedgerConfig(max_accounts=n + 1))
    ledger.apply(Open("buyer"))
    ledger.apply(Mint("treasury", "buyer", 10**6))
    for c in range(1, n + 1):
        ledger.apply(Open(f"c{c}"))
    node = LedgerNode(ledger)
    contractors = tuple(ContractorInfo(c, f"c{c}", {"code"}, rng.random()) for c in range(1, n + 1))
    config = TaskConfig("t", "buyer", 1000, LEDGER, contractors, 1.0, 1.0, {"code"})
    core = Manager(config)
    calls: list[int] = []

    def run(effects: list[Any]) -> None:
        for e in effects:
            if isinstance(e, Send) and e.to == LEDGER:
                for answer in node.on_message(0.0, 1, e.msg):
                    if isinstance(answer, Send):
                        run(core.on_message(0.0, LEDGER, answer.msg))
            elif isinstance(e, Send) and isinstance(e.msg, CallForProposals):
                calls.append(e.to)

    start = time.perf_counter()
    run(core.on_start(0.0, rng))
    for c in calls:
        run(core.on_message(0.5, c, Propose("t", 1, rng.randint(1, 1000))))
    assert core.state == "awarded" and core.winner is not None
    run(core.on_message(0.6, core.winner, InformDone("t", 1)))
    elapsed = time.perf_counter() - start
    assert core.state == "done" and not ledger.holds()
    return elapsed


async def _market_run(n: int, tasks: int, callers: int) -> tuple[list[float], float]:
    """(times to award, seconds for ``tasks`` allocations) with ``n`` contractors."""
    rng = random.Random()
    ledger = Ledger(LedgerConfig(max_accounts=n + 2))
    ledger.apply(Open("buyer"))
    ledger.apply(Mint("treasury", "buyer", 10**9))
    market = Market(Registry(), ledger, mailbox_size=8)
    awards: list[float] = []

    def contractor(price: int) -> Any:
        async def propose(cfp: CallForProposals) -> int:
            return price

        async def perform(payload: Any) -> Any:
            return payload

        return propose, perform

    async def one(count: int) -> None:
        for _ in range(count):
            outcome = await market.allocate(
                None, budget=1000, buyer="buyer", deadline=5.0, execution_timeout=5.0
            )
            assert outcome.state == "done" and outcome.time_to_award is not None
            awards.append(outcome.time_to_award)

    async with trio.open_nursery() as nursery:
        for c in range(n):
            propose, perform = contractor(rng.randint(1, 1000))
            await nursery.start(
                lambda task_status, c=c, propose=propose, perform=perform: (
                    market.serve_contractor(
                        f"c{c}", capabilities={"code"}, account=f"a{c}", propose=propose,
                        perform=perform, task_status=task_status,
                    )
                )
            )  # fmt: skip
        start = time.perf_counter()
        async with trio.open_nursery() as workers:
            for _ in range(callers):
                workers.start_soon(one, tasks // callers)
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return awards, elapsed


def market_figures(n: int, tasks: int, callers: int = 1) -> tuple[list[float], float]:
    return trio.run(_market_run, n, tasks, callers)


def main() -> None:
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # no options: --help prints what the run measures
    print(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    rng = random.Random()
    print("| bidders | allocation time, median of 5 (ms) | min (ms) |")
    print("|---|---|---|")
    for n in (10, 100, 1000):
        runs = [allocate(n, rng) * 1000 for _ in range(5)]
        print(f"| {n:,} | {statistics.median(runs):.2f} | {min(runs):.2f} |")
    print()
    print("| bidders | English, first bid to settled close, median of 5 (ms) |"
          " Dutch, clock start to settled close, median of 5 (ms) |")  # fmt: skip
    print("|---|---|---|")
    for n in (10, 100, 1000):
        english = statistics.median(english_allocate(n, rng) * 1000 for _ in range(5))
        dutch = statistics.median(dutch_allocate(n, rng) * 1000 for _ in range(5))
        print(f"| {n:,} | {english:.2f} | {dutch:.2f} |")
    rates = [transfers_per_second() for _ in range(3)]
    print(f"ledger transfers/s (in memory, median of 3): {statistics.median(rates):,.0f}")
    print()
    print("| contractors | contract-net core, call to payment, median of 5 (ms) |"
          " market: time to award, median (ms) | market: tasks/s, 1 caller |")  # fmt: skip
    print("|---|---|---|---|")
    for n in (10, 100, 1000):
        core = statistics.median(contract_net_award(n, rng) * 1000 for _ in range(5))
        tasks = 200 if n < 1000 else 40
        awards, elapsed = market_figures(n, tasks)
        print(
            f"| {n:,} | {core:.2f} | {statistics.median(awards) * 1000:.2f} |"
            f" {tasks / elapsed:,.0f} |"
        )
    awards, elapsed = market_figures(100, 400, callers=10)
    print(f"market, 100 contractors, 10 concurrent callers: {400 / elapsed:,.0f} tasks/s")


if __name__ == "__main__":
    main()
