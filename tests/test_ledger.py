"""Unit tests of the credit ledger (protocols/ledger.py) and of docs/economy.md's example."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest

from trio_foundation.protocols.ledger import (
    Burn,
    ErrorResult,
    Hold,
    InsufficientFunds,
    InvalidAmount,
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
    UnknownHold,
    encode,
    raise_for,
    replay,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "economy.md"


def funded(**balances: int) -> Ledger:
    ledger = Ledger(LedgerConfig(journal_window=4, max_keys=2))
    for account, amount in balances.items():
        raise_for(ledger.apply(Open(account)))
        if amount:
            raise_for(ledger.apply(Mint("treasury", account, amount)))
    return ledger


def test_transfer_without_funds_is_refused_naming_account_and_amount() -> None:
    ledger = funded(alice=5, bob=0)
    result = ledger.apply(Transfer("alice", "bob", 7))
    assert result == ErrorResult("insufficient_funds", "account 'alice' has 5, needs 7", "alice", 7)
    with pytest.raises(InsufficientFunds) as info:
        raise_for(result)
    assert (info.value.account, info.value.amount) == ("alice", 7)
    assert ledger.balances() == {"alice": 5, "bob": 0}


@pytest.mark.parametrize("amount", [0, -1, 2**63, True, 1.5])
def test_bad_amounts_are_refused(amount: object) -> None:
    ledger = funded(alice=5, bob=0)
    result = ledger.apply(Transfer("alice", "bob", amount))  # type: ignore[arg-type]
    assert isinstance(result, ErrorResult) and result.code == "invalid_amount"
    assert result.account == "alice" and repr(amount) in result.message
    with pytest.raises(InvalidAmount):
        raise_for(result)


def test_unknown_account_and_non_authority_are_refused() -> None:
    ledger = funded(alice=5)
    with pytest.raises(UnknownAccount, match="no account 'carol'") as info:
        raise_for(ledger.apply(Transfer("alice", "carol", 1)))
    assert info.value.account == "carol" and info.value.amount == 1
    with pytest.raises(LedgerError, match="'alice' may not mint") as err:
        raise_for(ledger.apply(Mint("alice", "alice", 1)))
    assert err.value.code == "not_authority"


def test_hold_settle_release_and_double_settle() -> None:
    ledger = funded(alice=10, bob=0, seller=0)
    raise_for(ledger.apply(Hold("bid-1", "alice", 6)))
    raise_for(ledger.apply(Hold("bid-1", "alice", 6)))  # a retry holds once
    raise_for(ledger.apply(Hold("bid-2", "alice", 4)))
    assert ledger.balances()["alice"] == 0
    with pytest.raises(InsufficientFunds):
        raise_for(ledger.apply(Hold("bid-3", "alice", 1)))
    raise_for(ledger.apply(Settle("bid-1", "seller", 5)))  # the price: 1 comes back
    raise_for(ledger.apply(Release("bid-2")))
    assert ledger.balances() == {"alice": 5, "bob": 0, "seller": 5}
    with pytest.raises(UnknownHold, match="already settled or released"):
        raise_for(ledger.apply(Settle("bid-1", "seller", 5)))
    with pytest.raises(UnknownHold, match="no open hold 'nope'"):
        raise_for(ledger.apply(Release("nope")))
    assert ledger.supply == 10


def test_idempotency_key_applies_once_and_is_bounded() -> None:
    ledger = funded(alice=10, bob=0)
    first = ledger.apply(Transfer("alice", "bob", 3, key="k1"))
    assert ledger.apply(Transfer("alice", "bob", 3, key="k1")) == first
    assert ledger.balances() == {"alice": 7, "bob": 3}
    reused = ledger.apply(Transfer("alice", "bob", 4, key="k1"))
    assert isinstance(reused, ErrorResult) and reused.code == "key_reused"
    ledger.apply(Transfer("alice", "bob", 1, key="k2"))
    ledger.apply(Transfer("alice", "bob", 1, key="k3"))  # k1 is evicted (max_keys=2)
    ledger.apply(Transfer("alice", "bob", 3, key="k1"))
    assert ledger.balances() == {"alice": 2, "bob": 8}


def test_journal_window_and_checkpoint_replay() -> None:
    ledger = funded(alice=10, bob=0)
    for _ in range(7):
        raise_for(ledger.apply(Transfer("alice", "bob", 1)))
    assert len(ledger.journal) == 4
    assert [e.seq for e in ledger.journal] == list(range(ledger.seq - 3, ledger.seq + 1))
    base_bal, base_holds = ledger.checkpoint()
    assert replay(base_bal, base_holds, ledger.journal) == (ledger.balances(), ledger.holds())


def test_snapshot_restore_and_bytes_commands() -> None:
    ledger = funded(alice=10, bob=0)
    assert isinstance(ledger.apply(encode(Hold("h", "alice", 2))), Ok)
    assert isinstance(ledger.apply(b"\xc1garbage"), ErrorResult)
    copy = Ledger()
    copy.restore(ledger.snapshot())
    assert copy.snapshot() == ledger.snapshot()
    assert copy.apply(Transfer("alice", "bob", 8)) == ledger.apply(Transfer("alice", "bob", 8))
    assert copy.balances() == ledger.balances()


def test_restore_refuses_a_snapshot_that_breaks_conservation() -> None:
    ledger = funded(alice=10)
    snap = msgspec.msgpack.decode(ledger.snapshot())
    snap["supply"] = 11
    fresh = Ledger()
    with pytest.raises(ValueError, match="conservation"):
        fresh.restore(msgspec.msgpack.encode(snap))
    assert fresh.balances() == {}
    with pytest.raises(ValueError, match="not a ledger snapshot"):
        fresh.restore(b"nope")


def test_burn_and_limits() -> None:
    ledger = Ledger(LedgerConfig(max_accounts=1))
    raise_for(ledger.apply(Open("a")))
    assert ledger.apply(Open("b")) == ErrorResult("limit", "max_accounts (1) reached", "b")
    raise_for(ledger.apply(Mint("treasury", "a", 3)))
    raise_for(ledger.apply(Burn("treasury", "a", 2)))
    assert ledger.supply == 1 and ledger.balance("a") == 1
    with pytest.raises(ValueError, match="journal_window must be an int >= 1"):
        Ledger(LedgerConfig(journal_window=0))


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "docs/economy.md lost its example"
    exec(compile(blocks[0], str(DOC), "exec"), {})
    out = capsys.readouterr().out
    assert "{'alice': 7, 'bob': 3, 'shop': 0}" in out
    assert "insufficient_funds alice 100" in out


def test_a_transfer_to_the_same_account_is_refused_and_changes_nothing() -> None:
    """Ledger.tla's Transfer requires a # b (the trace validation found the core applying
    Transfer(a, a, n) as a journaled no-op)."""
    ledger = funded(a=5)
    before = (ledger.balances(), ledger.journal)
    result = ledger.apply(Transfer("a", "a", 3, key="k"))
    assert result == ErrorResult("same_account", "transfer from 'a' to itself", "a", 3)
    assert (ledger.balances(), ledger.journal) == before
    with pytest.raises(LedgerError, match="to itself"):
        raise_for(result)
