"""The demo report's charts: which figures each flow gets, drawn from what the flow measured."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest

from taskorch_nb.demo.figures import figures_for
from taskorch_nb.demo.flows import FlowResult, flow2_budget, flow4_federation


async def test_the_federation_flow_draws_its_calls_and_patterns(tmp_path: Path) -> None:
    result = await flow4_federation(tmp_path, hub=False)
    calls, patterns = figures_for(result)
    assert isinstance(calls, go.Figure)
    assert isinstance(patterns, go.Figure)
    bar = calls.data[0]
    assert list(bar.x) == ["A (learned)", "B (federated)"]
    assert list(bar.y) == [3, 1]
    assert list(bar.marker.color) == ["#c62828", "#2e7d32"]
    assert calls.layout.title.text == "Calls to the failing tool"


async def test_the_budget_flow_draws_its_burn_against_the_limit(tmp_path: Path) -> None:
    [burn] = figures_for(await flow2_budget(tmp_path))
    assert isinstance(burn, go.Figure)
    assert len(burn.data) >= 1


def test_the_before_after_flow_draws_both_bills() -> None:
    result = FlowResult(7, "before/after", True, data={"costs": {"naive": 4.2, "taskorch": 0.3}})
    [figure] = figures_for(result)
    assert list(figure.data[0].y) == [4.2, 0.3]
    assert figure.layout.yaxis.title.text == "USD"


@pytest.mark.parametrize("number", [3, 5, 6, 8])
def test_a_flow_without_runs_or_an_unknown_one_gets_no_figure(number: int) -> None:
    assert figures_for(FlowResult(number, "t", False)) == []


def test_bills_a_hundred_times_apart_get_a_log_axis_and_value_labels() -> None:
    result = FlowResult(7, "before/after", True,
                        data={"costs": {"naive (50 retries)": 26.45, "taskorch": 0.17}})
    [figure] = figures_for(result)
    assert figure.layout.yaxis.type == "log"  # the $0.17 bar is not a hairline
    assert list(figure.data[0].text) == ["$26.45", "$0.17"]


def test_close_values_keep_a_linear_axis_and_counts_are_labelled_as_counts() -> None:
    result = FlowResult(4, "federation", True, data={"calls": {"A": 3, "B": 1}, "patterns": None})
    calls = figures_for(result)[0]
    assert calls.layout.yaxis.type in (None, "linear")
    assert list(calls.data[0].text) == ["3", "1"]
