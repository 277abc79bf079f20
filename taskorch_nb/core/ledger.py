"""A budget shared by every process on one store: a row of the `budgets` table.

Reserve is one conditional update, `reserved = reserved + x WHERE spent +
reserved + x <= cap`: the database applies it or not, atomically, so any number
of processes and threads reserving at once never pass the cap between them, and
no lock is held across a model call. Settle moves the reservation to `spent`,
release gives it back; both are plain updates. Inside `Store.holding()` a
settlement waits for the run's checkpoint and commits in its transaction, so a
resumed run never pays a journaled call twice into the shared total either.
Each process's share of `reserved` is also kept in `budget_holds`, so what a
killed worker had reserved can be given back (`reclaim_dead`, `reclaim`). A hold's
`seen` is a lease: real time of its holder's last reserve, settle or release, and
on PostgreSQL refreshed every `HEARTBEAT` seconds while the process holds money, so
another host can tell a holder not seen for long from a live one
(`reclaim_dead(stale_after=...)`); the same host asks the operating system instead.

A `BudgetGuard(limit, ledger=store.ledger("team", 50))` keeps its own (per-run)
limit and report and also reserves against the shared one. Amounts are whole
nano-dollars in the table (`schema.NANO`), rounded up.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from taskorch_nb.core.clock import Clock
from taskorch_nb.core.money import format_usd, parse_usd
from taskorch_nb.core.process import alive
from taskorch_nb.core.schema import from_nano, to_nano
from taskorch_nb.errors import ConfigurationError

_RESERVE = ("UPDATE budgets SET reserved = reserved + ?, updated = ? "
            "WHERE name = ? AND spent + reserved + ? <= cap")
_HOLD = ("INSERT INTO budget_holds (budget, holder, units, seen) VALUES (?, ?, ?, ?) "
         "ON CONFLICT (budget, holder) DO UPDATE SET units = budget_holds.units + "
         "excluded.units, seen = excluded.seen")
# A holder settles or releases at most what it still holds: if a lease took it for dead
# (`reclaim_stale`), the reclaim gave its reservation back already, and giving it back
# again would free money other processes hold. (Read before the hold shrinks: SQLite runs
# the hold's update second; PostgreSQL's WITH sees the snapshot before it.)
_STILL_HELD = ("{least}(?, COALESCE((SELECT units FROM budget_holds WHERE budget = ? "
               "AND holder = ?), 0))")
_SETTLE = ("UPDATE budgets SET reserved = reserved - " + _STILL_HELD + ", spent = spent + ?, "
           "calls = calls + 1, updated = ? WHERE name = ?")
_RELEASE_HELD = ("UPDATE budgets SET reserved = reserved - " + _STILL_HELD + ", updated = ? "
                 "WHERE name = ?")
_RELEASE = "UPDATE budgets SET reserved = reserved - ?, updated = ? WHERE name = ?"
_UNHOLD = ("UPDATE budget_holds SET units = {greatest}(units - ?, 0), seen = ? "
           "WHERE budget = ? AND holder = ?")
_EXTEND = "UPDATE budgets SET cap = cap + ?, updated = ? WHERE name = ?"
_READ = "SELECT cap, spent, reserved, calls FROM budgets WHERE name = ?"
_HOLDERS = "SELECT holder, units FROM budget_holds WHERE budget = ? ORDER BY holder"
_SEEN = "SELECT holder, units, seen FROM budget_holds WHERE budget = ? AND units > 0"
_BEAT = "UPDATE budget_holds SET seen = ? WHERE holder = ? AND units > 0"

log = logging.getLogger(__name__)

#: Seconds between two refreshes of a live process's holds (PostgreSQL stores).
HEARTBEAT = 15.0
#: `reclaim_dead(stale_after=...)` below this many heartbeats could take a live holder.
MIN_STALE_BEATS = 4

# PostgreSQL runs both updates of a step as one statement (a data-modifying WITH): one
# round trip, as many as the bare ledger update needs. SQLite has no such WITH: there
# the two statements share a transaction, which costs no round trip.
_PG_RESERVE = (f"WITH b AS ({_RESERVE} RETURNING name) INSERT INTO budget_holds "
               "(budget, holder, units, seen) SELECT name, ?, ?, ? FROM b "
               "ON CONFLICT (budget, holder) DO UPDATE SET units = budget_holds.units + "
               "excluded.units, seen = excluded.seen")
_SQLITE = {"least": "MIN", "greatest": "MAX"}
_PG = {"least": "LEAST", "greatest": "GREATEST"}
_PG_SETTLE = f"WITH h AS ({_UNHOLD}) {_SETTLE}".format(**_PG)
_PG_RELEASE = f"WITH h AS ({_UNHOLD}) {_RELEASE_HELD}".format(**_PG)
_SQLITE_SETTLE = _SETTLE.format(**_SQLITE)
_SQLITE_RELEASE = _RELEASE_HELD.format(**_SQLITE)
_SQLITE_UNHOLD = _UNHOLD.format(**_SQLITE)

_holder: tuple[int, str] | None = None


def holder() -> str:
    """This process on the ledger: `host:pid:nonce` (a new one after a fork)."""
    global _holder
    pid = os.getpid()
    if _holder is None or _holder[0] != pid:
        _holder = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _holder[1]


class LedgerStore(Protocol):
    """What a ledger needs of its store (`Store` and `PgStore` are one)."""

    path: str
    clock: Clock
    dialect: str

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int: ...

    def transaction(self) -> AbstractContextManager[Callable[[str, tuple[Any, ...]], int]]: ...

    def execute_held(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None: ...

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
        self._pg = store.dialect == "postgresql"
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
        them to `settle` or `release`), or None when it does not fit. The reservation
        is recorded as this process's, so `reclaim_dead` can give it back if it dies."""
        units = to_nano(amount)
        wall = self.store.clock.wall()
        if self._pg:
            done = self.store.execute(_PG_RESERVE, (units, wall, self.name, units,
                                                    holder(), units, time.time()))
            if done:
                _heartbeat.watch(self.store)
            return units if done else None
        with self.store.transaction() as run:
            if not run(_RESERVE, (units, wall, self.name, units)):
                return None
            run(_HOLD, (self.name, holder(), units, time.time()))
        return units

    def settle(self, units: int, actual: Decimal) -> None:
        """Charge `actual` for a reservation of `units`; inside `Store.holding()` this
        commits with the checkpoint that journals the call."""
        wall = self.store.clock.wall()
        who = holder()
        unhold = (units, time.time(), self.name, who)
        settle = (units, self.name, who, to_nano(actual), wall, self.name)
        self.store.execute_held([(_PG_SETTLE, unhold + settle)] if self._pg else
                                [(_SQLITE_SETTLE, settle), (_SQLITE_UNHOLD, unhold)])

    def release(self, units: int) -> None:
        """The call cost nothing: give its reservation back."""
        wall = self.store.clock.wall()
        who = holder()
        unhold = (units, time.time(), self.name, who)
        release = (units, self.name, who, wall, self.name)
        if self._pg:
            self.store.execute(_PG_RELEASE, (*unhold, *release))
            return
        with self.store.transaction() as run:
            run(_SQLITE_RELEASE, release)
            run(_SQLITE_UNHOLD, unhold)

    def holders(self) -> dict[str, Decimal]:
        """What each process (`host:pid:nonce`) holds of `reserved` now."""
        return {who: from_nano(units) for who, units in self.store.query(_HOLDERS, (self.name,))
                if units}

    def reclaim(self, who: str) -> Decimal:
        """Give back what process `who` reserved and never settled (it is gone: a killed
        worker). Returns the USD given back. Never for a live process: its calls would
        then settle money the ledger no longer holds for them."""
        wall = self.store.clock.wall()
        with self.store.transaction() as run:
            rows = self.store.query("SELECT units FROM budget_holds WHERE budget = ? AND "
                                    "holder = ?", (self.name, who))
            units = rows[0][0] if rows else 0
            if units:
                run(_RELEASE, (units, wall, self.name))
            run("DELETE FROM budget_holds WHERE budget = ? AND holder = ?", (self.name, who))
        return from_nano(units)

    def reclaim_dead(self, stale_after: float | None = None) -> Decimal:
        """`reclaim` every holder of this host whose process has ended; with
        `stale_after` (seconds), also every holder of another host not seen for that long
        (a live holder on PostgreSQL is seen every `HEARTBEAT` seconds; a frozen one, a
        laptop asleep, is not: choose a lease longer than such pauses). Without it, other
        hosts' holders are left alone (`reclaim(holder)` once you know they are gone).
        Returns the USD freed."""
        if stale_after is not None and not stale_after >= MIN_STALE_BEATS * HEARTBEAT:
            raise ConfigurationError(
                f"stale_after must be at least {MIN_STALE_BEATS * HEARTBEAT:g} seconds "
                f"({MIN_STALE_BEATS} heartbeats), got {stale_after!r}: a live holder "
                "could be taken for a dead one")
        host = socket.gethostname()
        cutoff = None if stale_after is None else time.time() - stale_after
        freed = Decimal(0)
        for who, _, seen in self.store.query(_SEEN, (self.name,)):
            name, _, rest = who.rpartition(":")[0].rpartition(":")
            if name == host:
                if rest.isdigit() and not alive(int(rest)):
                    freed += self.reclaim(who)
            elif cutoff is not None and seen < cutoff:
                freed += self.reclaim_stale(who, cutoff)
        return freed

    def reclaim_stale(self, who: str, cutoff: float) -> Decimal:
        """`reclaim(who)` if it has not been seen since `cutoff` (epoch seconds), decided
        by the database in the reclaiming statement: a heartbeat that lands after
        `holders()` was read keeps the hold. Returns the USD given back."""
        wall = self.store.clock.wall()
        with self.store.transaction() as run:
            rows = self.store.query("DELETE FROM budget_holds WHERE budget = ? AND holder = ? "
                                    "AND seen < ? RETURNING units", (self.name, who, cutoff))
            units = rows[0][0] if rows else 0
            if units:
                run(_RELEASE, (units, wall, self.name))
        return from_nano(units)

    def extend(self, extra: Any) -> None:
        """Raise the shared cap by `extra` USD (to resume what it paused)."""
        units = to_nano(parse_usd(extra, "extra_budget"))
        self.store.execute(_EXTEND, (units, self.store.clock.wall(), self.name))

    def refusal(self, amount: Decimal) -> str:
        """Why a reservation of `amount` did not fit, for the error the caller raises."""
        state = self.state()
        return (f"shared budget {self.name!r} exceeded: call needs up to {format_usd(amount)}, "
                f"{format_usd(max(state.remaining, Decimal(0)))} of "
                f"{format_usd(state.limit)} left; raise it with "
                f"store.ledger({self.name!r}).extend(...) before resuming")

    def __repr__(self) -> str:
        return f"Ledger({self.name!r}, store={self.store.path!r})"


