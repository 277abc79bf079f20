"""A budget shared by every process on one store: a row of the `budgets` table.

Reserve is one conditional update, `reserved = reserved + x WHERE spent +
reserved + x <= cap`: the database applies it or not, atomically, so any number
of processes and threads reserving at once never pass the cap between them, and
no lock is held across a model call. Settle moves the reservation to `spent`,
release gives it back; both are plain updates. Inside `Store.holding()` a
settlement waits for the run's checkpoint and commits in its transaction, so a
resumed run never pays a journaled call twice into the shared total either.

A `BudgetGuard(limit, ledger=store.ledger("team", 50))` keeps its own (per-run)
limit and report and also reserves against the shared one. Amounts are whole
nano-dollars in the table (`schema.NANO`), rounded up.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.core.clock import Clock
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.core.schema import from_nano, to_nano
from taskorch_nb.errors import ConfigurationError

_RESERVE = ("UPDATE budgets SET reserved = reserved + ?, updated = ? "
            "WHERE name = ? AND spent + reserved + ? <= cap")
_SETTLE = ("UPDATE budgets SET reserved = reserved - ?, spent = spent + ?, calls = calls + 1, "
           "updated = ? WHERE name = ?")
_RELEASE = "UPDATE budgets SET reserved = reserved - ?, updated = ? WHERE name = ?"
_EXTEND = "UPDATE budgets SET cap = cap + ?, updated = ? WHERE name = ?"
_READ = "SELECT cap, spent, reserved, calls FROM budgets WHERE name = ?"


class LedgerStore(Protocol):
    """What a ledger needs of its store (`Store` and `PgStore` are one)."""

    path: str
    clock: Clock

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int: ...

    def execute_held(self, sql: str, params: tuple[Any, ...]) -> None: ...

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]: ...


@dataclass(frozen=True, slots=True)
class LedgerState:
    """The shared totals as one read saw them."""

    limit: Decimal
    spent: Decimal
    reserved: Decimal
    calls: int

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.spent - self.reserved


class Ledger:
    """The shared budget `name` of `store`: made with `limit` USD when new, else as stored
    (a `limit` that differs from the stored one is ignored: `extend` raises it)."""

    def __init__(self, store: LedgerStore, name: str, limit: Any = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigurationError("a shared budget needs a name, e.g. store.ledger('team', 50)")
        self.store = store
        self.name = name
        if limit is not None:
            cap = to_nano(parse_usd(limit, f"shared budget {name!r}"))
            store.execute(
                "INSERT INTO budgets (name, cap, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO NOTHING", (name, cap, store.clock.wall()))
        elif not store.query(_READ, (name,)):
            raise ConfigurationError(
                f"no shared budget {name!r} in {store.path}: make it with a limit, "
                f"e.g. store.ledger({name!r}, 50)")

    def state(self) -> LedgerState:
        rows = self.store.query(_READ, (self.name,))
        if not rows:
            raise ConfigurationError(f"the shared budget {self.name!r} is gone from "
                                     f"{self.store.path}")
        cap, spent, reserved, calls = rows[0]
        return LedgerState(from_nano(cap), from_nano(spent), from_nano(reserved), int(calls))

    @property
    def limit(self) -> Decimal:
        return self.state().limit

    def reserve(self, amount: Decimal) -> int | None:
        """Set `amount` aside if it fits under the cap: the nano-dollars reserved (hand
        them to `settle` or `release`), or None when it does not fit."""
        units = to_nano(amount)
        changed = self.store.execute(_RESERVE, (units, self.store.clock.wall(), self.name, units))
        return units if changed else None

    def settle(self, units: int, actual: Decimal) -> None:
        """Charge `actual` for a reservation of `units`; inside `Store.holding()` this
        commits with the checkpoint that journals the call."""
        self.store.execute_held(_SETTLE, (units, to_nano(actual), self.store.clock.wall(),
                                          self.name))

    def release(self, units: int) -> None:
        """The call cost nothing: give its reservation back."""
        self.store.execute(_RELEASE, (units, self.store.clock.wall(), self.name))

    def extend(self, extra: Any) -> None:
        """Raise the shared cap by `extra` USD (to resume what it paused)."""
        units = to_nano(parse_usd(extra, "extra_budget"))
        self.store.execute(_EXTEND, (units, self.store.clock.wall(), self.name))

    def refusal(self, amount: Decimal) -> str:
        """Why a reservation of `amount` did not fit, for the error the caller raises."""
        state = self.state()
        return (f"shared budget {self.name!r} exceeded: call needs up to {format_usd(amount)}, "
                f"{format_usd(max(state.remaining, Decimal(0)))} of "
                f"{format_usd(state.limit)} left")

    def __repr__(self) -> str:
        return f"Ledger({self.name!r}, store={self.store.path!r})"


__all__ = ["Ledger", "LedgerState", "LedgerStore"]
