"""The batch's budget as a ledger in the store, shared by every worker process.

`core.ledger.Ledger` keeps the budget as one row that reserve changes with a
conditional update, so workers on other machines reserving at once never pass it.
This adapter gives it the face `BatchRunGuard` expects of a batch's budget (a refusal
is a `BudgetExceededError`, a reservation an opaque token) and a `CostReport`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from taskorch_nb.core.budget import CostReport
from taskorch_nb.core.ledger import Ledger
from taskorch_nb.core.money import parse_usd
from taskorch_nb.errors import BudgetExceededError


def _usd(value: Any) -> Decimal:
    return value if type(value) is Decimal else parse_usd(value, "amount", allow_zero=True)


class SharedLedger:
    """A batch's budget every process on the store reserves against (see module doc)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    @property
    def name(self) -> str:
        return self.ledger.name

    @property
    def limit(self) -> Decimal:
        return self.ledger.state().limit

    @property
    def spent(self) -> Decimal:
        return self.ledger.state().spent

    @property
    def remaining(self) -> Decimal:
        return self.ledger.state().remaining

    def reserve(self, amount: Any, **tags: Any) -> int:
        value = _usd(amount)
        units = self.ledger.reserve(value)
        if units is None:
            state = self.ledger.state()
            raise BudgetExceededError(self.ledger.refusal(value), requested=value,
                                      remaining=state.remaining, limit=state.limit)
        return units

    def commit(self, reservation: int, actual: Any, **kwargs: Any) -> None:
        self.ledger.settle(reservation, _usd(actual))

    def release(self, reservation: int) -> None:
        self.ledger.release(reservation)

    def extend(self, extra: Any) -> None:
        self.ledger.extend(extra)

    def report(self) -> CostReport:
        """Spent, reserved and calls as the store has them now (all workers together)."""
        state = self.ledger.state()
        return CostReport(spent=state.spent, limit=state.limit, remaining=state.remaining,
                          calls=state.calls, reserved=state.reserved)

    def __repr__(self) -> str:
        return f"SharedLedger({self.ledger!r})"


__all__ = ["SharedLedger"]
