"""Tools fail safe: a default timeout, sync tools that cannot hold the process open,
bugs that are not retried, and names that cannot replace taskorch's own tools."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from taskorch_nb import ConfigurationError, FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.core.tools import DEFAULT_TOOL_TIMEOUT


def recorder(orch: Orchestrator) -> list:
    seen: list = []
    orch.subscribe(seen.append)
    return seen


# -- timeouts ------------------------------------------------------------------------------


async def test_a_hung_tool_times_out_after_the_default(orch: Orchestrator,
                                                       clock: FakeClock) -> None:
    seen = recorder(orch)

    @orch.tool(retry=RetryPolicy(max_attempts=1))
    async def hangs() -> str:
        await clock.sleep(10_000)
        return "never"

    with pytest.raises(TimeoutError):
        await orch.call_tool("hangs")
    failed = [e for e in seen if e.type == "tool.failed"]
    assert [(e.category, e.duration) for e in failed] == [("timeout", DEFAULT_TOOL_TIMEOUT)]


async def test_timeout_is_set_per_orchestrator_and_per_tool(clock: FakeClock) -> None:
    with Orchestrator(store=":memory:", clock=clock, tool_timeout=5) as orch:
        seen = recorder(orch)

        async def hangs() -> None:
            await clock.sleep(10_000)

        orch.tool(hangs, name="default", retry=RetryPolicy(max_attempts=1))
        orch.tool(hangs, name="own", timeout=2, retry=RetryPolicy(max_attempts=1))
        for name in ("default", "own"):
            with pytest.raises(TimeoutError):
                await orch.call_tool(name)
        assert [(e.tool, e.duration) for e in seen if e.type == "tool.failed"] == [
            ("default", 5.0), ("own", 2.0)]


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), "60", True])
def test_bad_timeouts_are_refused(bad: object) -> None:
    with pytest.raises(ConfigurationError, match="timeout must be"):
        Orchestrator(store=":memory:", tool_timeout=bad)  # type: ignore[arg-type]


async def test_sync_tool_runs_on_a_daemon_thread(orch: Orchestrator) -> None:
    @orch.tool()
    def where() -> bool:
        return threading.current_thread().daemon

    assert await orch.call_tool("where") is True


def test_a_timed_out_sync_tool_does_not_keep_the_process_alive() -> None:
    script = textwrap.dedent("""
        import asyncio
        import threading
        from taskorch_nb import Orchestrator, RetryPolicy

        with Orchestrator(store=":memory:", tool_timeout=0.2) as orch:
            stuck = threading.Event()

            @orch.tool(retry=RetryPolicy(max_attempts=1))
            def hung() -> None:
                stuck.wait()  # never set: the tool hangs for good

            try:
                asyncio.run(orch.call_tool("hung"))
            except TimeoutError:
                print("timed out", flush=True)
    """)
    # The guard only catches a hang (the bug); the assertion is on the exit and its output.
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "timed out"


# -- which errors are transient --------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("boom"), ZeroDivisionError("division by zero")])
async def test_a_bug_in_a_tool_is_not_retried_nor_counted_but_remembered(
    orch: Orchestrator, error: Exception,
) -> None:
    seen = recorder(orch)
    calls = 0

    @orch.tool()
    async def buggy() -> None:
        nonlocal calls
        calls += 1
        raise error

    for _ in range(8):  # more than any breaker threshold
        with pytest.raises(type(error)) as caught:
            await orch.call_tool("buggy")
    assert calls == 8  # one attempt per call, no retries
    assert "retry.scheduled" not in [e.type for e in seen]
    assert orch.circuits["buggy"].snapshot()["state"] == "CLOSED"
    assert orch.circuits["buggy"].snapshot()["failures"] == 0
    [pattern] = [p for p in orch.immune.patterns() if p.tool == "buggy"]
    assert (pattern.category, pattern.occurrences) == ("error", 8)
    assert any(pattern.name in note for note in caught.value.__notes__)


async def test_a_transient_error_is_still_retried(orch: Orchestrator) -> None:
    from taskorch_nb.testing import http_error

    seen = recorder(orch)

    @orch.tool()
    async def flaky() -> None:
        raise http_error(503)

    with pytest.raises(Exception, match="503"):
        await orch.call_tool("flaky")
    assert [e.type for e in seen].count("retry.scheduled") == 2


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    ("read_file", "taken by a built-in tool"),
    ("simulated:sim-small", "reserved"),
    ("my:tool", "reserved"),
    ("", "needs a name"),
    ("   ", "needs a name"),
])
def test_reserved_and_empty_names_are_refused(orch: Orchestrator, name: str,
                                             message: str) -> None:
    builtin = orch.tools["read_file"]
    with pytest.raises(ConfigurationError, match=message):
        orch.tool(lambda: "mine", name=name)
    assert orch.tools["read_file"] is builtin


def test_a_lambda_needs_a_name(orch: Orchestrator) -> None:
    with pytest.raises(ConfigurationError, match="needs a name"):
        orch.tool(lambda: 1)


async def test_the_model_call_cannot_be_replaced(orch: Orchestrator) -> None:
    reply = await orch.complete([{"role": "user", "content": "hi"}])
    key = orch.model_key()
    with pytest.raises(ConfigurationError, match="reserved"):
        orch.tool(lambda **_: "fake", name=key)
    assert (await orch.complete([{"role": "user", "content": "hi"}])).text == reply.text


async def test_a_user_tool_may_be_registered_again(orch: Orchestrator) -> None:
    orch.tool(lambda: 1, name="mine")
    orch.tool(lambda: 2, name="mine")  # a notebook cell run twice
    assert await orch.call_tool("mine") == 2
