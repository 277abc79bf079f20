"""SQLite persistence: runs, events, patterns, circuit states and model capabilities.

Routine events (a successful tool call) are written in batches by a
background writer at least every 100 ms; what must never be lost (money,
run status, breaker transitions, learned patterns) is written at once in its
own transaction. A killed process loses at most the last 100 ms of routine
events.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

from taskorch_nb.core.events import Event, event_from_record, field_names

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, task TEXT NOT NULL, workflow TEXT, status TEXT NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL, pid INTEGER, data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT, seq INTEGER, type TEXT NOT NULL,
    ts REAL, wall REAL, record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, id);
CREATE TABLE IF NOT EXISTS patterns (
    signature TEXT PRIMARY KEY, record TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS capabilities (
    key TEXT PRIMARY KEY, record TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS circuits (
    name TEXT PRIMARY KEY, state TEXT NOT NULL, failures INTEGER NOT NULL,
    opened_wall REAL, updated REAL NOT NULL
);
"""

#: Event types written at once, never batched: money, run status, breaker
#: transitions, what the immune system learned. Everything else waits <= 100 ms.
_DURABLE_PREFIXES = ("run.", "circuit.")
_DURABLE_TYPES = frozenset(
    {"budget.settled", "budget.rejected", "budget.overspent", "budget.extended",
     "pattern.learned", "pattern.recovered", "pattern.demoted", "pattern.merged"}
)

FLUSH_INTERVAL = 0.1
_MULTI_ROW_LIMIT = 64


@functools.cache
def _insert_sql(rows: int) -> str:
    values = ",".join(["(?,?,?,?,?,?)"] * rows)
    return f"INSERT INTO events (run_id, seq, type, ts, wall, record) VALUES {values}"


def default_path() -> Path:
    """`$TASKORCH_HOME/taskorch.db`, `~/.taskorch/taskorch.db` by default."""
    home = os.environ.get("TASKORCH_HOME") or os.path.join(os.path.expanduser("~"), ".taskorch")
    return Path(home) / "taskorch.db"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"))


_MONEY_FIELDS = ("amount", "spent", "reserved", "limit", "remaining", "cost")


def _encode_event(event: Event) -> str:
    # Only the fields that are set, Decimals as strings in the same pass: this runs
    # for every event, so it avoids json's `default` callback and a second dict.
    record = {"kind": type(event).__name__}
    for name in field_names(type(event)):
        value = getattr(event, name)
        if value is None:
            continue
        record[name] = str(value) if type(value) is Decimal else value
    return json.dumps(record, default=_json_default, separators=(",", ":"))


def _decode_event(text: str) -> Event:
    record = json.loads(text)
    for key in _MONEY_FIELDS:
        if isinstance(record.get(key), str):
            record[key] = Decimal(record[key])
    return event_from_record(record)


def is_durable(event_type: str) -> bool:
    return event_type in _DURABLE_TYPES or event_type.startswith(_DURABLE_PREFIXES)


class Store:
    """One SQLite database (WAL) shared by the notebook, the CLI and the MCP server."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            path = default_path()
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        with self._lock:
            if self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        self._pending: deque[Event] = deque()
        self._wake = threading.Event()
        self._flush_lock = threading.Lock()
        self._closed = False
        self._writer = threading.Thread(target=self._write_loop, name="taskorch-store", daemon=True)
        self._writer.start()

    # -- events ----------------------------------------------------------------

    def record(self, event: Event) -> None:
        """Bus subscriber: durable events at once, routine ones in the next batch."""
        self._pending.append(event)
        if is_durable(event.type):
            self.flush()  # with what came before it, so the table keeps the order

    def flush(self) -> None:
        """Write the pending batch now."""
        with self._flush_lock:  # one flusher at a time keeps batches in order
            pending = self._pending
            batch = [pending.popleft() for _ in range(len(pending))]
            if batch:
                self._write_events(batch)

    def _write_loop(self) -> None:
        while not self._closed:
            self._wake.wait(FLUSH_INTERVAL)
            if self._pending:
                try:
                    self.flush()
                except sqlite3.ProgrammingError:
                    return  # closed under us

    def _write_events(self, events: Iterable[Event]) -> None:
        rows = [(e.run_id, e.seq, e.type, e.ts, e.wall, _encode_event(e)) for e in events]
        with self._lock:
            if len(rows) <= _MULTI_ROW_LIMIT:
                # One statement is one transaction: a third of the calls of BEGIN/COMMIT.
                self._db.execute(_insert_sql(len(rows)), [v for row in rows for v in row])
                return
            self._db.execute("BEGIN")
            self._db.executemany(_insert_sql(1), rows)
            self._db.execute("COMMIT")

    def events(self, run_id: str | None = None) -> list[Event]:
        """Events as written (the pending batch included), oldest first."""
        self.flush()
        with self._lock:
            if run_id is None:
                rows = self._db.execute("SELECT record FROM events ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT record FROM events WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
        return [_decode_event(r[0]) for r in rows]

    # -- patterns --------------------------------------------------------------

    def save_pattern(self, record: dict[str, Any], wall: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO patterns (signature, record, updated) VALUES (?,?,?) "
                "ON CONFLICT(signature) DO UPDATE SET record=excluded.record, "
                "updated=excluded.updated",
                (record["signature"], dumps(record), wall),
            )

    def load_patterns(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM patterns ORDER BY signature").fetchall()
        return [json.loads(r[0]) for r in rows]

    # -- circuits --------------------------------------------------------------

    def save_circuit(self, name: str, state: str, failures: int, opened_wall: float | None,
                     wall: float) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO circuits (name, state, failures, opened_wall, updated) "
                "VALUES (?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET state=excluded.state, "
                "failures=excluded.failures, opened_wall=excluded.opened_wall, "
                "updated=excluded.updated",
                (name, state, failures, opened_wall, wall),
            )

    def load_circuits(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT name, state, failures, opened_wall FROM circuits"
            ).fetchall()
        return {
            name: {"state": state, "failures": failures, "opened_wall": opened}
            for name, state, failures, opened in rows
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

    # -- runs ------------------------------------------------------------------

    def save_run(self, run_id: str, *, task: str, workflow: str | None, status: str,
                 wall: float, data: dict[str, Any] | None = None) -> None:
        """Insert or update a run's row in its own transaction."""
        with self._lock:
            self._db.execute(
                "INSERT INTO runs (id, task, workflow, status, created, updated, pid, data) "
                "VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
                "status=excluded.status, updated=excluded.updated, pid=excluded.pid, "
                "data=excluded.data",
                (run_id, task, workflow, status, wall, wall, os.getpid(), dumps(data or {})),
            )

    def load_run(self, run_id: str) -> dict[str, Any] | None:
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
        with self._lock:
            rows = self._db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [self._run_row(r) for r in rows]

    @staticmethod
    def _run_row(row: tuple[Any, ...]) -> dict[str, Any]:
        keys = ("id", "task", "workflow", "status", "created", "updated", "pid")
        out = dict(zip(keys, row[:7], strict=True))
        out["data"] = json.loads(row[7])
        return out

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        self.flush()
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=2)
        with self._lock:
            self._db.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"
