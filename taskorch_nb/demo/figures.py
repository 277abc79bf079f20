"""The charts of the demo's HTML report, one list per flow (front-end layer: plotly)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from taskorch_nb import plots
from taskorch_nb.chart import Chart
from taskorch_nb.core.money import format_usd
from taskorch_nb.demo.flows import FlowResult
from taskorch_nb.plotkit import spread_axis
from taskorch_nb.tracing.frames import events_df


def _bar(values: dict[str, float | int], title: str, axis: str) -> go.Figure:
    """Two bars, labelled with their values; a log axis when they differ 100 times."""
    label = format_usd if axis == "USD" else str
    figure = Chart(go.Bar(x=list(values), y=list(values.values()),
                          text=[label(v) for v in values.values()], textposition="auto",
                          marker_color=["#c62828", "#2e7d32"][: len(values)]))
    figure.update_layout(title=title, yaxis={"title": axis, **spread_axis(
        list(values.values()))}, height=360)
    return figure


def figures_for(result: FlowResult) -> list[Any]:
    """The figures that tell this flow's story."""
    number = result.number
    if number == 1:
        return [plots.circuit_timeline(events_df(result.events))]
    if number == 2:
        from taskorch_nb.tracing.frames import cost_df

        return [plots.budget_burn(cost_df(result.events), limit=5.0)]
    if number == 3 and result.runs:
        run = result.runs[0]
        return [plots.timeline(run), plots.cost_breakdown(run, by="agent"),
                plots.budget_burn(run, limit=float(run.cost.limit))]
    if number == 4:
        return [_bar(result.data["calls"], "Calls to the failing tool", "calls"),
                plots.patterns(result.data["patterns"])]
    if number == 5 and result.runs:
        return [plots.span_tree(result.runs[0])]
    if number == 6 and result.runs:
        return [plots.timeline(result.runs[0])]
    if number == 7:
        return [_bar(result.data["costs"], "The same outage: what it cost", "USD")]
    return []
