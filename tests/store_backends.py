"""The store's backends for parametrized tests: a SQLite file, or PostgreSQL.

`BACKENDS` parametrizes a test over both (PostgreSQL is skipped, with the command
that starts one, when TASKORCH_TEST_PG_URL is not set: scripts/start-postgres.sh).
`fresh_store(backend, tmp_path)` gives each test an empty store of its own: a new
file, or a new PostgreSQL schema (cheaper than a database) named in the URL's
`options`, dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

PG_ENV = "TASKORCH_TEST_PG_URL"

POSTGRES = pytest.param("postgres", id="postgres", marks=[
    pytest.mark.postgres,
    pytest.mark.skipif(not os.environ.get(PG_ENV), reason=(
        f"{PG_ENV} is not set; start one with: eval \"$(scripts/start-postgres.sh)\"")),
])

BACKENDS = [pytest.param("sqlite", id="sqlite"), POSTGRES]


@contextlib.contextmanager
def fresh_store(backend: str, tmp_path: Path) -> Iterator[str]:
    """What to pass as `store=`: an empty SQLite file or an empty PostgreSQL schema."""
    if backend == "sqlite":
        yield str(tmp_path / "taskorch.db")
        return
    import psycopg

    base = os.environ[PG_ENV]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(base, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
