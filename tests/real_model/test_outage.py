"""A real server that dies or freezes mid-run: the run pauses, and resumes when it is back.

Each test starts its own llama-cpp-python server (tests/llm_server.py), as it kills or
freezes it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.core.circuit import CircuitBreaker
from taskorch_nb.core.events import Event
from taskorch_nb.engine.run import RunStatus
from taskorch_nb.errors import ProviderUnavailableError
from tests.llm_server import free_port, install, running_server

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]

TASK = "Write a function add(a, b) in calc.py that returns a + b."


@pytest.fixture(autouse=True)
def _server_installed() -> None:
    reason = install()
    if reason is not None:
        pytest.skip(f"REAL-MODEL TESTS SKIPPED: {reason}")


async def _until(events: list[Event], predicate, limit: float = 900.0) -> None:
    started = time.monotonic()
    while not any(predicate(e) for e in events):
        assert time.monotonic() - started < limit, "the run never got there"
        await asyncio.sleep(0.2)


async def test_server_killed_mid_run_pauses_and_the_run_resumes_when_it_is_back(
        tmp_path: Path) -> None:
    port = free_port()
    events: list[Event] = []
    orch = Orchestrator(provider="openai", model="smollm2",
                        base_url=f"http://127.0.0.1:{port}/v1", timeout=300, deadline=900,
                        breaker=CircuitBreaker(reset_timeout=1.0),
                        store=str(tmp_path / "taskorch.db"), langfuse=False)
    orch.subscribe(events.append)
    with running_server(port) as server:
        run = await orch.start(TASK, workflow="full", max_rounds=1,
                               workspace=str(tmp_path / "ws"))
        await _until(events, lambda e: e.type == "phase.completed" and e.phase == "research")
        server.process.kill()
        await run
    assert run.status is RunStatus.PAUSED, run.error
    assert run.error.startswith("provider openai:smollm2 unavailable: ")
    assert run.error.endswith("; resume when it is back")
    assert "research:1" in run.checkpoint["phases_done"]
    paid = [e.call_id for e in events if e.type == "llm.completed"]
    assert paid

    await asyncio.sleep(1.5)  # the breaker's reset timeout
    with running_server(port):
        resumed = await orch.resume(run)
    after = [e for e in events if e.type == "llm.completed" and e.call_id not in paid]
    done = [e.phase for e in events if e.type == "phase.completed"]
    assert done.count("research") == 1  # replayed from the checkpoint, not asked again
    assert after  # the rest of the work was done by the restarted server
    qc = [e.type for e in events if e.type in ("qc.passed", "qc.failed")]
    if resumed.status is RunStatus.FAILED:
        assert qc == ["qc.failed"], resumed.error
        assert resumed.error.startswith("QC did not approve"), resumed.error
    else:
        assert resumed.status is RunStatus.COMPLETED, resumed.error
        assert qc == ["qc.passed"]
    await orch.aclose()


async def test_a_frozen_server_gives_a_clear_timeout_within_the_deadline() -> None:
    with running_server() as server:
        orch = Orchestrator(provider="openai", model="smollm2", base_url=server.base_url,
                            timeout=4, deadline=20, store=":memory:", langfuse=False)
        os.kill(server.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(ProviderUnavailableError) as caught:
            await orch.complete([{"role": "user", "content": "Say hi."}], max_tokens=8)
        waited = time.monotonic() - started
        os.kill(server.process.pid, signal.SIGCONT)
        await orch.aclose()
    message = str(caught.value)
    assert message.startswith("provider openai:smollm2 unavailable: ")
    # 3 attempts of 4 s and the waits between them, or the 20 s deadline: never more.
    assert ("did not answer within 4 s" in message
            or "within the 20 s deadline" in message), message
    print(f"\nfrozen server: {message} after {waited:.1f} s")
