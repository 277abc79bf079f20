"""The post-mortem charts: right traces and data for small frames, "no data" when empty."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import pytest

from taskorch_nb import plots

T0 = pd.Timestamp("2026-01-01T00:00:00", tz="UTC")


def at(seconds: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(seconds=seconds)


def spans_frame() -> pd.DataFrame:
    rows = [
        # span_id, parent_id, name, kind, start, end, status, agent, model, cost
        ("s1", None, "run", "run", 0.0, 10.0, "ok", None, None, 0.0),
        ("s2", "s1", "researcher", "agent", 0.5, 4.0, "ok", "researcher", None, 0.0),
        ("s3", "s2", "sim-small", "generation", 1.0, 2.0, "ok", "researcher", "sim-small", 0.002),
        ("s4", "s2", "search_api", "tool", 2.0, 2.5, "error", "researcher", None, 0.0),
        ("s5", "s2", "cached_search", "tool", 2.5, 2.6, "ok", "researcher", None, 0.0),
        ("s6", "s1", "builder", "agent", 4.0, None, "ok", "builder", None, 0.0),
    ]
    df = pd.DataFrame(
        rows,
        columns=[
            "span_id",
            "parent_id",
            "name",
            "kind",
            "start",
            "end",
            "status",
            "agent",
            "model",
            "cost",
        ],
    )
    df["trace_id"] = "t1"
    df["start"] = df["start"].map(at)
    df["end"] = df["end"].map(lambda s: at(s) if pd.notna(s) else pd.NaT)
    df["duration_s"] = (df["end"] - df["start"]).dt.total_seconds()
    return df


def cost_frame() -> pd.DataFrame:
    rows = [
        (1.0, "researcher", "sim-small", 0.50),
        (2.0, "architect", "sim-large", 1.25),
        (3.0, "builder", "sim-small", 2.00),
        (4.0, "builder", "sim-small", 0.75),
    ]
    df = pd.DataFrame(rows, columns=["time", "agent", "model", "cost"])
    df["time"] = df["time"].map(at)
    df["run_id"], df["phase"], df["provider"] = "r1", "build", "simulated"
    df["cumulative_cost"] = df["cost"].cumsum()
    df["limit"] = 5.0
    return df


def circuit_events_frame() -> pd.DataFrame:
    rows = [
        # seq, t, type, kind, name, state, previous, failures
        (1, 0.0, "run.started", "RunEvent", None, None, None, None),
        (2, 5.0, "circuit.opened", "CircuitEvent", "search_api", "open", "closed", 3),
        (3, 6.0, "circuit.rejected", "CircuitEvent", "search_api", "open", "open", 3),
        (4, 35.0, "circuit.half_opened", "CircuitEvent", "search_api", "half_open", "open", 3),
        (5, 36.0, "circuit.closed", "CircuitEvent", "search_api", "closed", "half_open", 0),
        (6, 40.0, "circuit.opened", "CircuitEvent", "llm", "open", "closed", 3),
        (7, 50.0, "run.completed", "RunEvent", None, None, None, None),
    ]
    df = pd.DataFrame(
        rows, columns=["seq", "ts", "type", "kind", "name", "state", "previous", "failures"]
    )
    df["time"] = df["ts"].map(at)
    df["run_id"] = "r1"
    return df


class FakeRun:
    """Anything with the Run's frame methods will do."""

    def events_df(self) -> pd.DataFrame:
        return circuit_events_frame()

    def spans_df(self) -> pd.DataFrame:
        return spans_frame()

    def cost_df(self) -> pd.DataFrame:
        return cost_frame()


def test_timeline_one_bar_trace_per_kind_with_base_at_start() -> None:
    fig = plots.timeline(spans_frame())
    assert isinstance(fig, go.Figure)
    by_kind = {t.name: t for t in fig.data}
    assert set(by_kind) == {"run", "agent", "generation", "tool"}
    tools = by_kind["tool"]
    assert tools.orientation == "h"
    assert list(tools.y) == ["tool · search_api", "tool · cached_search"]
    assert list(tools.x) == pytest.approx([500.0, 100.0])  # milliseconds on a date axis
    assert pd.Timestamp(tools.base[0]) == at(2.0)
    assert tools.marker.line.color[0] == "#c62828"  # the failed span is outlined in red
    # the open span (no end) runs to the last known time
    agents = by_kind["agent"]
    assert list(agents.y) == ["agent · researcher", "agent · builder"]
    assert agents.x[1] == pytest.approx(6000.0)


