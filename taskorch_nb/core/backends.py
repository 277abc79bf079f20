"""Which store a `store=` argument names: a SQLite file, or a PostgreSQL server.

The one place that knows both kinds, so `Store` (SQLite) and `PgStore` (which
extends it) need not know each other's module. TASKORCH_STORE names the store
when the caller names none, so every kernel, CLI run and batch worker of a team
can be pointed at one database by the environment alone.
"""

from __future__ import annotations

import os

from taskorch_nb.core.clock import Clock
from taskorch_nb.core.pgstore import PgStore
from taskorch_nb.core.store import Store
from taskorch_nb.errors import ConfigurationError

#: A store named by URL rather than path; its driver is the `postgres` extra.
URL_SCHEMES = ("postgresql://", "postgres://")

STORE_ENV = "TASKORCH_STORE"


def open_store(target: Store | str | os.PathLike[str] | None = None, *,
               clock: Clock | None = None) -> Store:
    """The store `target` names: a `Store` as is, a `postgresql://` URL (PostgreSQL,
    shared by every process that opens it), a SQLite path or ":memory:". None reads
    TASKORCH_STORE, then falls back to `store.default_path()`."""
    if isinstance(target, Store):
        return target
    if target is None:
        target = os.environ.get(STORE_ENV) or None
    if isinstance(target, str) and target.strip().lower().startswith(URL_SCHEMES):
        return PgStore(target.strip(), clock=clock)
    if isinstance(target, str) and "://" in target:
        scheme = target.split("://", 1)[0]
        raise ConfigurationError(
            f"store {scheme}://...: unknown kind of store; give a SQLite path, \":memory:\" "
            "or a postgresql://user:password@host:port/database URL")
    return Store(target, clock=clock)


__all__ = ["STORE_ENV", "URL_SCHEMES", "open_store"]
