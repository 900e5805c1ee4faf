"""Exact edges of the credit ledger (protocols/ledger.py) that the mutation run of
``protocols/`` found unchecked."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from trio_foundation.protocols.ledger import (
    Burn,
    Entry,
    ErrorResult,
    Hold,
    Ledger,
    LedgerConfig,
    LedgerError,
    Mint,
    Ok,
    Open,
    Release,
    Settle,
    Transfer,
    UnknownAccount,
)


def test_the_balance_of_a_missing_account_is_an_error_naming_it() -> None:
    ledger = Ledger()
    with pytest.raises(UnknownAccount, match=r"^no account 'ghost'$") as raised:
        ledger.balance("ghost")
    assert (raised.value.code, raised.value.account) == ("unknown_account", "ghost")


def test_a_burn_by_a_non_authority_is_refused_naming_it_and_burns_nothing() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 5))
    assert ledger.apply(Burn("mallory", "alice", 3)) == ErrorResult(
        "not_authority", "'mallory' may not burn", "alice", 3
    )
    assert (ledger.balance("alice"), ledger.supply) == (5, 5)


def test_a_burn_is_journaled_with_the_next_seq() -> None:
    ledger = Ledger()
    assert ledger.apply(Open("alice")) == Ok(1)
    assert ledger.apply(Mint("treasury", "alice", 5)) == Ok(2)
    assert ledger.apply(Burn("treasury", "alice", 3)) == Ok(3)
    assert ledger.journal[-1] == Entry(3, "burn", "alice", amount=3)
    assert ledger.apply(Open("bob")) == Ok(4)


def test_a_snapshot_whose_journal_does_not_replay_to_its_balances_is_refused() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 5))
    snap = msgspec.msgpack.decode(ledger.snapshot())
    (mint,) = [e for e in snap["journal"] if e["kind"] == "mint"]
    mint["amount"] = 4  # balances and supply still say 5: conservation holds
    fresh = Ledger()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=r"^snapshot journal does not replay to its balances$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_a_closed_or_unknown_hold_is_an_error_naming_it_and_no_account() -> None:
    ledger = Ledger()
    for account in ("alice", "shop"):
        ledger.apply(Open(account))
    ledger.apply(Mint("treasury", "alice", 10))
    ledger.apply(Hold("h1", "alice", 4))
    assert isinstance(ledger.apply(Settle("h1", "shop", 3)), Ok)
    assert ledger.apply(Settle("h1", "shop", 3)) == ErrorResult(
        "hold_closed", "hold 'h1' is already settled or released", "", 3
    )
    assert ledger.apply(Release("h1")) == ErrorResult(
        "hold_closed", "hold 'h1' is already settled or released", "", 0
    )
    assert ledger.apply(Settle("h2", "shop", 3)) == ErrorResult(
        "unknown_hold", "no open hold 'h2'", "", 3
    )
    assert ledger.balances() == {"alice": 7, "shop": 3}


def _small_ledger() -> Ledger:
    """alice 6 (4 of them held in h1), bob 0, h0 closed; at most 2 accounts and 1 hold."""
    ledger = Ledger(LedgerConfig(max_accounts=2, max_holds=1))
    for command in (
        Open("alice"),
        Open("bob"),
        Mint("treasury", "alice", 10),
        Hold("h0", "alice", 1),
        Release("h0"),
        Hold("h1", "alice", 4),
        Transfer("alice", "bob", 1, key="k1"),
    ):
        assert isinstance(ledger.apply(command), Ok), command
    return ledger


@pytest.mark.parametrize(
    ("command", "error"),
    [
        (Open("alice"), ErrorResult("account_exists", "account 'alice' exists", "alice")),
        (Open("carol"), ErrorResult("limit", "max_accounts (2) reached", "carol")),
        (Mint("bob", "alice", 1), ErrorResult("not_authority", "'bob' may not mint", "alice", 1)),
        (
            Mint("treasury", "alice", (1 << 63) - 1),
            ErrorResult("invalid_amount", "supply would exceed 2**63 - 1", "alice", (1 << 63) - 1),
        ),
        (Mint("treasury", "zed", 1), ErrorResult("unknown_account", "no account 'zed'", "zed", 1)),
        (
            Transfer("alice", "bob", 2, key="k1"),
            ErrorResult("key_reused", "key 'k1' names another transfer", "alice", 2),
        ),
        (
            Transfer("alice", "bob", 6),
            ErrorResult("insufficient_funds", "account 'alice' has 5, needs 6", "alice", 6),
        ),
        (Hold("h1", "alice", 3), ErrorResult("hold_exists", "hold 'h1' is open", "alice", 3)),
        (Hold("h0", "alice", 1), ErrorResult("hold_closed", "hold 'h0' was closed", "alice", 1)),
        (Hold("h2", "alice", 1), ErrorResult("limit", "max_holds (1) reached", "alice")),
        (Settle("h1", "zed", 1), ErrorResult("unknown_account", "no account 'zed'", "zed", 1)),
        (
            Settle("h1", "bob", 5),
            ErrorResult("insufficient_funds", "hold 'h1' holds 4, cannot settle 5", "alice", 5),
        ),
        (
            Open(""),
            ErrorResult("bad_command", "account must be a non-empty str, got ''"),
        ),
        (
            Transfer("alice", "bob", 0),
            ErrorResult("invalid_amount", "amount must be an int in [1, 2**63), got 0", "alice"),
        ),
        (
            Mint("treasury", "alice", 0),
            ErrorResult("invalid_amount", "amount must be an int in [1, 2**63), got 0", "alice"),
        ),
        ("transfer", ErrorResult("bad_command", "not a ledger command: str")),
    ],
)
def test_every_refusal_names_its_code_account_and_amount(command: Any, error: ErrorResult) -> None:
    ledger = _small_ledger()
    before = ledger.snapshot()
    assert ledger.apply(command) == error
    assert ledger.snapshot() == before


def test_the_supply_may_reach_2_63_minus_1_exactly() -> None:
    ledger = _small_ledger()
    top = (1 << 63) - 1
    assert isinstance(ledger.apply(Mint("treasury", "bob", top - 10)), Ok)
    assert ledger.supply == top
    assert ledger.apply(Mint("treasury", "bob", 1)) == ErrorResult(
        "invalid_amount", "supply would exceed 2**63 - 1", "bob", 1
    )


def test_a_snapshot_with_a_negative_balance_is_refused() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    snap = msgspec.msgpack.decode(ledger.snapshot())
    snap["balances"] = [["alice", -1]]
    snap["supply"] = -1  # conservation still holds
    fresh = Ledger()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=r"^snapshot has a negative balance$"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_the_closed_hold_table_forgets_the_oldest_first() -> None:
    ledger = Ledger(LedgerConfig(max_closed=1))
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 10))
    for hold in ("h1", "h2"):
        ledger.apply(Hold(hold, "alice", 1))
        ledger.apply(Release(hold))
    # h2, the newest, is remembered as closed; h1 was forgotten (unknown now)
    assert ledger.apply(Release("h2")).code == "hold_closed"  # type: ignore[union-attr]
    assert ledger.apply(Release("h1")).code == "unknown_hold"  # type: ignore[union-attr]


def test_a_hold_is_journaled_with_the_next_seq() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 5))
    assert ledger.apply(Hold("h", "alice", 2)) == Ok(3)
    assert ledger.journal[-1] == Entry(3, "hold", "alice", amount=2, hold="h")
    assert ledger.seq == 3
    assert ledger.apply(Release("h")) == Ok(4)


def _held() -> dict[str, Any]:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 5))
    ledger.apply(Hold("h", "alice", 2))
    snap: dict[str, Any] = msgspec.msgpack.decode(ledger.snapshot())
    return snap


def _ledger_refuses(snap: dict[str, Any], pattern: str) -> None:
    fresh = Ledger()
    before = fresh.snapshot()
    with pytest.raises(ValueError, match=pattern):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.snapshot() == before


def test_ledger_snapshot_refusals_are_exact() -> None:
    snap = _held()
    snap["version"] = 2
    _ledger_refuses(snap, r"^snapshot version 2, this library reads 1$")
    snap = _held()
    snap["supply"] = 6  # balances 3 + held 2 = 5
    _ledger_refuses(snap, r"^snapshot breaks conservation$")
    snap = _held()
    snap["journal"].append(  # a release of a hold the journal never opened
        {"seq": 4, "kind": "release", "account": "", "other": "", "amount": 0, "hold": "nope"}
    )
    _ledger_refuses(snap, r"^snapshot journal names an unknown account or hold: 'nope'$")
    snap = _held()
    snap["config"]["authorities"] = [""]
    _ledger_refuses(snap, r"^authorities must be non-empty strings, got \('',\)$")
    _ledger_refuses({"version": 1}, r"^not a ledger snapshot: \S")


@pytest.mark.parametrize(
    "name", ["max_accounts", "max_holds", "max_closed", "max_keys", "journal_window"]
)
def test_each_ledger_bound_below_one_is_named(name: str) -> None:
    bound: dict[str, Any] = {name: 0}
    with pytest.raises(ValueError, match=f"^{name} must be an int >= 1, got 0$"):
        Ledger(LedgerConfig(**bound))


def test_a_ledger_error_without_account_or_amount_names_none() -> None:
    error = LedgerError("limit", "too many")
    assert (error.code, str(error), error.account, error.amount) == ("limit", "too many", "", 0)


def test_a_release_is_journaled_with_its_account_and_amount() -> None:
    ledger = Ledger()
    ledger.apply(Open("alice"))
    ledger.apply(Mint("treasury", "alice", 5))
    ledger.apply(Hold("h", "alice", 2))
    assert ledger.apply(Release("h")) == Ok(4)
    assert ledger.journal[-1] == Entry(4, "release", "alice", amount=2, hold="h")