def test_cost_breakdown_by_agent_and_model() -> None:
    fig = plots.cost_breakdown(cost_frame(), by="agent")
    (bar,) = fig.data
    assert list(bar.x) == ["builder", "architect", "researcher"]
    assert list(bar.y) == pytest.approx([2.75, 1.25, 0.50])
    fig = plots.cost_breakdown(cost_frame(), by="model")
    assert dict(zip(fig.data[0].x, fig.data[0].y, strict=True)) == pytest.approx(
        {"sim-small": 3.25, "sim-large": 1.25}
    )
    with pytest.raises(ValueError, match="by must be one of"):
        plots.cost_breakdown(cost_frame(), by="colour")


def test_budget_burn_has_limit_and_warning_lines() -> None:
    fig = plots.budget_burn(cost_frame(), warn_below=0.20)
    spent, limit, warning = fig.data
    assert spent.name == "spent"
    assert list(spent.y) == pytest.approx([0.0, 0.5, 1.75, 3.75, 4.5])
    assert spent.line.shape == "hv"
    assert list(limit.y) == [5.0, 5.0]  # taken from the frame's limit column
    assert list(warning.y) == pytest.approx([4.0, 4.0])


def test_budget_burn_explicit_limit_and_no_cumulative_column() -> None:
    df = cost_frame().drop(columns=["cumulative_cost", "limit"])
    fig = plots.budget_burn(df, limit=10.0, warn_below=0.5)
    assert list(fig.data[0].y) == pytest.approx([0.0, 0.5, 1.75, 3.75, 4.5])
    assert list(fig.data[2].y) == pytest.approx([5.0, 5.0])
    no_limit = plots.budget_burn(df)
    assert [t.name for t in no_limit.data] == ["spent"]


def test_circuit_timeline_segments_per_state() -> None:
    fig = plots.circuit_timeline(circuit_events_frame())
    by_state = {t.name: t for t in fig.data}
    assert set(by_state) == {"CLOSED", "OPEN", "HALF_OPEN"}
    opened = by_state["OPEN"]
    # search_api open 5 s -> 35 s (the rejection is not a transition); llm open 40 s -> end
    assert list(opened.y) == ["search_api", "llm"]
    assert list(opened.x) == pytest.approx([30_000.0, 10_000.0])
    half = by_state["HALF_OPEN"]
    assert list(half.y) == ["search_api"]
    assert list(half.x) == pytest.approx([1_000.0])
    closed = by_state["CLOSED"]
    # search_api: 0-5 s and 36-50 s; llm: 0-40 s
    assert sorted(closed.x) == pytest.approx([5_000.0, 14_000.0, 40_000.0])


def test_span_tree_links_children_to_parents() -> None:
    for chart in ("icicle", "sunburst"):
        fig = plots.span_tree(spans_frame(), chart=chart)
        (tree,) = fig.data
        assert tree.type == chart
        parents = dict(zip(tree.ids, tree.parents, strict=True))
        assert parents == {"s1": "", "s2": "s1", "s3": "s2", "s4": "s2", "s5": "s2", "s6": "s1"}
        assert tree.values[list(tree.ids).index("s3")] == pytest.approx(1.0)
    orphan = spans_frame().iloc[2:]  # parents missing: the spans become roots
    assert set(plots.span_tree(orphan).data[0].parents) == {""}


def test_patterns_bars_sorted_by_occurrences() -> None:
    df = pd.DataFrame(
        {
            "name": ["llm_rate_limit", "search_api_timeout"],
            "signature": ["a", "b"],
            "tool": ["llm", "search_api"],
            "category": ["rate_limit", "timeout"],
            "occurrences": [2, 5],
            "fallback": [None, "cached_search"],
            "applied": [0, 3],
            "recovered": [0, 3],
            "source": ["local", "hub"],
        }
    )
    fig = plots.patterns(df)
    assert [t.name for t in fig.data] == ["occurrences", "applied", "recovered"]
    assert list(fig.data[0].x) == ["search_api_timeout", "llm_rate_limit"]
    assert list(fig.data[0].y) == [5, 2]
    assert list(fig.data[2].y) == [3, 0]


