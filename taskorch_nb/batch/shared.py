"""The batch's budget as a ledger in the store, shared by every worker process.

`core.ledger.Ledger` keeps the budget as one row that reserve changes with a
conditional update, so workers on other machines reserving at once never pass it.
This adapter gives it the face `BatchRunGuard` expects of a batch's budget (a refusal
is a `BudgetExceededError`, a reservation an opaque token) and a `CostReport`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from taskorch_nb.core.budget import CostReport
from taskorch_nb.core.ledger import Ledger
from taskorch_nb.core.money import parse_usd
from taskorch_nb.errors import BudgetExceededError

#: Seconds a read of the ledger's remaining money may be reused by safety checks.
FRESH = 0.25


def _usd(value: Any) -> Decimal:
    return value if type(value) is Decimal else parse_usd(value, "amount", allow_zero=True)


class SharedLedger:
    """A batch's budget every process on the store reserves against (see module doc)."""

    def __init__(self, ledger: Ledger, *, fresh: float = FRESH) -> None:
        self.ledger = ledger
        self.fresh = fresh
        self._seen: tuple[float, Decimal] | None = None  # (monotonic time, remaining)

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
        """Up to `fresh` seconds old: it only tells a run's safety check whether to try;
        each reservation is decided by the database itself, never by this number."""
        now = time.monotonic()
        seen = self._seen
        if seen is None or now - seen[0] > self.fresh:
            seen = self._seen = (now, self.ledger.state().remaining)
        return seen[1]

    def reserve(self, amount: Any, **tags: Any) -> int:
        value = _usd(amount)
        self._seen = None
        units = self.ledger.reserve(value)
        if units is None:
            state = self.ledger.state()
            raise BudgetExceededError(self.ledger.refusal(value), requested=value,
                                      remaining=state.remaining, limit=state.limit)
        return units

    def commit(self, reservation: int, actual: Any, **kwargs: Any) -> None:
        self._seen = None
        self.ledger.settle(reservation, _usd(actual))

    def release(self, reservation: int) -> None:
        self._seen = None
        self.ledger.release(reservation)

    def extend(self, extra: Any) -> None:
        self._seen = None
        self.ledger.extend(extra)

    def report(self) -> CostReport:
        """Spent, reserved and calls as the store has them now (all workers together)."""
        state = self.ledger.state()
        return CostReport(spent=state.spent, limit=state.limit, remaining=state.remaining,
                          calls=state.calls, reserved=state.reserved)

    def __repr__(self) -> str:
        return f"SharedLedger({self.ledger!r})"


__all__ = ["SharedLedger"]
