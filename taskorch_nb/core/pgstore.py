"""The store on PostgreSQL (psycopg 3): one database shared by many processes.

`PgStore` is `Store` with another connection: the same tables (core/schema.py),
the same statements (an adapter turns sqlite3's `?` into psycopg's `%s`), the
same batching and `holding()` transactions. What PostgreSQL adds is sharing:
the budget ledger's conditional updates hold across processes, and a breaker
transition is announced with NOTIFY in the transaction that saves it, so every
other process listening on the store adopts it within milliseconds; so is a
learned failure pattern. After a lost connection the listener reconnects and
reloads every breaker and pattern.

psycopg, not SQLAlchemy: the store's SQL is a handful of statements both
dialects share, the SQLite store stays on the standard library (its hot path is
measured in microseconds), and LISTEN/NOTIFY is a psycopg call either way.
The driver is the `postgres` extra, imported only when a URL is opened.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from taskorch_nb.core.clock import Clock
from taskorch_nb.core.schema import migrate
from taskorch_nb.core.store import _EVENT_COLUMNS, Store
from taskorch_nb.errors import ConfigurationError

log = logging.getLogger(__name__)

CHANNEL = "taskorch_circuits"
PATTERNS = "taskorch_patterns"

_COPY_EVENTS = "COPY events (run_id, seq, type, ts, wall, record) FROM STDIN"

#: How long the listener waits for a notification before it checks it should stop.
LISTEN_POLL = 0.5

#: `(name, state, failures, opened_wall, held)` of a breaker another process moved.
CircuitCallback = Callable[[str, str, int, float | None, bool], Any]


def shown_url(url: str) -> str:
    """`url` as an error may show it: the password replaced by `***`."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url.split("://", 1)[0] + "://..."


@functools.cache
def _pg_sql(sql: str) -> str:
    return sql.replace("?", "%s")


def _driver() -> Any:
    try:
        import psycopg
    except ImportError:
        raise ConfigurationError(
            "a postgresql:// store needs the PostgreSQL driver psycopg: "
            "pip install 'taskorch_nb[postgres]'") from None
    return psycopg


class _Connection:
    """A psycopg connection (autocommit) that takes sqlite3's calls and `?` placeholders.

    A connection the server dropped (a restart, an idle timeout) fails the statement
    that found it broken; the next statement outside a transaction connects again, so
    a long-lived kernel survives a database restart without being rebuilt."""

    __slots__ = ("_in_transaction", "raw", "url")

    def __init__(self, raw: Any, url: str) -> None:
        self.raw = raw
        self.url = url
        self._in_transaction = False

    def _ready(self, sql: str) -> Any:
        if self.raw.broken and not self._in_transaction:
            self.raw.close()
            self.raw = connect(self.url)
        if sql == "BEGIN":
            self._in_transaction = True
        elif sql in ("COMMIT", "ROLLBACK"):
            self._in_transaction = False
            if self.raw.broken:  # nothing to end: the server already did
                return None
        return self.raw

    def execute(self, sql: str, params: Any = None) -> Any:
        raw = self._ready(sql)
        return None if raw is None else raw.execute(_pg_sql(sql), params)

    def executemany(self, sql: str, rows: Any) -> None:
        with self._ready(sql).cursor() as cursor:
            cursor.executemany(_pg_sql(sql), rows)

    def copy(self, statement: str, rows: Any) -> None:
        """`COPY ... FROM STDIN` of `rows` (tuples), in one statement."""
        with self._ready(statement).cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def close(self) -> None:
        self.raw.close()


def connect(url: str) -> Any:
    """A psycopg connection in autocommit mode; any failure is a `ConfigurationError`
    that shows the URL without its password."""
    psycopg = _driver()
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigurationError(f"store {shown_url(url)}: cannot connect ({reason})") from None