def test_run_objects_are_accepted() -> None:
    run = FakeRun()
    assert len(plots.timeline(run).data) == 4
    assert len(plots.cost_breakdown(run).data[0].x) == 3
    assert len(plots.budget_burn(run).data) == 3
    assert len(plots.circuit_timeline(run).data) == 3
    assert len(plots.span_tree(run).data[0].ids) == 6
    with pytest.raises(TypeError, match="patterns_df"):
        plots.patterns(run)


@pytest.mark.parametrize(
    "chart",
    [
        plots.timeline,
        plots.cost_breakdown,
        plots.budget_burn,
        plots.circuit_timeline,
        plots.span_tree,
        plots.patterns,
    ],
)
def test_empty_input_gives_a_no_data_figure(chart) -> None:
    for empty in (pd.DataFrame(), None):
        fig = chart(empty)
        assert isinstance(fig, go.Figure)
        assert fig.data == ()
        assert fig.layout.annotations[0].text == "no data"


def test_events_without_circuit_rows_is_no_data() -> None:
    df = circuit_events_frame()
    fig = plots.circuit_timeline(df[df["kind"] == "RunEvent"])
    assert fig.layout.annotations[0].text == "no data"


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match="cost"):
        plots.cost_breakdown(pd.DataFrame({"agent": ["a"]}))


def test_charts_from_the_real_frames_of_a_run() -> None:
    """Events through the bus, spans and frames as the tracing layer builds them, then charts."""
    from decimal import Decimal

    from taskorch_nb.core.events import (
        BudgetEvent,
        CircuitEvent,
        EventBus,
        LLMEvent,
        RunEvent,
        ToolEvent,
        scope,
    )
    from taskorch_nb.testing import FakeClock
    from taskorch_nb.tracing import frames
    from taskorch_nb.tracing.spans import build_spans

    clock = FakeClock()
    bus = EventBus(clock)
    events: list = []
    bus.subscribe(events.append)
    with scope(run_id="r1"):
        bus.emit(RunEvent(type="run.started", task="demo", workflow="full"))
        bus.emit(
            BudgetEvent(
                type="budget.approved",
                amount=Decimal("0.1"),
                spent=Decimal(0),
                reserved=Decimal("0.1"),
                limit=Decimal(5),
                remaining=Decimal("4.9"),
            )
        )
        for name, agent in (("research", "researcher"), ("build", "builder")):
            bus.emit(RunEvent(type="phase.started", phase=name))
            bus.emit(RunEvent(type="agent.started", agent=agent, phase=name))
            llm = {
                "call_id": name,
                "provider": "simulated",
                "model": "sim-small",
                "agent": agent,
                "phase": name,
            }
            bus.emit(LLMEvent(type="llm.requested", **llm))
            clock.advance(1.0)
            bus.emit(
                LLMEvent(
                    type="llm.completed",
                    cost=Decimal("0.01"),
                    input_tokens=10,
                    output_tokens=5,
                    latency=1.0,
                    **llm,
                )
            )
            bus.emit(ToolEvent(type="tool.called", tool="search_api", call_id=f"t-{name}"))
            clock.advance(0.5)
            bus.emit(
                ToolEvent(
                    type="tool.failed",
                    tool="search_api",
                    call_id=f"t-{name}",
                    category="timeout",
                    status=504,
                )
            )
            bus.emit(RunEvent(type="agent.completed", agent=agent, phase=name))
            bus.emit(RunEvent(type="phase.completed", phase=name))
        bus.emit(
            CircuitEvent(
                type="circuit.opened",
                name="search_api",
                state="open",
                previous="closed",
                failures=3,
                reset_at=clock.now() + 30,
            )
        )
        clock.advance(30.0)
        bus.emit(
            CircuitEvent(
                type="circuit.half_opened",
                name="search_api",
                state="half_open",
                previous="open",
                failures=3,
            )
        )
        bus.emit(RunEvent(type="run.completed", status="completed"))
    spans_df = frames.spans_df(build_spans(events)[0])
    cost_df = frames.cost_df(events)

    kinds = {t.name for t in plots.timeline(spans_df).data}
    assert {"agent", "generation", "tool"} <= kinds
    (bar,) = plots.cost_breakdown(cost_df).data
    assert sorted(bar.x) == ["builder", "researcher"]
    burn = plots.budget_burn(cost_df)
    assert list(burn.data[0].y) == pytest.approx([0.0, 0.01, 0.02])
    assert list(burn.data[1].y) == [5.0, 5.0]
    states = [t.name for t in plots.circuit_timeline(frames.events_df(events)).data]
    assert states == ["CLOSED", "HALF_OPEN", "OPEN"]
    tree = plots.span_tree(spans_df).data[0]
    assert list(tree.parents).count("") == 1  # one trace, one root


