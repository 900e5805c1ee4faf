"""coordination/raft_ledger.py: every argument refused by its name before anything
reaches the log, and an invalid amount charged to the right account (mutation
survivors: a sampled one named a hold id ``None``)."""

from __future__ import annotations

from typing import Any

import pytest

from trio_foundation.coordination.raft_ledger import RaftLedger
from trio_foundation.protocols import ledger as led


class _Untouched:
    """A cluster that must not be reached: bad input is refused before."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    async def submit(self, command: Any) -> Any:
        self.calls.append(command)
        raise AssertionError("a refused call reached the cluster")

    async def submit_many(self, commands: list[Any]) -> list[Any]:
        self.calls.append(commands)
        raise AssertionError("a refused call reached the cluster")

    async def read(self, query: Any) -> Any:
        self.calls.append(query)
        raise AssertionError("a refused call reached the cluster")


# (the argument's name, a call with that argument not a str, the same with it empty)
_NAMED = [
    ("account", lambda lg, v: lg.open(v)),
    ("account", lambda lg, v: lg.mint(v, 1)),
    ("by", lambda lg, v: lg.mint("a", 1, by=v)),
    ("account", lambda lg, v: lg.burn(v, 1)),
    ("by", lambda lg, v: lg.burn("a", 1, by=v)),
    ("src", lambda lg, v: lg.transfer(v, "b", 1)),
    ("dst", lambda lg, v: lg.transfer("a", v, 1)),
    ("hold", lambda lg, v: lg.hold(v, "a", 1)),
    ("account", lambda lg, v: lg.hold("h", v, 1)),
    ("hold", lambda lg, v: lg.settle(v, "a", 1)),
    ("payee", lambda lg, v: lg.settle("h", v, 1)),
    ("hold", lambda lg, v: lg.release(v)),
    ("account", lambda lg, v: lg.balance(v)),
]


@pytest.mark.parametrize(("name", "call"), _NAMED)
async def test_every_name_argument_is_refused_by_name(name: str, call: Any) -> None:
    raft = _Untouched()
    ledger = RaftLedger(raft)
    with pytest.raises(TypeError, match=rf"^{name} must be a str, got int$"):
        await call(ledger, 7)
    with pytest.raises(ValueError, match=rf"^{name} must be a non-empty str$"):
        await call(ledger, "")
    assert raft.calls == []


@pytest.mark.parametrize(
    ("account", "call"),
    [
        ("alice", lambda lg: lg.mint("alice", 0)),
        ("alice", lambda lg: lg.burn("alice", -1)),
        ("alice", lambda lg: lg.transfer("alice", "bob", 0)),
        ("alice", lambda lg: lg.hold("h", "alice", 0)),
        ("bob", lambda lg: lg.settle("h", "bob", -1)),
    ],
)
async def test_an_invalid_amount_names_the_account_it_was_for(account: str, call: Any) -> None:
    raft = _Untouched()
    with pytest.raises(led.InvalidAmount) as caught:
        await call(RaftLedger(raft))
    assert caught.value.account == account
    assert caught.value.code == "invalid_amount"
    assert raft.calls == []


async def test_a_settle_of_zero_is_an_amount_a_transfer_of_zero_is_not() -> None:
    ledger = RaftLedger(_Untouched())
    prefix = r"^amount must be an int in "
    with pytest.raises(led.InvalidAmount, match=prefix + r"\[1, 2\*\*63\), got 0$"):
        await ledger.transfer("a", "b", 0)
    with pytest.raises(led.InvalidAmount, match=prefix + r"\[0, 2\*\*63\), got -1$"):
        await ledger.settle("h", "b", -1)