class PgStore(Store):
    """The store API on PostgreSQL; `open_store("postgresql://...")` makes one."""

    dialect = "postgresql"

    def __init__(self, url: str, *, clock: Clock | None = None, **options: Any) -> None:
        self.url = url
        self._origin = uuid.uuid4().hex  # our own NOTIFYs come back: skip them
        self._watchers: list[CircuitCallback] = []
        self._pattern_watchers: list[Callable[[dict[str, Any]], Any]] = []
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()
        super().__init__(url, clock=clock, **options)
        self.path = shown_url(url)

    def _connect(self, path: str) -> Any:
        db = _Connection(connect(path), path)
        try:
            migrate(db, "postgresql", wall=time.time())
        except RuntimeError as exc:
            db.close()
            raise ConfigurationError(f"store {shown_url(path)}: {exc}") from None
        return db

    def _insert_events(self, params: list[Any], count: int) -> None:
        """Event rows by COPY: on PostgreSQL a fraction of the cost per row of INSERTs
        (benchmarks/bench_events.py)."""
        rows = zip(*[iter(params)] * _EVENT_COLUMNS, strict=True)
        self._db.copy(_COPY_EVENTS, rows)

    # -- circuits, announced -------------------------------------------------------

    def save_circuit(self, name: str, state: str, failures: int, opened_wall: float | None,
                     wall: float, held: bool = False) -> None:
        """Save the breaker's state and NOTIFY the other processes, in one transaction."""
        payload = json.dumps({"name": name, "state": state, "failures": failures,
                              "opened_wall": opened_wall, "held": held,
                              "origin": self._origin})
        with self._lock:
            self._db.execute("BEGIN")
            try:
                super().save_circuit(name, state, failures, opened_wall, wall, held)
                self._db.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _announce_pattern(self, record: dict[str, Any]) -> None:
        """NOTIFY the other processes, in the transaction that saves the pattern."""
        payload = json.dumps({"signature": record["signature"], "origin": self._origin})
        self._db.execute("SELECT pg_notify(?, ?)", (PATTERNS, payload))

    def watch_circuits(self, callback: CircuitCallback) -> None:
        """Call `callback` (on a listener thread) for every breaker transition another
        process saves from now on, and once for every stored breaker whenever the
        listener (re)connects, so nothing said while it was away is missed."""
        self._watchers.append(callback)
        self._start_listening()

    def watch_patterns(self, callback: Callable[[dict[str, Any]], Any]) -> None:
        """Call `callback(record)` (on the listener thread) for every pattern another
        process saves from now on, and for every stored one when the listener
        (re)connects."""
        self._pattern_watchers.append(callback)
        self._start_listening()

    def _start_listening(self) -> None:
        if self._listener is None:
            self._listener = threading.Thread(target=self._listen, name="taskorch-pg-listen",
                                              daemon=True)
            self._listener.start()

    def _listen(self) -> None:
        psycopg = _driver()
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    conn.execute(f"LISTEN {PATTERNS}")
                    for name, row in self.load_circuits().items():
                        self._tell(name, row["state"], row["failures"], row["opened_wall"],
                                   row["held"])
                    if self._pattern_watchers:
                        for record in self.load_patterns():
                            self._tell_pattern(record)
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_POLL):
                            try:
                                self._heard(note.channel, note.payload)
                            except Exception:  # one bad message must not deafen us
                                log.exception("taskorch: could not adopt %s %s",
                                              note.channel, note.payload)
            except psycopg.Error:
                # The server went away: wait a little, reconnect and reload (above).
                self._stop.wait(1.0)

    def _heard(self, channel: str, payload: str) -> None:
        message = json.loads(payload)
        if message.get("origin") == self._origin:
            return
        if channel == PATTERNS:
            rows = self.query("SELECT record FROM patterns WHERE signature = ?",
                              (message["signature"],))
            if rows:
                self._tell_pattern(json.loads(rows[0][0]))
            return
        self._tell(message["name"], message["state"], int(message["failures"]),
                   message.get("opened_wall"), bool(message.get("held", False)))

    def _tell_pattern(self, record: dict[str, Any]) -> None:
        for callback in list(self._pattern_watchers):
            callback(record)

    def _tell(self, name: str, state: str, failures: int, opened_wall: float | None,
              held: bool) -> None:
        for callback in list(self._watchers):
            callback(name, state, failures, opened_wall, held)

    def close(self) -> None:
        self._stop.set()
        listener = self._listener
        super().close()
        if listener is not None and listener is not threading.current_thread():
            listener.join(timeout=LISTEN_POLL * 4)

    def __repr__(self) -> str:
        return f"PgStore({self.path!r})"


__all__ = ["CHANNEL", "PATTERNS", "PgStore", "connect", "shown_url"]