@pytest.mark.parametrize("chart", [
    lambda: plots.timeline(spans_frame()), lambda: plots.span_tree(spans_frame()),
    lambda: plots.cost_breakdown(cost_frame()), lambda: plots.budget_burn(cost_frame()),
    lambda: plots.circuit_timeline(circuit_events_frame()), lambda: plots.patterns(None),
])
def test_every_chart_is_exportable(chart) -> None:
    from taskorch_nb.chart import Chart

    assert isinstance(chart(), Chart)  # its display carries an HTML drawing for nbconvert


# -- charts that explain (issue 16, section 3) ----------------------------------------


def instant_spans() -> pd.DataFrame:
    """A run of 10 s with a tool call and a QC phase that took no time at all."""
    df = spans_frame()
    extra = pd.DataFrame({"span_id": ["s7", "s8"], "parent_id": ["s1", "s2"],
                          "name": ["qc", "write_file"], "kind": ["phase", "tool"],
                          "start": [at(9.0), at(3.0)], "end": [at(9.0), at(3.0)],
                          "status": ["ok", "ok"], "agent": [None, "researcher"],
                          "model": [None, None], "cost": [0.0, 0.0], "trace_id": "t1",
                          "duration_s": [0.0, 0.0]})
    return pd.concat([df, extra], ignore_index=True)


def test_zero_length_spans_get_a_visible_minimum_mark_in_the_timeline() -> None:
    fig = plots.timeline(instant_spans())
    bars = {(lane, t.name): (x, hover) for t in fig.data
            for lane, x, hover in zip(t.y, t.x, t.customdata, strict=True)}
    total_ms = 10_000.0
    for lane, kind in (("tool · write_file", "tool"), ("phase · qc", "phase")):
        x, hover = bars[(lane, kind)]
        assert x >= 0.003 * total_ms  # a mark a reader sees, not a zero-width bar
        assert hover[3] == 0.0  # the hover still says how long it really took


def test_zero_length_spans_are_in_the_span_tree() -> None:
    (tree,) = plots.span_tree(instant_spans()).data
    values = dict(zip(tree.ids, tree.values, strict=True))
    assert values["s7"] > 0
    assert values["s8"] > 0
    assert values["s7"] <= 0.05 * values["s1"]  # a mark, not a claim that it took long


def test_span_tree_labels_contrast_with_their_boxes() -> None:
    (tree,) = plots.span_tree(spans_frame()).data
    colours = dict(zip(tree.ids, tree.marker.colors, strict=True))
    fonts = dict(zip(tree.ids, tree.insidetextfont.color, strict=True))
    assert colours["s1"] == plots.KIND_COLOURS["run"]
    assert fonts["s1"] == "#ffffff"  # the root: light text on its dark box
    assert tree.outsidetextfont.color[0] == "#ffffff"  # where an icicle writes the root
    light = plots.span_tree(spans_frame().assign(kind="score")).data[0]
    assert set(light.insidetextfont.color) == {"#212121"}  # dark text on a light box
    layout = plots.span_tree(spans_frame()).layout
    assert layout.uniformtext.minsize >= 10  # a label too small to read is hidden, not shrunk
    assert layout.uniformtext.mode == "hide"


