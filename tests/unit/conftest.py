"""Fixtures shared across the unit test folders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub_helpers import BACKENDS, RunningHub, fresh_db


@pytest.fixture(params=BACKENDS)
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningHub]:
    """A federation hub served on loopback over an empty database of each backend (no rate
    limit); a test module may define its own `hub` with other settings."""
    from taskorch_nb.federation.hub import create_app

    with fresh_db(request.param, tmp_path) as db, RunningHub(
        create_app(db, rate_limit=None)
    ) as running:
        yield running