class _Heartbeat:
    """One thread per process that refreshes `seen` of this process's holds on every
    PostgreSQL store it reserved on, every `HEARTBEAT` seconds, while such a store is
    open: a call in flight for minutes keeps its lease. It ends when no store is left."""

    def __init__(self) -> None:
        self._stores: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, store: Any) -> None:
        if self._pid == os.getpid() and store in self._stores:
            return  # the reserve's hot path: already beating for this store
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's thread is not ours
                self._stores, self._thread, self._pid = weakref.WeakSet(), None, os.getpid()
            self._stores.add(store)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskorch-ledger-beat",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        last = time.monotonic()
        while True:
            time.sleep(min(HEARTBEAT, 1.0))  # short naps: a changed HEARTBEAT applies soon
            if time.monotonic() - last < HEARTBEAT:
                continue
            last = time.monotonic()
            with self._lock:
                stores = [s for s in self._stores if not getattr(s, "_closed", False)]
                if not stores:
                    self._stores, self._thread = weakref.WeakSet(), None
                    return
            for store in stores:
                try:
                    store.execute(_BEAT, (time.time(), holder()))
                except Exception as exc:  # closed meanwhile, or the server away: next beat
                    log.warning("taskorch: could not refresh this process's budget holds "
                                "on %s (%s: %s)", getattr(store, "path", store),
                                type(exc).__name__, exc)


_heartbeat = _Heartbeat()


__all__ = ["HEARTBEAT", "Ledger", "LedgerState", "LedgerStore"]
