"""SQLite persistence: runs, events, patterns, circuit states and model capabilities.

Routine events (a successful tool call) are written in batches, at most
`flush_interval` (100 ms) after the first of a batch arrived, by a timer on the
store's clock; what must never be lost (money, run status, breaker
transitions, learned patterns) is written at once in its own transaction. A
killed process loses at most the last 100 ms of routine events. The timer is
armed only while events wait, so an idle store costs no thread, and under a
`FakeClock` the batch is written when fake time passes the interval.

Money settled for a run's call is the exception that proves the rule: inside
`holding()` it waits for the run's checkpoint that records the call, and
`save_run(..., held=...)` writes both in one transaction. A kill then leaves
either both (resume replays the call) or neither (resume makes it again and
pays it once): never a settlement whose call a resumed run repeats.

Group commit: on a thread that runs an event loop, "at once" means at the end of
the loop tick. Every durable write of the tick (any number of runs: run rows with
their held money, durable events, and the routine events before them) goes into
one transaction, and a paid call waits for it (`await durable(run_id)`) before it
goes on, so a kill still leaves a settlement and its checkpoint both or neither.
Without a running loop nothing changes: each durable write is its own transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from taskorch_nb.core.clock import Cancellable, Clock, RealClock
from taskorch_nb.core.eventcodec import INSERT_LAYOUT, LAYOUTS, decode, encode, json_default
from taskorch_nb.core.events import Event
from taskorch_nb.core.pattern_record import COUNTS, add_counts
from taskorch_nb.core.schema import migrate
from taskorch_nb.errors import ConfigurationError

if TYPE_CHECKING:
    from taskorch_nb.core.ledger import Ledger

#: Event types written at once, never batched: money, run status, breaker
#: transitions, what the immune system learned. Everything else waits <= 100 ms.
_DURABLE_PREFIXES = ("run.", "circuit.")
_DURABLE_TYPES = frozenset(
    {"budget.settled", "budget.rejected", "budget.overspent", "budget.extended",
     "pattern.learned", "pattern.recovered", "pattern.demoted", "pattern.merged"}
)

#: Settled money: inside `holding()` it waits for the checkpoint that records its call.
_MONEY_TYPES = frozenset({"budget.settled", "budget.overspent"})

FLUSH_INTERVAL = 0.1
_MULTI_ROW_LIMIT = 64
_EVENT_COLUMNS = 6  # run_id, seq, type, ts, wall, record


_UPSERT_RUN = (
    "INSERT INTO runs (id, task, workflow, status, created, updated, pid, data) "
    "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
    "status=excluded.status, updated=excluded.updated, pid=excluded.pid, data=excluded.data"
)


@functools.cache
def _insert_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO events (run_id, seq, type, ts, wall, record) VALUES {values}"


_SELECT_EVENTS = "SELECT run_id, seq, type, ts, wall, record FROM events"


def default_path() -> Path:
    """`$TASKORCH_HOME/taskorch.db`, `~/.taskorch/taskorch.db` by default."""
    home = os.environ.get("TASKORCH_HOME") or os.path.join(os.path.expanduser("~"), ".taskorch")
    return Path(home) / "taskorch.db"


def dumps(value: Any) -> str:
    # pydantic-core's encoder: Decimals as strings, sets and tuples as lists, about
    # three times json.dumps' speed; `json_default` for anything it does not know.
    return to_json(value, fallback=json_default).decode()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # its waiter was cancelled
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


_DURABLE_SEEN: dict[str, bool] = {}  # by event type (a few dozen): one lookup per event


def is_durable(event_type: str) -> bool:
    durable = _DURABLE_SEEN.get(event_type)
    if durable is None:
        durable = _DURABLE_SEEN[event_type] = (event_type in _DURABLE_TYPES
                                               or event_type.startswith(_DURABLE_PREFIXES))
    return durable


class _RunWrite:
    """A run row and the money held for it: one item of the pending queue, so a flush
    takes both or neither."""

    __slots__ = ("events", "ops", "row")

    def __init__(self, row: tuple[Any, ...] | None, events: list[Event],
                 ops: list[tuple[str, tuple[Any, ...]]] | None = None) -> None:
        self.row = row  # None: only money (ledger ops) whose run row failed, retried alone
        self.events = events
        self.ops = ops or []


_Op = tuple[str, tuple[Any, ...]]


def _split(items: Sequence[Event | _RunWrite]
           ) -> tuple[list[Event], list[tuple[Any, ...]], list[_Op]]:
    events: list[Event] = []
    runs: list[tuple[Any, ...]] = []
    ops: list[_Op] = []
    for item in items:
        if type(item) is _RunWrite:
            events.extend(item.events)
            if item.row is not None:
                runs.append(item.row)
            ops.extend(item.ops)
        else:
            events.append(item)  # type: ignore[arg-type]
    return events, runs, ops


class Held:
    """Events that wait for the run checkpoint they become durable with (see `Store.holding`)."""

    __slots__ = ("_token", "events", "open", "ops", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self.events: list[Event] = []
        self.ops: list[tuple[str, tuple[Any, ...]]] = []
        """Ledger settlements (SQL, parameters) that commit with the checkpoint."""
        self.open = True

    # A class, not a generator context manager: this wraps every paid call.
    def __enter__(self) -> Held:
        self._token = _held.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _held.reset(self._token)
        self.open = False  # a task that outlives the block records normally
        if self:
            self.store._write_held(self)

    def take(self, event: Event) -> bool:
        """Hold `event` if it is settled money or comes after some (the table keeps order)."""
        if self.open and (self.events or event.type in _MONEY_TYPES):
            self.events.append(event)
            return True
        return False

    def __bool__(self) -> bool:
        return bool(self.events or self.ops)


#: The hold of the paid call the current task (or thread it started) is making.
_held: ContextVar[Held | None] = ContextVar("taskorch_store_held", default=None)


def _open(path: str) -> sqlite3.Connection:
    """Connect, set WAL and make the tables; a path that is not (and cannot become) a
    SQLite database is a `ConfigurationError` that names it, and the file is left alone."""
    if path != ":memory:":
        target = Path(path)
        if target.is_dir():
            raise ConfigurationError(f"store {path} is a directory, not a SQLite file: "
                                     f"give a file path such as {target / 'taskorch.db'}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(
                f"store {path}: cannot create its folder {target.parent} ({exc.strerror})"
            ) from None
    try:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    except sqlite3.Error as exc:
        raise ConfigurationError(f"store {path}: cannot open it ({exc})") from None
    try:
        # Read first: a file that is not SQLite fails here, before any pragma writes to it.
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db, "sqlite", wall=time.time())
    except RuntimeError as exc:  # made by a newer taskorch_nb
        db.close()
        raise ConfigurationError(f"store {path}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        db.close()
        what = ("is not a SQLite database" if "not a database" in str(exc)
                else f"cannot be used ({exc})")
        raise ConfigurationError(f"store {path} {what}") from None
    return db


class Store:
    """One SQLite database (WAL) shared by the notebook, the CLI and the MCP server.

    A path that is a directory or a file that is not SQLite is a `ConfigurationError`.
    `PgStore` (core/pgstore.py) is the same API on PostgreSQL; `open_store` picks one."""

    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | None = None, *, clock: Clock | None = None,
                 flush_interval: float = FLUSH_INTERVAL) -> None:
        if not flush_interval > 0:
            raise ConfigurationError(f"flush_interval must be > 0 seconds, got {flush_interval!r}")
        if path is None:
            path = default_path()
        self.path = str(path)
        self._db: Any = self._connect(self.path)
        self._register_layouts()
        self._lock = threading.RLock()
        self.clock: Clock = clock or RealClock()
        self.flush_interval = float(flush_interval)
        """Longest wait of a routine event before it is written (seconds on `clock`)."""
        self._pending: deque[Event | _RunWrite] = deque()
        self._timer: Cancellable | None = None
        self._arm_lock = threading.Lock()
        # Reentrant: a write may read (a subclass checking what it wrote flushes first).
        self._flush_lock = threading.RLock()
        self._closed = False
        # Group commit: loops with a commit scheduled, the paid calls waiting for one,
        # and the runs whose row a flush could not write (their waiters get the error).
        self._ticking: set[asyncio.AbstractEventLoop] = set()
        # (one list per loop: only that loop's thread touches it)
        self._waiters: dict[asyncio.AbstractEventLoop,
                            list[tuple[str, asyncio.Future[None]]]] = {}
        self._failed: dict[str, BaseException] = {}

    def _connect(self, path: str) -> Any:
        return _open(path)

    # -- events ----------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Bus subscriber: durable events at once, routine ones in the next batch; inside
        `holding()`, settled money and what follows it wait for `save_run(held=...)`."""
        held = _held.get()
        if held is not None and held.store is self and held.take(event):
            return
        self._pending.append(event)
        durable = _DURABLE_SEEN.get(event.type)  # is_durable without its call
        if durable is None:
            durable = is_durable(event.type)
        if durable:
            self._commit_soon()  # with what came before it, so the table keeps the order
        elif self._timer is None:
            self._arm()

    def _commit_soon(self) -> None:
        """Commit what is pending now, or with a running loop at the end of this tick
        (one transaction for every durable write of the tick)."""
        loop = asyncio._get_running_loop()
        if loop is None:
            self.flush()
            return
        if loop not in self._ticking:
            self._ticking.add(loop)
            loop.call_soon(self._commit_tick, loop)
            if self._timer is None:
                self._arm()  # a loop that stops before the tick ends loses nothing either

    def _commit_tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._ticking.discard(loop)
        error: Exception | None = None
        with self._flush_lock:
            try:
                self._flush_locked()
            except Exception as exc:  # its events wait for the next flush; waiters hear it
                error = exc
            waiters = self._waiters.pop(loop, [])
            failed, self._failed = self._failed, {}
        for run_id, future in waiters:
            _settle(future, failed.pop(run_id, None) or error)
        unheard = error if error is not None and not waiters else next(
            iter(failed.values()), None)
        if unheard is not None:
            raise unheard  # nobody waits to hear it: the loop's exception handler says it

    async def durable(self, run_id: str) -> None:
        """Return when what `run_id` saved so far is committed (at the end of this loop
        tick); raise what kept its row from being written."""
        loop = asyncio.get_running_loop()
        if loop in self._ticking:
            future = loop.create_future()
            self._waiters.setdefault(loop, []).append((run_id, future))
            await future
        elif run_id in self._failed:
            raise self._failed.pop(run_id)

    def flush(self) -> None:
        """Write the pending batch now."""
        with self._flush_lock:  # one flusher at a time keeps batches in order
            self._flush_locked()

    def _flush_locked(self) -> None:
        batch = self._take_pending()
        if not batch:
            return
        try:
            self._write_items(batch)
        except Exception:
            if not any(type(item) is _RunWrite for item in batch):
                self._pending.extendleft(reversed(batch))
                raise
            self._write_apart(batch)

    def _write_items(self, items: Sequence[Event | _RunWrite]) -> None:
        events, runs, ops = _split(items)
        self._write_events(events, runs=runs, ops=ops)

    def _write_apart(self, batch: list[Event | _RunWrite]) -> None:
        """A batch that failed as one transaction: each run row with its money alone, so
        one bad row fails its own run only (its waiter gets the error) and its money
        waits alone for the next flush: never dropped."""
        groups: list[list[Event | _RunWrite]] = []
        for item in batch:
            if type(item) is _RunWrite or not groups or type(groups[-1][0]) is _RunWrite:
                groups.append([item])
            else:
                groups[-1].append(item)
        error: Exception | None = None
        for group in groups:
            try:
                self._write_items(group)
            except Exception as exc:
                first = group[0]
                if type(first) is _RunWrite and first.row is not None:
                    self._failed[first.row[0]] = exc
                    self._pending.extend(first.events)
                    if first.ops:  # the shared ledger's money waits alone too
                        self._pending.append(_RunWrite(None, [], first.ops))
                else:
                    self._pending.extend(group)
                    error = error or exc
        if error is not None:
            raise error

    def _arm(self) -> None:
        with self._arm_lock:
            if self._timer is None and not self._closed:
                self._timer = self.clock.call_later(self.flush_interval, self._timed_flush)

    def _timed_flush(self) -> None:
        # Disarm first: an event recorded from here on arms the next timer, and one
        # recorded before is in the deque this flush empties.
        with self._arm_lock:
            self._timer = None
        with self._flush_lock:
            if not self._closed:
                self._flush_locked()

    def holding(self) -> Held:
        """`with store.holding() as held:` holds the money a paid call settles (and the
        events after it, and the shared ledger's settlements) in this context, until
        `save_run(..., held=...)` writes it with the checkpoint that records the call.
        Held money nobody saved is written at once when the block ends: never dropped."""
        return Held(self)

    def _write_held(self, held: Held, run: tuple[Any, ...] | None = None) -> None:
        """The pending batch, then `held`, (and `run`) in one transaction; on failure
        both stay where they were, so nothing is lost."""
        with self._flush_lock:  # the pending batch first: the table keeps the order
            batch = self._take_pending()
            events, runs, ops = _split(batch)
            try:
                self._write_events(events + held.events,
                                   runs=runs if run is None else [*runs, run],
                                   ops=ops + held.ops)
            except BaseException:
                self._pending.extendleft(reversed(batch))
                raise
            held.events = []
            held.ops = []

    def _take_pending(self) -> list[Event | _RunWrite]:
        pending = self._pending
        return [pending.popleft() for _ in range(len(pending))]

    def _write_events(self, events: Iterable[Event], runs: Sequence[tuple[Any, ...]] = (),
                      ops: Sequence[tuple[str, tuple[Any, ...]]] = ()) -> None:
        """Insert `events` (and upsert the `runs` rows, and apply the ledger's `ops`) in
        one transaction."""
        params: list[Any] = []
        for e in events:  # the rows flat, as the multi-row INSERT binds them
            params += (e.run_id, e.seq, e.type, e.ts, e.wall, encode(e))
        count = len(params) // _EVENT_COLUMNS
        with self._lock:
            if not runs and not ops and 0 < count <= _MULTI_ROW_LIMIT:
                # One statement is one transaction: a third of the calls of BEGIN/COMMIT.
                self._insert_events(params, count)
                return
            self._db.execute("BEGIN")
            try:
                if count:
                    self._insert_events(params, count)
                if runs:
                    self._db.executemany(_UPSERT_RUN, runs)
                for sql, args in ops:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _insert_events(self, params: list[Any], count: int) -> None:
        """Insert `count` event rows given flat (`_EVENT_COLUMNS` values each), in
        statements of up to 64 rows: half the cost per row of executemany's one each."""
        if count <= _MULTI_ROW_LIMIT:
            self._db.execute(_insert_sql(count), params)
            return
        width = _MULTI_ROW_LIMIT * _EVENT_COLUMNS
        for start in range(0, len(params), width):
            chunk = params[start:start + width]
            self._db.execute(_insert_sql(len(chunk) // _EVENT_COLUMNS), chunk)

    def events(self, run_id: str | None = None) -> list[Event]:
        """Events as written (the pending batch included), oldest first."""
        self.flush()
        with self._lock:
            if run_id is None:
                rows = self._db.execute(_SELECT_EVENTS + " ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    _SELECT_EVENTS + " WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
        return [decode(row, self._layout) for row in rows]

    def _layout(self, layout: str) -> tuple[str, ...] | None:
        """The field names of an event layout another release registered (see eventcodec)."""
        with self._lock:
            rows = self._db.execute("SELECT fields FROM event_layouts WHERE id = ?",
                                    (layout,)).fetchall()
        return (tuple(rows[0][0].split(",")) if rows[0][0] else ()) if rows else None

    def _register_layouts(self) -> None:
        """Register this release's event layouts (once per store: they never change)."""
        known = {r[0] for r in self._db.execute("SELECT id FROM event_layouts").fetchall()}
        missing = [layout for layout in LAYOUTS if layout[0] not in known]
        if not missing:
            return
        self._db.execute("BEGIN")
        try:
            for layout in missing:
                self._db.execute(INSERT_LAYOUT, layout)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- patterns --------------------------------------------------------------

    def save_pattern(self, record: dict[str, Any], wall: float,
                     added: Mapping[str, int] | None = None) -> dict[str, Any]:
        """Save a pattern's record; returns it as stored. With `added` (the counts this
        process added since it last saved or adopted the pattern), the stored counts grow
        by `added` under the write lock (`add_counts`), so processes updating one pattern
        at once lose nothing; without, `record` replaces what is stored."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                stored = self._merge_pattern(record, wall, added)
                self._announce_pattern(stored)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return stored

    def _merge_pattern(self, record: dict[str, Any], wall: float,
                       added: Mapping[str, int] | None) -> dict[str, Any]:
        signature = record["signature"]
        if added is not None:
            fresh = {**record, **{name: int(added.get(name, 0)) for name in COUNTS}}
            if self._db.execute(
                    "INSERT INTO patterns (signature, record, updated) VALUES (?,?,?) "
                    "ON CONFLICT(signature) DO NOTHING",
                    (signature, dumps(fresh), wall)).rowcount == 1:
                return fresh
            lock = " FOR UPDATE" if self.dialect == "postgresql" else ""  # SQLite: IMMEDIATE
            [(text,)] = self._db.execute(
                f"SELECT record FROM patterns WHERE signature = ?{lock}", (signature,)
            ).fetchall()
            record = add_counts(json.loads(text), record, added)
        self._db.execute(
            "INSERT INTO patterns (signature, record, updated) VALUES (?,?,?) "
            "ON CONFLICT(signature) DO UPDATE SET record=excluded.record, "
            "updated=excluded.updated",
            (signature, dumps(record), wall),
        )
        return record

    def _announce_pattern(self, record: dict[str, Any]) -> None:
        """Tell other processes (`PgStore`: NOTIFY, in the saving transaction)."""

    def watch_patterns(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Report the pattern records other processes save (`PgStore` does, by NOTIFY).
        A SQLite store reports none: its patterns are read when an Orchestrator starts."""

    def load_patterns(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM patterns ORDER BY signature").fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- circuits --------------------------------------------------------------

    def save_circuit(self, name: str, state: str, failures: int, opened_wall: float | None,
                     wall: float, held: bool = False) -> None:
        """`held`: opened by hand (`trip`), OPEN with no probe until a reset."""
        with self._lock:
            self._db.execute(
                "INSERT INTO circuits (name, state, failures, opened_wall, updated, held) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET state=excluded.state, "
                "failures=excluded.failures, opened_wall=excluded.opened_wall, "
                "updated=excluded.updated, held=excluded.held",
                (name, state, failures, opened_wall, wall, int(held)),
            )

    def watch_circuits(
            self, callback: Callable[[str, str, int, float | None, bool], Any]) -> None:
        """Report breaker transitions other processes save (`PgStore` does, by NOTIFY):
        `callback(name, state, failures, opened_wall, held)`. A SQLite store reports
        none: its breakers are read when an Orchestrator starts."""

    def load_circuits(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, state, failures, opened_wall, held FROM circuits"
            ).fetchall()
        return {
            name: {"state": state, "failures": failures, "opened_wall": opened,
                   "held": bool(held)}
            for name, state, failures, opened, held in rows
        }

    # -- model capabilities ----------------------------------------------------

    def save_capability(self, key: str, record: dict[str, Any], wall: float) -> None:
        """What a model at a base URL accepts (`base_url#model`), as the provider learned it."""
        with self._lock:
            self._db.execute(
                "INSERT INTO capabilities (key, record, updated) VALUES (?,?,?) "
                "ON CONFLICT(key) DO UPDATE SET record=excluded.record, updated=excluded.updated",
                (key, dumps(record), wall),
            )

    def load_capabilities(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT key, record FROM capabilities").fetchall()
        return {key: json.loads(record) for key, record in rows}

    # -- budget ledger ---------------------------------------------------------

    def ledger(self, name: str, limit: Any = None) -> Ledger:
        """The shared budget `name` in this store (made with `limit` USD if new); a
        `BudgetGuard(..., ledger=...)` reserves and settles against it, as does every
        other process that opens the same store and name."""
        from taskorch_nb.core.ledger import Ledger

        return Ledger(self, name, limit)

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        """One statement in its own transaction (`?` placeholders); the rows it changed."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Callable[[str, tuple[Any, ...]], int]]:
        """`with store.transaction() as run: run(sql, params)`: statements that commit
        together or not at all (each call returns the rows it changed)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
            try:
                yield lambda sql, params: self._db.execute(sql, params).rowcount
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def execute_held(self, statements: list[tuple[str, tuple[Any, ...]]]) -> None:
        """`statements` in one transaction, or inside `holding()` kept to commit with the
        checkpoint (the shared ledger's money)."""
        held = _held.get()
        if held is not None and held.store is self and held.open:
            held.ops.extend(statements)
            return
        with self.transaction() as run:
            for sql, params in statements:
                run(sql, params)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return [tuple(r) for r in self._db.execute(sql, params).fetchall()]

    # -- runs ------------------------------------------------------------------

    def save_run(self, run_id: str, *, task: str, workflow: str | None, status: str,
                 wall: float, data: dict[str, Any] | None = None,
                 held: Held | None = None) -> None:
        """Insert or update a run's row in its own transaction; with `held` (from
        `holding()`), its events and those pending before them join that transaction.
        With a running loop, the transaction is the tick's (see `durable`)."""
        row = (run_id, task, workflow, status, wall, wall, os.getpid(), dumps(data or {}))
        if held is not None and held and held.store is not self:
            raise ValueError("these events are held by another store")
        loop = asyncio._get_running_loop()
        if loop is not None:
            events: list[Event] = []
            ops: list[tuple[str, tuple[Any, ...]]] = []
            if held is not None:
                events, held.events = held.events, []
                ops, held.ops = held.ops, []
            self._pending.append(_RunWrite(row, events, ops))
            self._commit_soon()
            return
        if held is None or not held:
            with self._lock:
                self._db.execute(_UPSERT_RUN, row)
            return
        self._write_held(held, run=row)

    def load_run(self, run_id: str) -> dict[str, Any] | None:
        if self._pending:
            self.flush()
        with self._lock:
            row = self._db.execute(
                "SELECT id, task, workflow, status, created, updated, pid, data FROM runs "
                "WHERE id = ?",
                (run_id,),
            ).fetchone()
        return None if row is None else self._run_row(row)

    def runs(self, limit: int | None = None) -> list[dict[str, Any]]:
        sql = (
            "SELECT id, task, workflow, status, created, updated, pid, data FROM runs "
            "ORDER BY created DESC"
        )
        if self._pending:
            self.flush()
        with self._lock:
            rows = self._db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [self._run_row(r) for r in rows]

    def run_states(self, run_ids: Iterable[str]) -> dict[str, tuple[str, float]]:
        """Status and last update of these runs (those the store knows), without their data."""
        ids = list(run_ids)
        states: dict[str, tuple[str, float]] = {}
        if self._pending:
            self.flush()
        with self._lock:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT id, status, updated FROM runs WHERE id IN ({marks})", chunk
                ).fetchall()
                states.update({rid: (status, updated) for rid, status, updated in rows})
        return states

    @staticmethod
    def _run_row(row: tuple[Any, ...]) -> dict[str, Any]:
        keys = ("id", "task", "workflow", "status", "created", "updated", "pid")
        out = dict(zip(keys, row[:7], strict=True))
        out["data"] = json.loads(row[7])
        return out

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Write what is pending and close the database (a timer that fires later does nothing)."""
        with self._arm_lock:
            if self._closed:
                return
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        with self._flush_lock:
            self._flush_locked()
            with self._arm_lock:
                self._closed = True
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"
