"""Nested budgets: a child's reservations are held, silently, in its parent."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.errors import BudgetExceededError


def test_a_child_spends_from_its_parent_and_the_parent_stays_quiet() -> None:
    parent_events, child_events = [], []
    parent = BudgetGuard("1.00", on_event=parent_events.append)
    child = BudgetGuard("0.50", on_event=child_events.append, parent=parent)
    r = child.reserve("0.20", model="m")
    assert parent.reserved == Decimal("0.20")
    child.commit(r, "0.10")
    assert (child.spent, parent.spent, parent.reserved) == (Decimal("0.10"),) * 2 + (0,)
    assert parent.report().by_model == {"m": Decimal("0.10")}
    assert parent_events == []
    assert [e.type for e in child_events] == ["budget.approved", "budget.settled"]
    released = child.reserve("0.05")
    child.release(released)
    assert parent.reserved == 0


def test_a_child_never_passes_its_parents_remainder() -> None:
    parent = BudgetGuard("1.00")
    other = parent.reserve("0.90")
    events = []
    child = BudgetGuard("5.00", on_event=events.append, parent=parent)
    with pytest.raises(BudgetExceededError, match="enclosing budget exceeded"):
        child.reserve("0.20")
    assert (child.reserved, parent.reserved) == (0, Decimal("0.90"))
    assert child.status == "exceeded"
    assert [e.type for e in events] == ["budget.rejected"]
    parent.release(other)
    child.commit(child.reserve("0.20"), "0.20")
    assert parent.spent == Decimal("0.20")


def test_three_levels_and_threads_keep_every_total_exact() -> None:
    root = BudgetGuard("10")
    middle = BudgetGuard("5", parent=root)
    leaf = BudgetGuard("5", parent=middle)

    def spend() -> None:
        for _ in range(50):
            leaf.commit(leaf.reserve("0.01"), "0.01")

    threads = [threading.Thread(target=spend) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert leaf.spent == middle.spent == root.spent == Decimal("2.00")
    assert root.reserved == middle.reserved == 0
