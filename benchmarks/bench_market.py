"""Sealed-bid allocation time and ledger throughput, in one process.

Run: ``.venv/bin/python benchmarks/bench_market.py`` (prints ``uptime`` first:
the machine may be shared). Figures: time to allocate one item by a Vickrey
auction among 10, 100 and 1,000 bidders (every bid escrowed in the ledger,
losers released, the winner settled — the cores driven directly, no network),
and ledger transfers per second (in memory, ``Ledger.apply``).
"""

from __future__ import annotations

import random
import statistics
import subprocess
import time
from typing import Any

from trio_foundation.protocols.auction import AuctionConfig, Auctioneer, Bid, LedgerNode
from trio_foundation.protocols.effects import Send
from trio_foundation.protocols.ledger import Ledger, LedgerConfig, Mint, Open, Transfer

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


def main() -> None:
    print(subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip())
    rng = random.Random()
    print("| bidders | allocation time, median of 5 (ms) | min (ms) |")
    print("|---|---|---|")
    for n in (10, 100, 1000):
        runs = [allocate(n, rng) * 1000 for _ in range(5)]
        print(f"| {n:,} | {statistics.median(runs):.2f} | {min(runs):.2f} |")
    rates = [transfers_per_second() for _ in range(3)]
    print(f"ledger transfers/s (in memory, median of 3): {statistics.median(rates):,.0f}")


if __name__ == "__main__":
    main()
