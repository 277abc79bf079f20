"""A run's guard inside a batch: every reservation is taken from the batch's budget too.

The batch's budget (`Ledger`) is one `BudgetGuard` in-process, or the shared ledger of
a PostgreSQL store when runs execute in other processes; either way a reservation
there is an atomic "take it if it fits", so the runs of a batch together never spend
more than its budget, whatever their per-run caps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.core.budget import BudgetGuard, Reservation
from taskorch_nb.core.events import BudgetEvent
from taskorch_nb.core.money import format_usd
from taskorch_nb.errors import BudgetExceededError


class Ledger(Protocol):
    """The batch's budget: what `BudgetGuard` offers, in one process or shared."""

    @property
    def limit(self) -> Decimal: ...

    @property
    def spent(self) -> Decimal: ...

    @property
    def remaining(self) -> Decimal: ...

    def reserve(self, amount: Any, **tags: Any) -> Any: ...

    def commit(self, reservation: Any, actual: Any, **kwargs: Any) -> None: ...

    def release(self, reservation: Any) -> None: ...

    def extend(self, extra: Any) -> None: ...


class BatchRunGuard(BudgetGuard):
    """A run's `BudgetGuard` (its own cap, events, checkpoint) that also reserves, settles
    and releases every call against `batch`, the budget all runs of the batch share.

    The batch is asked first: a refusal there pauses the run like its own limit would,
    with a `budget.rejected` event on the run that says it was the batch's budget."""

    def __init__(self, limit: Decimal | float | int | str, *, batch: Ledger,
                 warn_below: float = 0.20,
                 on_event: Callable[[BudgetEvent], Any] | None = None,
                 max_tokens: int | None = None, max_requests: int | None = None) -> None:
        super().__init__(limit, warn_below=warn_below, on_event=on_event,
                         max_tokens=max_tokens, max_requests=max_requests)
        self.batch = batch
        self._outer: dict[int, Any] = {}
        self._outer_lock = threading.Lock()
        self.refused: Decimal | None = None
        """What the last call refused by the batch's budget asked for (None: no refusal
        since its last reservation): money other runs only hold, or money gone?"""

    @classmethod
    def wrapping(cls, guard: BudgetGuard, batch: Ledger) -> BatchRunGuard:
        """The same run guard (limit, caps, what it already spent), now inside `batch`."""
        made = cls(guard.limit, batch=batch, warn_below=guard.warn_below,
                   on_event=guard.on_event, max_tokens=guard.max_tokens,
                   max_requests=guard.max_requests)
        state = guard.checkpoint()
        made._spent = Decimal(state["spent"])
        made._tokens, made._requests = state["tokens"], state["requests"]
        made._calls, made._warned = state["calls"], state["warned"]
        made._exceeded = made._spent > made._limit
        for name in ("by_agent", "by_model", "by_tool"):
            setattr(made, f"_{name}", {k: Decimal(v) for k, v in state[name].items()})
        return made

    @property
    def remaining(self) -> Decimal:
        """What this run may still reserve: its own room, or the batch's if smaller."""
        return min(super().remaining, self.batch.remaining)

    def reserve(self, amount: Decimal | float | int | str, *, agent: str | None = None,
                model: str | None = None, tool: str | None = None, tokens: int = 0,
                requests: int = 0) -> Reservation:
        try:
            outer = self.batch.reserve(amount, agent=agent, model=model, tool=tool)
        except BudgetExceededError as exc:
            self._refused_by_batch(exc, agent, model, tool)
        try:
            mine = super().reserve(amount, agent=agent, model=model, tool=tool,
                                   tokens=tokens, requests=requests)
        except BaseException:
            self.batch.release(outer)
            raise
        with self._outer_lock:
            self._outer[mine.id] = outer
        self.refused = None
        return mine

    def waits_for_money(self) -> bool:
        """Refused by the batch while the money it asked for is only held by other runs'
        open reservations: once they settle, it may fit."""
        asked = self.refused
        return asked is not None and self.batch.limit - self.batch.spent >= asked

    def commit(self, reservation: Reservation, actual: Decimal | float | int | str, *,
               tokens: int | None = None) -> None:
        super().commit(reservation, actual, tokens=tokens)
        with self._outer_lock:
            outer = self._outer.pop(reservation.id)
        self.batch.commit(outer, actual)

    def release(self, reservation: Reservation) -> None:
        super().release(reservation)
        with self._outer_lock:
            outer = self._outer.pop(reservation.id)
        self.batch.release(outer)

    def _refused_by_batch(self, exc: BudgetExceededError, agent: str | None,
                          model: str | None, tool: str | None) -> Any:
        self.refused = exc.requested
        with self._lock:
            self._exceeded = True
            report = self._report()
            # The batch's remaining and limit: those are what refused the call.
            event = replace(self._event("budget.rejected", exc.requested or Decimal(0), None,
                                        agent, model, tool),
                            remaining=exc.remaining, limit=exc.limit)
        if self.on_event is not None:
            self.on_event(event)
        raise BudgetExceededError(
            f"batch budget exceeded: call needs up to {format_usd(exc.requested or 0)}, "
            f"{format_usd(self.batch.remaining)} of the batch's "
            f"{format_usd(self.batch.limit)} left",
            requested=exc.requested, remaining=self.batch.remaining, limit=self.batch.limit,
            report=report,
        ) from exc


__all__ = ["BatchRunGuard", "Ledger"]
