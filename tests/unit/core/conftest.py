"""An orchestrator on a fake clock with jitter-free retries, for the guarded-call tests."""

from __future__ import annotations

import pytest

from taskorch_nb import FakeClock, Orchestrator, RetryPolicy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def orch(clock: FakeClock):
    o = Orchestrator(store=":memory:", clock=clock, retry=RetryPolicy(jitter=0.0))
    yield o
    o.close()
