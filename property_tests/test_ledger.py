"""The credit ledger against a tiny model, with the invariants of specs/Ledger.tla.

Rules are named after the spec's actions (Mint, Burn, Transfer, PutHold, Settle,
Release; Checkpoint happens inside the ledger when its small window fills) plus
what the spec leaves out: retried keyed transfers, bad input, and a restart
from a snapshot. After every step the invariants ``Conservation``,
``NonNegative``, ``JournalReplays`` and ``HoldsSettledOnce`` are checked over
what an observer sees (results returned, the journal and its base), and the
ledger agrees with the model.

Broken ledgers (one per invariant) must be caught by fresh random searches:
``test_broken_variant_is_caught`` (one search each, in CI) and
``test_broken_variant_catch_rate`` (slow: ``CATCH_RUNS`` searches each, the rate and its
Wilson interval printed).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from trio_foundation.protocols.ledger import (
    Burn,
    ErrorResult,
    Hold,
    Ledger,
    LedgerConfig,
    Mint,
    Ok,
    Open,
    Release,
    Result,
    Settle,
    Transfer,
    replay,
)
from trio_foundation.verify.catch_rate import caught_by_fresh_search, measure_catch_rate

ACCOUNTS = ("a", "b", "c")
HOLDS = ("h1", "h2")
KEYS = ("k1", "k2", "k3")
CONFIG = LedgerConfig(max_keys=2, max_closed=3, journal_window=3)
SETTINGS = settings(max_examples=100, stateful_step_count=40)

accounts = st.sampled_from(ACCOUNTS)
amounts = st.integers(min_value=1, max_value=6)


def machine(
    ledger_cls: type[Ledger] = Ledger, check_model: bool = True
) -> type[RuleBasedStateMachine]:
    """The state machine; ``check_model=False`` leaves only the observer invariants
    (used for broken ledgers, so that they are caught by the spec's invariants and not
    by the differential comparison with the model)."""

    class LedgerMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.ledger = ledger_cls(CONFIG)
            self.bal: dict[str, int] = {}
            self.held: dict[str, tuple[str, int]] = {}
            self.supply = 0  # observer: the sum of successful mints minus burns
            self.closed: list[str] = []  # observer: holds closed by an Ok result
            self.keyed: dict[str, tuple[Transfer, Result]] = {}
            self.sent_closes: list[Settle | Release] = []  # the last closes sent

        @initialize(funded=st.lists(st.tuples(accounts, amounts), max_size=3))
        def fund(self, funded: list[tuple[str, int]]) -> None:
            """Start with some accounts opened and minted (swarm: none to three)."""
            for account, amount in funded:
                if account not in self.bal:
                    self.open(account)
                self.mint(account, amount, "treasury")

        def _apply(self, command: Any) -> Result:
            result = self.ledger.apply(command)
            assert isinstance(result, Ok | ErrorResult)
            return result

        def _expect(self, result: Result, ok: bool, what: str) -> None:
            if check_model:
                assert isinstance(result, Ok) == ok, f"{what}: got {result!r}, model says ok={ok}"

        @rule(account=accounts)
        def open(self, account: str) -> None:
            result = self._apply(Open(account))
            self._expect(result, account not in self.bal, f"open {account}")
            self.bal.setdefault(account, 0)

        @rule(account=accounts, amount=amounts, by=st.sampled_from(["treasury", "mallory"]))
        def mint(self, account: str, amount: int, by: str) -> None:
            result = self._apply(Mint(by, account, amount))
            ok = by == "treasury" and account in self.bal
            self._expect(result, ok, "mint")
            if isinstance(result, Ok):
                self.supply += amount
                self.bal[account] += amount

        @rule(account=accounts, amount=amounts)
        def burn(self, account: str, amount: int) -> None:
            result = self._apply(Burn("treasury", account, amount))
            self._expect(result, self.bal.get(account, -1) >= amount, "burn")
            if isinstance(result, Ok):
                self.supply -= amount
                self.bal[account] -= amount

        @rule(src=accounts, dst=accounts, amount=amounts, key=st.sampled_from(("", *KEYS)))
        def transfer(self, src: str, dst: str, amount: int, key: str) -> None:
            command = Transfer(src, dst, amount, key)
            result = self._apply(command)
            if key and key in self.keyed and self.ledger_remembers(key):
                before, cached = self.keyed[key]
                if before == command:
                    assert result == cached, "a retried transfer was not answered from the cache"
                else:
                    assert isinstance(result, ErrorResult) and result.code == "key_reused"
                return
            ok = src in self.bal and dst in self.bal and self.bal[src] >= amount
            self._expect(result, ok, f"transfer {src}->{dst} {amount}")
            if isinstance(result, Ok):
                self.bal[src] -= amount
                self.bal[dst] += amount
            else:
                assert result.amount == amount and result.account in (src, dst), result
            if key:
                self.keyed.pop(key, None)  # a re-used evicted key goes to the end
                self.keyed[key] = (command, result)

        def ledger_remembers(self, key: str) -> bool:
            # the ledger keeps the last max_keys keys; the model keeps the order too
            return key in list(self.keyed)[-CONFIG.max_keys :]

        @rule(key=st.sampled_from(KEYS))
        def retry_transfer(self, key: str) -> None:
            """A client retries a keyed transfer: applied at most once."""
            if key not in self.keyed or not self.ledger_remembers(key):
                return
            command, cached = self.keyed[key]
            before = self.ledger.balances()
            assert self._apply(command) == cached
            assert self.ledger.balances() == before, "a retried transfer applied twice"

        @rule(amount=st.integers(min_value=-3, max_value=0), src=accounts, dst=accounts)
        def bad_amount(self, amount: int, src: str, dst: str) -> None:
            result = self._apply(Transfer(src, dst, amount))
            assert isinstance(result, ErrorResult) and result.code == "invalid_amount"
            assert result.account == src and result.amount == amount

        @rule(hold=st.sampled_from(HOLDS), account=accounts, amount=amounts)
        def put_hold(self, hold: str, account: str, amount: int) -> None:
            result = self._apply(Hold(hold, account, amount))
            if self.held.get(hold) == (account, amount):
                self._expect(result, True, "hold retry")
                return
            ok = (
                hold not in self.held
                and hold not in self.closed
                and self.bal.get(account, -1) >= amount
            )
            self._expect(result, ok, f"hold {hold}")
            if isinstance(result, Ok):
                self.bal[account] -= amount
                self.held[hold] = (account, amount)

        @precondition(lambda self: any(v > 0 for v in self.bal.values()))
        @rule(data=st.data(), hold=st.sampled_from(HOLDS))
        def hold_funds(self, data: st.DataObject, hold: str) -> None:
            """An escrow hold within a funded account's balance (biased: most holds
            drawn by put_hold are refused)."""
            funded = sorted(a for a, v in self.bal.items() if v > 0)
            account = data.draw(st.sampled_from(funded))
            self.put_hold(hold, account, data.draw(st.integers(1, self.bal[account])))

        @precondition(lambda self: self.held)
        @rule(data=st.data(), payee=accounts, release=st.booleans())
        def close_hold(self, data: st.DataObject, payee: str, release: bool) -> None:
            """Settle (up to the amount held) or release an open hold (biased)."""
            hold = data.draw(st.sampled_from(sorted(self.held)))
            if release:
                self.release(hold)
            else:
                self.settle(hold, payee, data.draw(st.integers(0, self.held[hold][1])))

        @precondition(lambda self: self.sent_closes)
        @rule(data=st.data())
        def retry_close(self, data: st.DataObject) -> None:
            """A settle or release sent again (a client retrying after a lost answer, a
            duplicated message): the ledger must refuse it, never apply it twice."""
            command = data.draw(st.sampled_from(self.sent_closes))
            if isinstance(command, Settle):
                self.settle(command.hold, command.payee, command.amount)
            else:
                self.release(command.hold)

        @rule(hold=st.sampled_from(HOLDS), payee=accounts, amount=st.integers(0, 6))
        def settle(self, hold: str, payee: str, amount: int) -> None:
            result = self._apply(Settle(hold, payee, amount))
            self._sent_close(Settle(hold, payee, amount))
            if isinstance(result, Ok):
                self.closed.append(hold)
            if hold in self.held and payee in self.bal and amount <= self.held[hold][1]:
                self._expect(result, True, f"settle {hold}")
                account, held = self.held.pop(hold)
                self.bal[payee] += amount
                self.bal[account] += held - amount

        @rule(hold=st.sampled_from(HOLDS))
        def release(self, hold: str) -> None:
            result = self._apply(Release(hold))
            self._sent_close(Release(hold))
            if isinstance(result, Ok):
                self.closed.append(hold)
            if hold in self.held:
                self._expect(result, True, f"release {hold}")
                account, held = self.held.pop(hold)
                self.bal[account] += held

        def _sent_close(self, command: Settle | Release) -> None:
            """Remember the last few closes sent (bounded), for retry_close."""
            if command in self.sent_closes:
                self.sent_closes.remove(command)
            self.sent_closes = [*self.sent_closes[-3:], command]

        @rule()
        def restart(self) -> None:
            """The replica restarts from its snapshot."""
            fresh = ledger_cls()
            fresh.restore(self.ledger.snapshot())
            self.ledger = fresh

        # ------------------------------------------------------------ invariants

        @invariant()
        def Conservation(self) -> None:
            total = sum(self.ledger.balances().values())
            total += sum(n for _, n in self.ledger.holds().values())
            assert total == self.supply, (
                f"Conservation: balances + holds = {total}, minted - burned = {self.supply}"
            )

        @invariant()
        def NonNegative(self) -> None:
            negative = {a: v for a, v in self.ledger.balances().items() if v < 0}
            assert not negative, f"NonNegative: {negative}"

        @invariant()
        def JournalReplays(self) -> None:
            base_bal, base_holds = self.ledger.checkpoint()
            try:
                replayed = replay(base_bal, base_holds, self.ledger.journal)
            except KeyError as missing:
                raise AssertionError(f"JournalReplays: replay misses {missing}") from None
            assert replayed == (self.ledger.balances(), self.ledger.holds()), (
                f"JournalReplays: replay gives {replayed}"
            )
            assert len(self.ledger.journal) <= CONFIG.journal_window

        @invariant()
        def HoldsSettledOnce(self) -> None:
            assert len(set(self.closed)) == len(self.closed), f"HoldsSettledOnce: {self.closed}"

        @invariant()
        def MatchesModel(self) -> None:
            if not check_model:
                return
            assert self.ledger.balances() == self.bal
            assert self.ledger.holds() == self.held

    return LedgerMachine


def test_ledger_matches_model() -> None:
    run_state_machine_as_test(machine(), settings=SETTINGS)


# ------------------------------------------------------------------------ broken variants


class TransferCreatesCredit(Ledger):  # type: ignore[misc]
    def _do_transfer(self, c: Transfer) -> Result:
        if c.src not in self._bal or c.dst not in self._bal:
            return super()._do_transfer(c)
        self._bal[c.dst] += c.amount  # the payer is not debited
        return self._record(self._entry("transfer", c))

    def _entry(self, kind: str, c: Transfer) -> Any:
        from trio_foundation.protocols.ledger import Entry

        return Entry(self._seq + 1, kind, c.src, c.dst, c.amount)


class Overdraft(Ledger):  # type: ignore[misc]
    def _funded(self, account: str, amount: int) -> ErrorResult | None:
        return self._known(account, amount)  # no funds check


class DoubleSettle(Ledger):  # type: ignore[misc]
    def _close(self, hold: str) -> None:
        account, amount = self._holds[hold]
        super()._close(hold)
        self._closed.pop(hold)
        self._zombies[hold] = (account, amount)

    def _open_hold(self, hold: str, amount: int) -> ErrorResult | None:
        if hold not in self._holds and hold in self._zombies:
            self._holds[hold] = self._zombies.pop(hold)  # a closed hold comes back
        return super()._open_hold(hold, amount)

    @property
    def _zombies(self) -> dict[str, tuple[str, int]]:
        zombies: dict[str, tuple[str, int]] = self.__dict__.setdefault("_zombies", {})
        return zombies


class CheckpointDropsEntry(Ledger):  # type: ignore[misc]
    def _record(self, entry: Any) -> Ok:
        self._seq = entry.seq
        self._journal.append(entry)
        if len(self._journal) > self.config.journal_window:
            self._journal.popleft()  # dropped, not folded into the base
        return Ok(entry.seq)


# name -> (variant, the invariants that may catch it)
BROKEN: dict[str, tuple[type[Ledger], tuple[str, ...]]] = {
    "transfer_creates_credit": (TransferCreatesCredit, ("Conservation",)),
    "overdraft": (Overdraft, ("NonNegative",)),
    # the reopened hold also breaks Conservation, which may be checked first
    "double_settle": (DoubleSettle, ("HoldsSettledOnce", "Conservation")),
    "checkpoint_drops_entry": (CheckpointDropsEntry, ("JournalReplays",)),
}


def _caught(name: str) -> bool:
    """One fresh search (random seed, no database, no shrinking); True if caught as expected."""
    cls, expected = BROKEN[name]
    return caught_by_fresh_search(
        machine(cls, check_model=False), SETTINGS, expected, name=name, max_examples=200
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_is_caught(name: str) -> None:
    """Up to two fresh searches per broken ledger (each caught in >= 95 % of searches,
    measured: docs/economy.md); a second fresh search after a miss squares CI's miss rate."""
    assert _caught(name) or _caught(name), f"two fresh searches missed the {name} ledger"


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_variant_catch_rate(name: str) -> None:
    """``CATCH_RUNS`` (default 40) fresh searches each; the rate and its Wilson 95 %
    interval are printed (docs/economy.md has the figures)."""
    runs = int(os.environ.get("CATCH_RUNS", "40"))
    rate = measure_catch_rate(lambda: _caught(name), runs)
    print(f"\n{name}: {rate}")
    assert rate.rate >= 0.95