def test_circuit_legend_fits_and_states_are_written_in_the_bars() -> None:
    events = circuit_events_frame()
    one = events[(events["name"] != "llm") | events["name"].isna()]
    fig = plots.circuit_timeline(one)
    assert fig.layout.legend.orientation == "h"  # above the plot: never clipped
    assert fig.layout.height >= 260
    for trace in fig.data:
        assert set(trace.text) == {trace.name}
        assert trace.textposition == "inside"


def test_a_breaker_that_opens_at_the_last_event_shows_red() -> None:
    events = circuit_events_frame()
    last = events[events["type"] == "run.completed"].index[0]
    events = events.drop(index=last)  # the llm breaker's opening is now the last event
    fig = plots.circuit_timeline(events)
    opened = next(t for t in fig.data if t.name == "OPEN")
    widths = dict(zip(opened.y, opened.x, strict=True))
    assert widths["llm"] >= 0.01 * 40_000  # visible, on a 40 s axis
    assert fig.layout.xaxis.range is not None
    assert pd.Timestamp(fig.layout.xaxis.range[1]) >= at(40.0) + pd.Timedelta(
        milliseconds=widths["llm"])


def test_budget_lines_span_the_chart_and_are_labelled_even_for_one_instant() -> None:
    df = cost_frame().assign(time=at(1.0))  # every call at the same time
    fig = plots.budget_burn(df, warn_below=0.20)
    _, limit, warning = fig.data
    assert pd.Timestamp(limit.x[1]) > pd.Timestamp(limit.x[0])
    assert pd.Timestamp(warning.x[1]) > pd.Timestamp(warning.x[0])
    labels = [a.text for a in fig.layout.annotations]
    assert "limit $5.00" in labels
    assert "warning: 20% left ($4.00)" in labels
    assert fig.layout.yaxis.range[1] >= 5.0


def test_costs_a_hundred_times_apart_get_a_log_axis() -> None:
    df = cost_frame()
    df.loc[0, "cost"] = 0.002  # researcher: $0.002 beside the builder's $2.75
    fig = plots.cost_breakdown(df, by="agent")
    assert fig.layout.yaxis.type == "log"
    assert list(fig.data[0].text) == ["$2.75", "$1.25", "$0.002"]
    assert plots.cost_breakdown(cost_frame()).layout.yaxis.type in (None, "linear")


def test_pattern_counts_have_integer_ticks() -> None:
    df = pd.DataFrame({"name": ["a"], "occurrences": [1], "applied": [1], "recovered": [0]})
    axis = plots.patterns(df).layout.yaxis
    assert axis.tickformat == "d"
    assert axis.dtick == 1


def test_span_tree_parents_hold_their_children_so_deep_boxes_are_wide() -> None:
    (tree,) = plots.span_tree(instant_spans()).data
    assert tree.branchvalues == "total"
    size = dict(zip(tree.ids, tree.values, strict=True))
    children: dict[str, float] = {}
    for node, parent in zip(tree.ids, tree.parents, strict=True):
        if parent:
            children[parent] = children.get(parent, 0.0) + size[node]
    assert all(size[parent] >= total - 1e-9 for parent, total in children.items())
    # the hover still says how long the span itself took
    durations = {node: data[1] for node, data in zip(tree.ids, tree.customdata, strict=True)}
    assert durations["s2"] == pytest.approx(3.5)


def test_span_tree_title_names_the_one_root() -> None:
    assert plots.span_tree(spans_frame()).layout.title.text == "Span tree: run"
    orphans = spans_frame().iloc[2:]  # several roots: no single name to give
    assert plots.span_tree(orphans).layout.title.text == "Span tree"


def test_times_with_nanoseconds_become_json_without_a_warning() -> None:
    """Plotly turns times into Python datetimes, which have no nanoseconds: pandas warns
    for each one dropped (an error under this suite's filterwarnings)."""
    import plotly.io as pio

    df = cost_frame().assign(time=lambda d: d["time"] + pd.Timedelta(nanoseconds=7))
    for fig in (plots.budget_burn(df, limit=10.0), plots.budget_burn(df.iloc[:1], limit=10.0)):
        assert '"spent"' in pio.to_json(fig)
