"""The budget guard: every paid call is approved before it is made.

A call reserves its worst-case cost (`reserve`), and after it returns settles
its real cost (`commit`) or, if it failed, gives the reservation back
(`release`). Spent plus reserved never passes the limit, so concurrent agents
cannot overspend between them. State changes are reported as `BudgetEvent`s.

Money is not the only bound: `max_tokens` and `max_requests` cap the model tokens
and model requests (as pydantic-ai's `UsageLimits` do), reserved and settled the
same way, so a free local model still has a bound.

Thread- and task-safe: one `threading.Lock` guards a few Decimal additions;
events are emitted after the lock is released, so a slow subscriber cannot
stall other callers.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from taskorch_nb.core.display import mimebundle
from taskorch_nb.core.events import BudgetEvent
from taskorch_nb.core.money import MAX_USD, format_usd, parse_usd
from taskorch_nb.errors import BudgetExceededError, ConfigurationError

if TYPE_CHECKING:
    from taskorch_nb.core.ledger import Ledger

BudgetStatus = Literal["ok", "warning", "exceeded"]

#: Key under which costs of untagged calls are counted in `by_agent` and `by_model`.
UNTAGGED = "unknown"

_ZERO = Decimal(0)

#: Set while a child guard acts on its parent: the parent's events would count twice.
class _Quiet(threading.local):
    on = False


_quiet = _Quiet()


@dataclass(frozen=True, slots=True)
class Reservation:
    """Money set aside for one call, until it is committed or released."""

    id: int
    amount: Decimal
    agent: str | None = None
    model: str | None = None
    tool: str | None = None
    tokens: int = 0
    requests: int = 0
    shared: int = 0
    """Nano-dollars reserved in the guard's shared ledger, if it has one."""


