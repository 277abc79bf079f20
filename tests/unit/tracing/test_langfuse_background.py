"""Langfuse down costs a run nothing: the run only asks for a flush, which happens on a
thread of its own; the one bounded wait is close(); the SDK's log lines become events."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from taskorch_nb import FakeClock, Orchestrator, RunStatus
from taskorch_nb.tracing.langfuse import LangfuseExporter
from tests.langfuse_server import HangingServer, closed_port

pytest.importorskip("langfuse")


class BlockingFlushClient:
    """A real SDK client (spans kept in memory) whose flush blocks until released."""

    def __init__(self, order: list[str]) -> None:
        from langfuse import Langfuse
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        self._inner = Langfuse(public_key=f"pk-block-{time.monotonic_ns()}", secret_key="sk",
                               base_url="http://127.0.0.1:9", tracing_enabled=True,
                               span_exporter=InMemorySpanExporter(),
                               tracer_provider=TracerProvider())
        self.order = order
        self.release = threading.Event()
        self.flush_threads: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def flush(self) -> None:
        self.flush_threads.append(threading.current_thread().name)
        self.order.append("flush started")
        self.release.wait()
        self.order.append("flush finished")
        self._inner.flush()


async def test_a_run_does_not_wait_for_the_flush(tmp_path) -> None:
    order: list[str] = []
    client = BlockingFlushClient(order)
    warnings: list = []
    exporter = LangfuseExporter(client_factory=lambda: client, on_warning=warnings.append,
                                flush_timeout=2.0)
    orch = Orchestrator(store=":memory:", clock=FakeClock(), langfuse=exporter)
    # only a guard against this test hanging if the run did wait: never reached otherwise
    guard = threading.Timer(120, client.release.set)
    guard.daemon = True
    guard.start()
    try:
        first = await orch.run("Summarise", workflow="single", archetype="researcher",
                               workspace=tmp_path / "a")
        order.append("run 1 returned")
        second = await orch.run("Summarise", workflow="single", archetype="researcher",
                                workspace=tmp_path / "b")
        order.append("run 2 returned")
        released_by_guard = client.release.is_set()
        during_runs = list(warnings)  # close() may warn: its client's scores go to a dead port
    finally:
        client.release.set()
        guard.cancel()
        await orch.aclose()
    assert not released_by_guard
    assert first.status is second.status is RunStatus.COMPLETED
    # both runs returned while a flush was still blocked; the flush ran off the loop
    assert order.index("run 2 returned") < order.index("flush finished")
    assert client.flush_threads
    assert set(client.flush_threads) == {"taskorch-langfuse-flush"}
    assert exporter.background_flushes >= 1
    assert during_runs == []


@pytest.mark.parametrize("outage", ["closed port", "blackhole"])
async def test_langfuse_down_completes_runs_and_warns_as_events(
    outage: str, tmp_path, capfd: pytest.CaptureFixture[str],
) -> None:
    server = HangingServer() if outage == "blackhole" else None
    with server or closed_port() as target:
        url = target.url if isinstance(target, HangingServer) else target
        exporter = LangfuseExporter(public_key=f"pk-down-{time.monotonic_ns()}",
                                    secret_key="sk", base_url=url, timeout=1.0,
                                    flush_timeout=1.0)
        orch = Orchestrator(store=":memory:", clock=FakeClock(), langfuse=exporter)
        warnings: list = []
        orch.subscribe(lambda e: warnings.append(e) if e.type == "tracing.warning" else None)
        runs = [await orch.run("Summarise", workflow="single", archetype="researcher",
                               workspace=tmp_path / str(n)) for n in range(3)]
        await orch.aclose()
    assert [r.status for r in runs] == [RunStatus.COMPLETED] * 3
    assert exporter.background_flushes >= 1
    assert warnings, "an unreachable Langfuse must say so"
    assert {w.detail["reason"] for w in warnings} <= {"unreachable", "timeout", "sdk"}
    if outage == "blackhole":
        assert "timeout" in {w.detail["reason"] for w in warnings}  # close gave up at its bound
    err = capfd.readouterr().err
    assert "Failed to" not in err
    assert "langfuse" not in err.lower()


def test_sdk_log_warnings_become_one_event_each_not_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from langfuse import Langfuse
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    def factory() -> Any:
        # the SDK's score consumer logs like this when the server is down
        log = logging.getLogger("langfuse._task_manager.score_consumer")
        for _ in range(3):
            log.warning("API error: Failed to send %s scores to Langfuse.", 2)
        return Langfuse(public_key=f"pk-log-{time.monotonic_ns()}", secret_key="sk",
                        base_url="http://127.0.0.1:9", span_exporter=InMemorySpanExporter(),
                        tracer_provider=TracerProvider())

    warnings: list = []
    exporter = LangfuseExporter(client_factory=factory, on_warning=warnings.append)
    from taskorch_nb.core.events import RunEvent, scope

    with scope(run_id="r-log"):
        exporter(RunEvent(type="run.started", task="t", workflow="single"))
        exporter(RunEvent(type="run.completed"))
    assert exporter.flush(10.0)
    exporter.close(5.0)
    sdk = [w for w in warnings if w.detail["reason"] == "sdk"]
    assert [w.message for w in sdk] == [
        "Langfuse SDK: API error: Failed to send 2 scores to Langfuse."]
    assert sdk[0].type == "tracing.warning"
    assert "Failed to send" not in capfd.readouterr().err
    assert logging.getLogger("langfuse").propagate  # restored once no exporter is open
