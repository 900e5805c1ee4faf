"""Exact edges of the credit ledger (protocols/ledger.py) that the mutation run of
``protocols/`` found unchecked."""

from __future__ import annotations

import pytest

from trio_foundation.protocols.ledger import Ledger, UnknownAccount


def test_the_balance_of_a_missing_account_is_an_error_naming_it() -> None:
    ledger = Ledger()
    with pytest.raises(UnknownAccount, match=r"^no account 'ghost'$") as raised:
        ledger.balance("ghost")
    assert (raised.value.code, raised.value.account) == ("unknown_account", "ghost")
