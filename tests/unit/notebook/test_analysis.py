"""Post-mortem recipes on known events: what failed, where the time went, how runs compare."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from taskorch_nb.core.events import Event, EventBus, LLMEvent, RunEvent, ToolEvent, scope
from taskorch_nb.notebook import analysis
from taskorch_nb.notebook.analysis import compare, failures, phase_durations
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.frames import events_df


def llm(phase: str, cost: str) -> LLMEvent:
    return LLMEvent(type="llm.completed", call_id="c", provider="sim", model="m", phase=phase,
                    cost=Decimal(cost))


@pytest.fixture
def events() -> list[Event]:
    """Research (2 s, $0.25), build round 1 (5 s), build round 2 left open, with failures."""
    clock = FakeClock()
    bus = EventBus(clock)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    with scope(run_id="run-1"):
        bus.emit(RunEvent(type="run.started", task="t"))
        bus.emit(RunEvent(type="phase.started", phase="research"))
        bus.emit(llm("research", "0.10"))
        bus.emit(ToolEvent(type="tool.failed", tool="search", category="timeout", error="slow"))
        bus.emit(ToolEvent(type="retry.scheduled", tool="search", attempt=2, wait=1.0))
        clock.advance(2)
        bus.emit(llm("research", "0.15"))
        bus.emit(RunEvent(type="phase.completed", phase="research"))
        bus.emit(RunEvent(type="phase.started", phase="build"))
        clock.advance(5)
        bus.emit(ToolEvent(type="tool.succeeded", tool="write_file"))
        bus.emit(RunEvent(type="phase.completed", phase="build"))
        bus.emit(RunEvent(type="qc.failed", status="failed"))
        bus.emit(RunEvent(type="phase.started", phase="build"))
        bus.emit(llm("build", "0.50"))
    return seen


def test_failures_are_the_failure_types_in_order(events: list[Event]) -> None:
    rows = failures(events)
    assert rows["type"].tolist() == ["tool.failed", "retry.scheduled", "qc.failed"]
    assert rows.index.tolist() == [0, 1, 2]
    assert rows["tool"].tolist()[:2] == ["search", "search"]
    assert rows["category"].iloc[0] == "timeout"
    assert rows["wait"].iloc[1] == 1.0
    assert set(rows.columns) <= set(analysis._FAILURE_COLUMNS)


def test_a_run_or_a_frame_works_as_well_as_a_list(events: list[Event]) -> None:
    class HasEvents:
        def events_df(self) -> pd.DataFrame:
            return events_df(events)

    by_list = failures(events)
    pd.testing.assert_frame_equal(failures(events_df(events)), by_list)
    pd.testing.assert_frame_equal(failures(HasEvents()), by_list)


def test_phase_rounds_have_seconds_on_the_runs_clock_and_their_cost(
        events: list[Event]) -> None:
    table = phase_durations(events)
    assert table[["phase", "round"]].to_numpy().tolist() == [
        ["research", 1], ["build", 1], ["build", 2]]
    assert table["seconds"].tolist()[:2] == [2.0, 5.0]
    assert math.isnan(table["seconds"].iloc[2])  # still open: no made-up end
    assert table["cost"].tolist() == pytest.approx([0.25, 0.0, 0.5])
    assert dict(table.dtypes.astype(str)) == {"phase": "str", "round": "int64",
                                              "seconds": "float64", "cost": "float64"}


def test_no_events_gives_empty_frames_with_the_columns() -> None:
    assert failures([]).empty
    table = phase_durations([])
    assert table.empty
    assert list(table.columns) == ["phase", "round", "seconds", "cost"]


def test_compare_has_one_row_per_run_with_its_metrics() -> None:
    class Finished:
        def __init__(self, run_id: str, status: str, spent: str, retries: int) -> None:
            self._summary = {
                "run_id": run_id, "task": "t", "workflow": "full", "status": status,
                "cost": {"spent": Decimal(spent), "limit": Decimal("5")},
                "metrics": {"model_calls": 3, "retries": retries},
            }

        def summary(self) -> dict[str, Any]:
            return self._summary

    table = compare([Finished("a", "completed", "0.40", 0), Finished("b", "failed", "1.25", 4)])
    assert table.to_dict("records") == [
        {"run_id": "a", "task": "t", "workflow": "full", "status": "completed", "spent": 0.4,
         "limit": 5.0, "model_calls": 3, "retries": 0},
        {"run_id": "b", "task": "t", "workflow": "full", "status": "failed", "spent": 1.25,
         "limit": 5.0, "model_calls": 3, "retries": 4},
    ]


def test_old_names_still_work_with_a_deprecation_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"analysis\.events_df is deprecated: use "
                                                r"taskorch_nb\.events_df"):
        old = analysis.events_df
    assert old is events_df
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        analysis.nothing  # noqa: B018


def test_failures_status_is_the_http_status_only(events: list[Event]) -> None:
    clock = FakeClock()
    bus = EventBus(clock)
    more: list[Event] = []
    bus.subscribe(more.append)
    with scope(run_id="run-1"):
        bus.emit(ToolEvent(type="tool.failed", tool="search", category="timeout", status=504))
        bus.emit(RunEvent(type="run.failed", status="FAILED"))
    table = failures(more)
    # not 504, None and "FAILED" in one object column: the run's status is its type
    assert table["status"].dtype == "Int64"
    assert table["status"].tolist()[0] == 504
    assert pd.isna(table["status"].iloc[1])
    assert table["type"].tolist() == ["tool.failed", "run.failed"]


async def test_compare_counts_a_broken_runs_model_calls_as_model_calls() -> None:
    from taskorch_nb import Orchestrator, RetryPolicy

    orch = Orchestrator(store=":memory:", clock=FakeClock(), faults="504x3",
                        retry=RetryPolicy(jitter=0.0))
    try:
        broken = await orch.run("Summarise the changelog", workflow="single",
                                archetype="researcher")
    finally:
        orch.close()
    # the model failed three times behind its breaker: one model call, three attempts,
    # no tool call (the breaker's name is the model's, "simulated:sim-small")
    [row] = compare([broken]).to_dict("records")
    assert row["llm_calls"] == 1
    assert row["tool_calls"] == 0
    assert row["retries"] == 2
