"""BatchRunGuard: a run's own guard that reserves against the batch's budget too."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.batch.guard import BatchRunGuard
from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.errors import BudgetExceededError


def test_every_call_is_reserved_settled_and_released_in_both() -> None:
    batch = BudgetGuard(1)
    events = []
    guard = BatchRunGuard("0.5", batch=batch, on_event=events.append)
    first = guard.reserve(Decimal("0.2"), agent="researcher", model="m")
    assert (guard.reserved, batch.reserved) == (Decimal("0.2"), Decimal("0.2"))
    guard.commit(first, Decimal("0.05"))
    assert (guard.spent, batch.spent, batch.reserved) == (Decimal("0.05"),) * 2 + (0,)
    second = guard.reserve(Decimal("0.1"))
    guard.release(second)
    assert guard.reserved == batch.reserved == 0
    assert batch.spent == Decimal("0.05")
    assert [e.type for e in events] == ["budget.approved", "budget.settled",
                                        "budget.approved", "budget.released"]


def test_the_batch_refuses_first_and_says_so() -> None:
    batch = BudgetGuard("0.30")
    other = BatchRunGuard(1, batch=batch)
    held = other.reserve(Decimal("0.25"))
    events = []
    guard = BatchRunGuard(1, batch=batch, on_event=events.append)
    assert guard.remaining == Decimal("0.05")  # the batch's room, smaller than its own
    with pytest.raises(BudgetExceededError, match=r"batch budget exceeded: call needs up to "
                       r"\$0.10, \$0.05 of the batch's \$0.30 left") as caught:
        guard.reserve(Decimal("0.10"))
    assert caught.value.limit == Decimal("0.30")
    assert guard.status == "exceeded"
    assert guard.reserved == 0  # nothing left held in either
    assert batch.reserved == Decimal("0.25")
    assert events[-1].type == "budget.rejected"
    assert events[-1].limit == Decimal("0.30")
    # The money is only held by `other`'s call in flight: worth waiting for.
    assert guard.waits_for_money()
    other.commit(held, Decimal("0.25"))
    assert not guard.waits_for_money()  # now it is spent: really gone


def test_its_own_cap_refuses_and_gives_the_batch_its_share_back() -> None:
    batch = BudgetGuard(5)
    guard = BatchRunGuard("0.10", batch=batch)
    with pytest.raises(BudgetExceededError, match="budget exceeded"):
        guard.reserve(Decimal("0.20"))
    assert batch.reserved == 0
    assert guard.refused is None  # not the batch's refusal


def test_wrapping_keeps_what_the_run_already_spent() -> None:
    plain = BudgetGuard(2, max_requests=9)
    plain.commit(plain.reserve(Decimal("0.5"), agent="a", requests=1), Decimal("0.4"))
    batch = BudgetGuard(10)
    wrapped = BatchRunGuard.wrapping(plain, batch)
    assert (wrapped.limit, wrapped.spent, wrapped.requests) == (2, Decimal("0.4"), 1)
    assert wrapped.max_requests == 9
    assert wrapped.report().by_agent == {"a": Decimal("0.4")}
    assert wrapped.checkpoint() == plain.checkpoint()
