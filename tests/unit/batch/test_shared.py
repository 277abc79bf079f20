"""SharedLedger: the batch's budget as a ledger row of the store (SQLite here)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.batch.guard import BatchRunGuard
from taskorch_nb.batch.shared import SharedLedger
from taskorch_nb.core.store import Store
from taskorch_nb.errors import BudgetExceededError


@pytest.fixture
def store(tmp_path):
    made = Store(str(tmp_path / "t.db"))
    yield made
    made.close()


def test_two_guards_on_one_ledger_never_pass_it(store, tmp_path) -> None:
    ledger = SharedLedger(store.ledger("batch-x", "0.30"))
    # A second process would open the same row by name.
    again = Store(str(tmp_path / "t.db"))
    other = SharedLedger(again.ledger("batch-x"))
    a = BatchRunGuard(1, batch=ledger)
    b = BatchRunGuard(1, batch=other)
    held = a.reserve(Decimal("0.20"))
    with pytest.raises(BudgetExceededError, match="batch budget exceeded"):
        b.reserve(Decimal("0.20"))
    assert b.waits_for_money()
    a.commit(held, Decimal("0.15"))
    b.commit(b.reserve(Decimal("0.15")), Decimal("0.15"))
    report = other.report()
    assert (report.spent, report.reserved, report.limit, report.calls) == (
        Decimal("0.30"), 0, Decimal("0.30"), 2)
    ledger.extend("0.70")
    assert other.limit == 1
    assert other.remaining == Decimal("0.70")
    again.close()


def test_a_refusal_names_the_shared_budget(store) -> None:
    ledger = SharedLedger(store.ledger("batch-y", "0.01"))
    with pytest.raises(BudgetExceededError, match="shared budget 'batch-y' exceeded") as caught:
        ledger.reserve("0.02")
    assert caught.value.remaining == Decimal("0.01")
    assert ledger.name == "batch-y"