@dataclass(frozen=True, slots=True)
class CostReport:
    """What a budget has spent, and on what.

    `by_agent` and `by_model` sum to `spent` (untagged costs under "unknown");
    `by_tool` holds only the costs committed with a `tool` tag.
    """

    spent: Decimal
    limit: Decimal
    remaining: Decimal
    by_agent: dict[str, Decimal] = field(default_factory=dict)
    by_model: dict[str, Decimal] = field(default_factory=dict)
    by_tool: dict[str, Decimal] = field(default_factory=dict)
    calls: int = 0
    reserved: Decimal = _ZERO

    @property
    def used_fraction(self) -> float:
        """Spent over limit (0.0 to 1.0, above 1.0 after an overspend)."""
        return float(self.spent / self.limit) if self.limit else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: amounts as float USD."""
        return {
            "spent": float(self.spent),
            "limit": float(self.limit),
            "remaining": float(self.remaining),
            "reserved": float(self.reserved),
            "calls": self.calls,
            "by_agent": {k: float(v) for k, v in self.by_agent.items()},
            "by_model": {k: float(v) for k, v in self.by_model.items()},
            "by_tool": {k: float(v) for k, v in self.by_tool.items()},
        }

    def breakdowns(self) -> list[tuple[str, list[tuple[str, Decimal]]]]:
        """`[("agent", [(name, cost), ...]), ...]`: the non-empty groups, costliest first."""
        groups = [("agent", self.by_agent), ("model", self.by_model), ("tool", self.by_tool)]
        return [(name, sorted(values.items(), key=lambda kv: (-kv[1], kv[0])))
                for name, values in groups if values]

    def __str__(self) -> str:
        head = (
            f"Cost: {format_usd(self.spent)} of {format_usd(self.limit)} "
            f"({self.used_fraction:.1%} used, {format_usd(self.remaining)} left, "
            f"{self.calls} calls)"
        )
        lines = [head]
        for name, items in self.breakdowns():
            lines.append(f"  by {name}: " + ", ".join(f"{k} {format_usd(v)}" for k, v in items))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"CostReport(spent={self.spent}, limit={self.limit}, remaining={self.remaining}, "
            f"calls={self.calls})"
        )

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, str(self), include, exclude)


def _count_limit(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{what} must be a whole number >= 1 (or None), got {value!r}")
    return value


def _amount(value: Any, what: str) -> Decimal:
    if type(value) is Decimal and value.is_finite() and 0 <= value <= MAX_USD:
        return value  # the hot path: prices already come as Decimal
    return parse_usd(value, what, allow_zero=True)


class BudgetGuard:
    """A USD limit that paid calls reserve against before they run.

    `status` is "warning" once a reservation left less than `warn_below` of the
    limit (reported once, as `budget.warning`), "exceeded" once a reservation
    was refused or an overspend passed the limit; `extend` clears both when the
    new limit leaves room again. `max_tokens` / `max_requests` (None: no cap) bound the
    model tokens (input plus output) and model requests; a call that could pass one is
    refused like one that could pass the money limit. With a `ledger` (a budget shared
    through the store, `store.ledger(name, limit)`) every reservation must also fit
    there: the guard's own limit caps this run, the ledger all who share it.
    """

    def __init__(
        self,
        limit: Decimal | float | int | str,
        *,
        warn_below: float = 0.20,
        on_event: Callable[[BudgetEvent], Any] | None = None,
        max_tokens: int | None = None,
        max_requests: int | None = None,
        parent: BudgetGuard | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        parsed = parse_usd(limit, "budget")
        self.ledger = ledger
        self.parent = parent
        """A guard every reservation is also held in, silently (nested budgets): a child
        never spends more than its parent has left, and the parent counts what it spent."""
        self._held: dict[int, Reservation] = {}
        self._max_tokens = _count_limit(max_tokens, "max_tokens")
        self._max_requests = _count_limit(max_requests, "max_requests")
        self._tokens = self._requests = 0
        self._tokens_reserved = self._requests_reserved = 0
        if isinstance(warn_below, bool) or not 0 <= warn_below < 1:
            raise ConfigurationError(
                f"warn_below must be a fraction in [0, 1), got {warn_below!r}: e.g. 0.20 warns "
                "when less than 20 % of the budget is left"
            )
        self.warn_below = warn_below
        self.on_event = on_event
        self._fraction = Decimal(str(warn_below))
        self._limit = parsed
        self._threshold = parsed * self._fraction
        self._spent = _ZERO
        self._reserved = _ZERO
        self._open: dict[int, Reservation] = {}
        self._ids = itertools.count(1)
        self._warned = False
        self._exceeded = False
        self._calls = 0
        self._by_agent: dict[str, Decimal] = {}
        self._by_model: dict[str, Decimal] = {}
        self._by_tool: dict[str, Decimal] = {}
        self._lock = threading.Lock()

    # -- state ---------------------------------------------------------------------------

    @property
    def limit(self) -> Decimal:
        return self._limit

    @property
    def spent(self) -> Decimal:
        return self._spent

    @property
    def reserved(self) -> Decimal:
        return self._reserved

    @property
    def remaining(self) -> Decimal:
        """Limit minus spent minus reserved (negative only after an overspend)."""
        with self._lock:
            return self._limit - self._spent - self._reserved

    @property
    def max_tokens(self) -> int | None:
        return self._max_tokens

    @property
    def max_requests(self) -> int | None:
        return self._max_requests

    @property
    def tokens(self) -> int:
        """Model tokens (input plus output) settled so far."""
        return self._tokens

    @property
    def requests(self) -> int:
        """Model requests settled so far."""
        return self._requests

    @property
    def status(self) -> BudgetStatus:
        if self._exceeded:
            return "exceeded"
        return "warning" if self._warned else "ok"

    def report(self) -> CostReport:
        """A snapshot of spending so far."""
        with self._lock:
            return self._report()

    def _report(self) -> CostReport:
        return CostReport(
            spent=self._spent,
            limit=self._limit,
            remaining=self._limit - self._spent - self._reserved,
            by_agent=dict(self._by_agent),
            by_model=dict(self._by_model),
            by_tool=dict(self._by_tool),
            calls=self._calls,
            reserved=self._reserved,
        )

    # -- operations ----------------------------------------------------------------------

    def reserve(
        self,
        amount: Decimal | float | int | str,
        *,
        agent: str | None = None,
        model: str | None = None,
        tool: str | None = None,
        tokens: int = 0,
        requests: int = 0,
    ) -> Reservation:
        """Set aside `amount` (and up to `tokens` model tokens and `requests` model
        requests) for a call, or raise `BudgetExceededError` if it would not fit."""
        value = _amount(amount, "reservation amount")
        emit = None if _quiet.on else self.on_event
        events: list[BudgetEvent] = []
        with self._lock:
            remaining = self._limit - self._spent - self._reserved
            usage = self._usage_refusal(tokens, requests)
            if usage is not None:
                self._exceeded = True
                report = self._report()
                refused = self._event("usage.rejected", _ZERO, None, agent, model, tool)
        if usage is not None:
            if emit is not None:
                emit(refused)
            raise BudgetExceededError(usage, requested=value, remaining=remaining,
                                      limit=report.limit, report=report)
        shared = 0
        if self.ledger is not None:
            shared = self._reserve_shared(self.ledger, value, agent, model, tool)
        with self._lock:
            remaining = self._limit - self._spent - self._reserved
            if value > remaining:
                self._exceeded = True
                report = self._report()
                rejected = self._event("budget.rejected", value, None, agent, model, tool)
            else:
                report = None
                self._reserved += value
                self._tokens_reserved += tokens
                self._requests_reserved += requests
                reservation = Reservation(next(self._ids), value, agent, model, tool, tokens,
                                          requests, shared)
                self._open[reservation.id] = reservation
                warn = not self._warned and remaining - value < self._threshold
                if warn:
                    self._warned = True
                if emit is not None:
                    approved = self._event("budget.approved", value, reservation.id, agent,
                                           model, tool)
                    events.append(approved)
                    if warn:
                        events.append(replace(approved, type="budget.warning"))
        if report is not None:
            if self.ledger is not None:
                self.ledger.release(shared)
            if emit is not None:
                emit(rejected)
            raise BudgetExceededError(
                f"budget exceeded: call needs up to {format_usd(value)}, "
                f"{format_usd(remaining)} of {format_usd(report.limit)} left",
                requested=value, remaining=remaining, limit=report.limit, report=report,
            )
        if self.parent is not None:
            self._hold(reservation, emit)
        if emit is not None:
            for event in events:
                emit(event)
        return reservation

    def _hold(self, reservation: Reservation, emit: Callable[[BudgetEvent], Any] | None) -> None:
        """Hold the reservation in the parent too, or undo it and refuse."""
        assert self.parent is not None
        _quiet.on = True
        try:
            self._held[reservation.id] = self.parent.reserve(
                reservation.amount, agent=reservation.agent, model=reservation.model,
                tool=reservation.tool, tokens=reservation.tokens, requests=reservation.requests)
        except BudgetExceededError as exc:
            if self.ledger is not None:
                self.ledger.release(reservation.shared)
            with self._lock:
                self._take(reservation, "release")
                self._reserved -= reservation.amount
                self._tokens_reserved -= reservation.tokens
                self._requests_reserved -= reservation.requests
                self._exceeded = True
                rejected = self._event("budget.rejected", reservation.amount, None,
                                       reservation.agent, reservation.model, reservation.tool)
            _quiet.on = False
            if emit is not None:
                emit(rejected)
            raise BudgetExceededError(f"enclosing {exc}", requested=exc.requested,
                                      remaining=exc.remaining, limit=exc.limit,
                                      report=exc.report) from None
        finally:
            _quiet.on = False

    def commit(self, reservation: Reservation, actual: Decimal | float | int | str, *,
               tokens: int | None = None) -> None:
        """Charge the call's real cost (and `tokens`, the tokens it really used: by default
        those reserved) and release the rest of its reservation.

        A cost above the reservation is charged anyway and reported as `budget.overspent`
        (its `amount` is the excess).
        """
        cost = _amount(actual, "actual cost")
        emit = None if _quiet.on else self.on_event
        held = self._held.pop(reservation.id, None)
        if held is not None:
            _quiet.on = True
            try:
                self.parent.commit(held, cost, tokens=tokens)  # type: ignore[union-attr]
            finally:
                _quiet.on = False
        with self._lock:
            self._take(reservation, "commit")
            if self.ledger is not None:  # inside `Store.holding()`: joins the checkpoint
                self.ledger.settle(reservation.shared, cost)
            self._reserved -= reservation.amount
            self._tokens_reserved -= reservation.tokens
            self._requests_reserved -= reservation.requests
            self._tokens += reservation.tokens if tokens is None else tokens
            self._requests += reservation.requests
            self._spent += cost
            self._calls += 1
            by_agent, by_model = self._by_agent, self._by_model
            key = reservation.agent or UNTAGGED
            by_agent[key] = by_agent.get(key, _ZERO) + cost
            key = reservation.model or UNTAGGED
            by_model[key] = by_model.get(key, _ZERO) + cost
            if reservation.tool is not None:
                self._by_tool[reservation.tool] = self._by_tool.get(reservation.tool, _ZERO) + cost
            over = cost - reservation.amount
            if over > 0 and self._spent + self._reserved > self._limit:
                self._exceeded = True
            if emit is None:
                return
            settled = self._event("budget.settled", cost, reservation.id, reservation.agent,
                                  reservation.model, reservation.tool)
        emit(settled)
        if over > 0:
            emit(replace(settled, type="budget.overspent", amount=over))

    def release(self, reservation: Reservation) -> None:
        """The call failed before costing anything: give its reservation back."""
        emit = None if _quiet.on else self.on_event
        held = self._held.pop(reservation.id, None)
        if held is not None:
            _quiet.on = True
            try:
                self.parent.release(held)  # type: ignore[union-attr]
            finally:
                _quiet.on = False
        with self._lock:
            self._take(reservation, "release")
            if self.ledger is not None:
                self.ledger.release(reservation.shared)
            self._reserved -= reservation.amount
            self._tokens_reserved -= reservation.tokens
            self._requests_reserved -= reservation.requests
            if emit is None:
                return
            event = self._event("budget.released", reservation.amount, reservation.id,
                                reservation.agent, reservation.model, reservation.tool)
        emit(event)

    def extend(self, extra: Decimal | float | int | str) -> None:
        """Raise the limit by `extra` (to resume a paused run)."""
        value = parse_usd(extra, "extra_budget")
        emit = self.on_event
        with self._lock:
            self._limit += value
            self._threshold = self._limit * self._fraction
            remaining = self._limit - self._spent - self._reserved
            if remaining >= 0:
                self._exceeded = False
            if remaining >= self._threshold:
                self._warned = False  # re-armed: the next dip under the threshold warns again
            if emit is None:
                return
            event = self._event("budget.extended", value, None, None, None, None)
        emit(event)

    def extend_usage(self, *, tokens: int | None = None, requests: int | None = None) -> None:
        """Raise the token and request caps (to resume a run paused by one)."""
        with self._lock:
            if tokens is not None and self._max_tokens is not None:
                self._max_tokens += _count_limit(tokens, "extra_tokens") or 0
            if requests is not None and self._max_requests is not None:
                self._max_requests += _count_limit(requests, "extra_requests") or 0
            if self._usage_refusal(0, 0) is None and self._spent <= self._limit:
                self._exceeded = False

    def _usage_refusal(self, tokens: int, requests: int) -> str | None:
        """Why a call of up to `tokens` tokens and `requests` requests cannot be made
        (under the lock), or None."""
        cap = self._max_requests
        if cap is not None and requests:
            used = self._requests + self._requests_reserved
            if used + requests > cap:
                return (f"request limit reached: {used} of {cap} model requests made; "
                        "resume with extra_requests=")
        cap = self._max_tokens
        if cap is not None and tokens:
            used = self._tokens + self._tokens_reserved
            if used + tokens > cap:
                return (f"token limit reached: a call needs up to {tokens:,} tokens, "
                        f"{max(cap - used, 0):,} of {cap:,} left; resume with extra_tokens=")
        return None

    def _reserve_shared(self, ledger: Ledger, value: Decimal, agent: str | None,
                        model: str | None, tool: str | None) -> int:
        """Reserve `value` in the shared ledger (no lock held: the database decides)."""
        units = ledger.reserve(value)
        if units is not None:
            return units
        with self._lock:
            self._exceeded = True
            report = self._report()
            rejected = self._event("budget.rejected", value, None, agent, model, tool)
        if self.on_event is not None:
            self.on_event(rejected)
        state = ledger.state()
        raise BudgetExceededError(ledger.refusal(value), requested=value,
                                  remaining=state.remaining, limit=state.limit, report=report)

    # -- persistence ---------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """Exact state (Decimal as strings) for a run's checkpoint; open reservations
        are not included: a checkpoint is taken between calls."""
        with self._lock:
            return {
                "limit": str(self._limit),
                "spent": str(self._spent),
                "calls": self._calls,
                "warned": self._warned,
                "max_tokens": self._max_tokens,
                "max_requests": self._max_requests,
                "tokens": self._tokens,
                "requests": self._requests,
                "by_agent": {k: str(v) for k, v in self._by_agent.items()},
                "by_model": {k: str(v) for k, v in self._by_model.items()},
                "by_tool": {k: str(v) for k, v in self._by_tool.items()},
            } | ({} if self.ledger is None else {"ledger": self.ledger.name})

    @classmethod
    def restored(
        cls,
        state: Mapping[str, Any],
        *,
        warn_below: float = 0.20,
        on_event: Callable[[BudgetEvent], Any] | None = None,
        ledger: Ledger | None = None,
    ) -> BudgetGuard:
        """A guard that continues from `checkpoint()` (a resumed run after a crash); give
        it back its `ledger` (`store.ledger(state["ledger"])`) if the checkpoint names one."""
        guard = cls(state["limit"], warn_below=warn_below, on_event=on_event,
                    max_tokens=state.get("max_tokens"), max_requests=state.get("max_requests"),
                    ledger=ledger)
        guard._spent = Decimal(state["spent"])
        guard._tokens = int(state.get("tokens", 0))
        guard._requests = int(state.get("requests", 0))
        guard._calls = int(state.get("calls", 0))
        guard._warned = bool(state.get("warned", False))
        guard._exceeded = guard._spent > guard._limit
        for name in ("by_agent", "by_model", "by_tool"):
            setattr(guard, f"_{name}", {k: Decimal(v) for k, v in state.get(name, {}).items()})
        return guard

    # -- helpers -------------------------------------------------------------------------

    def _take(self, reservation: Reservation, action: str) -> None:
        if self._open.pop(reservation.id, None) is None:
            raise ValueError(
                f"cannot {action} reservation {reservation.id}: it was already committed or "
                "released (or belongs to another budget)"
            )

    def _event(
        self,
        type_: str,
        amount: Decimal,
        reservation: int | None,
        agent: str | None,
        model: str | None,
        tool: str | None,
    ) -> BudgetEvent:
        # called under the lock: a consistent snapshot of the totals
        return BudgetEvent(
            type=type_,
            amount=amount,
            spent=self._spent,
            reserved=self._reserved,
            limit=self._limit,
            remaining=self._limit - self._spent - self._reserved,
            reservation=reservation,
            agent=agent,
            model=model,
            tool=tool,
        )

    def __repr__(self) -> str:
        return (
            f"BudgetGuard(limit={self._limit}, spent={self._spent}, reserved={self._reserved}, "
            f"status={self.status!r})"
        )


__all__ = ["UNTAGGED", "BudgetGuard", "BudgetStatus", "CostReport", "Reservation"]
