"""An outage pauses a run (never fails it), and a call is bounded by its deadline."""

from __future__ import annotations

import asyncio

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.core.events import LLMEvent
from taskorch_nb.errors import ConfigurationError, ProviderUnavailableError
from taskorch_nb.llm.simulated import SimulatedProvider


def _llm_completed(run) -> int:
    return sum(1 for e in run.events if isinstance(e, LLMEvent) and e.type == "llm.completed")


async def test_unreachable_provider_pauses_the_run_and_resume_pays_nothing_twice(
        tmp_path) -> None:
    clean = Orchestrator(store=":memory:", clock=FakeClock())
    baseline = await clean.run("Build a CSV parser", workspace=tmp_path / "clean")
    assert baseline.status is RunStatus.COMPLETED
    clean_calls = clean.provider.call_count
    clean.close()

    clock = FakeClock()
    # Calls 3, 4, 5 fail to connect: the third model call and its two retries.
    orch = Orchestrator(store=":memory:", clock=clock, faults="connx3@3")
    run = await orch.run("Build a CSV parser", workspace=tmp_path / "outage")
    assert run.status is RunStatus.PAUSED
    assert run.error.startswith("provider simulated:sim-small unavailable: ")
    assert run.error.endswith("; resume when it is back")
    assert "research:1" in run.checkpoint["phases_done"]
    paid_before = _llm_completed(run)
    assert paid_before == 2
    assert [e.type for e in run.events][-1] == "run.paused"
    assert orch.circuits["simulated:sim-small"].state.value == "OPEN"

    # Still down (the breaker is open): resuming pauses again at once, paying nothing.
    again = await orch.resume(run)
    assert again.status is RunStatus.PAUSED
    assert "circuit 'simulated:sim-small' is OPEN" in again.error
    assert orch.provider.call_count == 5

    clock.advance(31)  # the breaker's reset timeout: the provider may be back
    resumed = await orch.resume(run)
    assert resumed.status is RunStatus.COMPLETED
    # Every paid call of the clean run was made exactly once, plus the 3 failed attempts.
    assert orch.provider.call_count == clean_calls + 3
    assert resumed.guard.spent == baseline.guard.spent
    orch.close()


async def test_a_call_is_bounded_by_its_deadline() -> None:
    clock = FakeClock()
    # Each request times out after 25 s; 3 attempts and their waits pass a 40 s deadline.
    orch = Orchestrator(store=":memory:", clock=clock, deadline=40,
                        provider=SimulatedProvider(clock=clock, faults="timeoutx9",
                                                   timeout=25))
    started = clock.now()
    with pytest.raises(ProviderUnavailableError,
                       match=r"no answer within the 40 s deadline of one call; resume when"):
        await orch.complete([{"role": "user", "content": "hi"}])
    assert clock.now() - started == pytest.approx(40)
    assert orch.session_guard.spent == 0
    orch.close()


def test_default_deadline_fits_three_attempts_of_the_default_timeout() -> None:
    from taskorch_nb.llm.openai import OpenAIProvider

    orch = Orchestrator(store=":memory:")
    timeout = OpenAIProvider(base_url="http://127.0.0.1:9/v1").timeout
    assert orch.deadline < 180
    assert 3 * timeout + 2 + 4 < orch.deadline
    orch.close()


@pytest.mark.parametrize("value", [0, -1, "soon", True])
def test_bad_deadline_or_timeout_is_a_clear_error(value) -> None:
    with pytest.raises(ConfigurationError, match="deadline must be a number of seconds"):
        Orchestrator(store=":memory:", deadline=value)
    with pytest.raises(ConfigurationError, match="timeout must be a number of seconds"):
        Orchestrator(provider="openai", model="m", store=":memory:",
                     base_url="http://127.0.0.1:9/v1", timeout=value)


async def test_deadline_does_not_cut_a_slow_answer_within_it() -> None:
    clock = FakeClock()
    orch = Orchestrator(store=":memory:", clock=clock, latency=30.0, deadline=40)
    done = await asyncio.wait_for(orch.complete([{"role": "user", "content": "hi"}]), None)
    assert done.text
    orch.close()
