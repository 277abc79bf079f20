"""Post-mortem charts: each function takes a DataFrame (or a `Run`) and returns a `go.Figure`.

Static `plotly.graph_objects.Figure`s, never `FigureWidget`s: they render in
every notebook front end and in an offline HTML report without anywidget or a
CDN. The inputs are the frames of `taskorch_nb.tracing.frames` (columns as
documented there); a `Run` (anything with `events_df()`, `spans_df()`,
`cost_df()`) or the immune system (`patterns_df()`) is accepted in their place.
An empty input gives a figure that says "no data" instead of an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from taskorch_nb.chart import Chart
from taskorch_nb.core.money import format_usd

__all__ = [
    "budget_burn",
    "circuit_timeline",
    "cost_breakdown",
    "patterns",
    "span_tree",
    "timeline",
]

#: Colours by span kind and breaker state, shared by the charts.
KIND_COLOURS = {
    "trace": "#455a64",
    "run": "#455a64",
    "workflow": "#455a64",
    "phase": "#78909c",
    "agent": "#1565c0",
    "generation": "#8e24aa",
    "llm": "#8e24aa",
    "tool": "#00897b",
    "fallback": "#ef6c00",
    "qc": "#6d4c41",
    "evaluator": "#6d4c41",
    "score": "#9e9d24",
}
_CYCLE = ("#5c6bc0", "#26a69a", "#d4e157", "#ab47bc", "#ffa726", "#8d6e63", "#29b6f6")
STATE_COLOURS = {"CLOSED": "#2e7d32", "HALF_OPEN": "#ef6c00", "OPEN": "#c62828"}
_ERROR_STATUSES = {"error", "failed", "ERROR", "FAILED"}


def _frame(data: Any, method: str, required: Sequence[str]) -> pd.DataFrame:
    """The DataFrame itself, or `data.<method>()` for a Run-like object."""
    if data is None:
        return pd.DataFrame(columns=list(required))
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        make = getattr(data, method, None)
        if not callable(make):
            raise TypeError(
                f"expected a pandas DataFrame or an object with {method}(), "
                f"got {type(data).__name__}"
            )
        frame = make()
    missing = [c for c in required if c not in frame.columns]
    if missing and not frame.empty:
        raise ValueError(f"the frame lacks the column(s) {', '.join(missing)}")
    return frame


def _no_data(title: str) -> go.Figure:
    fig = Chart()
    fig.add_annotation(
        text="no data",
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font={"size": 16, "color": "#888"},
    )
    fig.update_layout(title=title, template="plotly_white")
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def _colour(palette: dict[str, str], key: str, seen: dict[str, str]) -> str:
    if key in palette:
        return palette[key]
    return seen.setdefault(key, _CYCLE[len(seen) % len(_CYCLE)])


def _ms(delta: pd.Series) -> list[float]:
    """Timedeltas as milliseconds: the bar length a date axis expects."""
    return (delta.dt.total_seconds() * 1000.0).tolist()


def _text(value: Any) -> str:
    """A cell as a label: missing values (None, NaN, NA, NaT) become ""."""
    if value is None:
        return ""
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or dict cell: not a scalar, so present
        missing = False
    return "" if missing else str(value)


def _lane(row: dict[str, Any]) -> str:
    """The row a span is drawn in: one per phase, agent, agent's model calls and tool."""
    kind, name = _text(row.get("kind")), _text(row.get("name"))
    if kind == "generation":
        return f"llm · {_text(row.get('agent')) or name}"
    if kind in ("phase", "agent", "tool"):
        return f"{kind} · {name}"
    return name


def timeline(spans: Any) -> go.Figure:
    """Gantt chart of the spans: a lane per phase, agent, agent's LLM calls and tool; bars
    from start to end, coloured by kind."""
    title = "Timeline"
    df = _frame(spans, "spans_df", ("name", "kind", "start", "end"))
    df = df.dropna(subset=["start"]) if not df.empty else df
    if df.empty:
        return _no_data(title)
    df = df.sort_values("start", kind="stable")
    end = df["end"].fillna(df[["start", "end"]].max().max())  # open spans run to the last time
    df = df.assign(end=end, length=_ms(end - df["start"]))
    df = df.assign(lane=[_lane(r) for r in df.to_dict("records")])
    fig = Chart()
    extra: dict[str, str] = {}
    for kind, part in df.groupby(df["kind"].map(_text), sort=False):
        errors = part["status"].isin(_ERROR_STATUSES) if "status" in part else None
        fig.add_trace(
            go.Bar(
                name=kind or "span",
                y=part["lane"].tolist(),
                base=part["start"].tolist(),
                x=part["length"].tolist(),
                orientation="h",
                marker={
                    "color": _colour(KIND_COLOURS, kind, extra),
                    "line": {
                        "color": ["#c62828" if e else "rgba(0,0,0,0)" for e in errors]
                        if errors is not None
                        else "rgba(0,0,0,0)",
                        "width": 2,
                    },
                },
                customdata=[
                    [
                        _text(r.get("agent")),
                        _text(r.get("model")),
                        _text(r.get("status")),
                        r["length"] / 1000.0,
                    ]
                    for r in part.to_dict("records")
                ],
                hovertemplate="%{y}<br>%{customdata[3]:.3f} s<br>agent %{customdata[0]} "
                "model %{customdata[1]}<br>%{customdata[2]}<extra>" + (kind or "span") + "</extra>",
            )
        )
    rows = df["lane"].drop_duplicates().tolist()
    fig.update_layout(
        title=title,
        template="plotly_white",
        barmode="overlay",
        height=max(260, 60 + 22 * len(rows)),
        yaxis={"categoryorder": "array", "categoryarray": rows, "autorange": "reversed"},
        xaxis={"type": "date", "title": "time"},
        legend_title_text="kind",
    )
    return fig


_GROUPS = ("agent", "model", "phase", "provider")


def cost_breakdown(costs: Any, by: str = "agent") -> go.Figure:
    """Total cost per agent (or model, phase, provider), largest first."""
    if by not in _GROUPS:
        raise ValueError(f"by must be one of {', '.join(_GROUPS)}; got {by!r}")
    title = f"Cost by {by}"
    df = _frame(costs, "cost_df", (by, "cost"))
    if df.empty:
        return _no_data(title)
    keys = df[by].map(lambda v: _text(v) or "(none)")
    grouped = (
        df.assign(_key=keys, cost=df["cost"].astype("float64"))
        .groupby("_key", sort=False)
        .agg(cost=("cost", "sum"), calls=("cost", "size"))
        .sort_values("cost", ascending=False, kind="stable")
    )
    fig = Chart(
        go.Bar(
            name="cost",
            x=grouped.index.tolist(),
            y=grouped["cost"].tolist(),
            text=[format_usd(v) for v in grouped["cost"]],
            textposition="auto",
            customdata=grouped["calls"].tolist(),
            hovertemplate="%{x}<br>%{text} over %{customdata} calls<extra></extra>",
            marker_color="#1565c0",
        )
    )
    fig.update_layout(
        title=title, template="plotly_white", xaxis_title=by, yaxis_title="cost (USD)"
    )
    return fig


def budget_burn(costs: Any, limit: float | None = None, warn_below: float = 0.20) -> go.Figure:
    """Cumulative spend over time against the limit and the warning line at (1-warn_below)*limit."""
    title = "Budget burn"
    df = _frame(costs, "cost_df", ("time", "cost"))
    if df.empty:
        return _no_data(title)
    df = df.sort_values("time", kind="stable")
    if "cumulative_cost" in df and df["cumulative_cost"].notna().all():
        spent = df["cumulative_cost"].astype("float64")
    else:
        spent = df["cost"].astype("float64").fillna(0.0).cumsum()
    if limit is None and "limit" in df and df["limit"].notna().any():
        limit = float(df["limit"].dropna().iloc[-1])
    times = df["time"].tolist()
    fig = Chart(
        go.Scatter(
            name="spent",
            x=[times[0], *times],  # the burn starts from zero at the first call
            y=[0.0, *spent.tolist()],
            customdata=[format_usd(0), *map(format_usd, spent.tolist())],
            mode="lines+markers",
            line={"shape": "hv", "color": "#1565c0"},
            hovertemplate="%{x}<br>%{customdata}<extra>spent</extra>",
        )
    )
    if limit is not None:
        span = [times[0], times[-1]]
        fig.add_trace(
            go.Scatter(
                name="limit",
                x=span,
                y=[float(limit)] * 2,
                mode="lines",
                line={"color": "#c62828", "dash": "dash"},
            )
        )
        fig.add_trace(
            go.Scatter(
                name=f"warning ({warn_below:.0%} left)",
                x=span,
                y=[float(limit) * (1.0 - warn_below)] * 2,
                mode="lines",
                line={"color": "#ef6c00", "dash": "dot"},
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="time",
        yaxis_title="USD",
        yaxis_rangemode="tozero",
    )
    return fig


def _state(value: Any) -> str:
    name = getattr(value, "name", None) or _text(value)
    return name.upper().replace("-", "_")


def circuit_timeline(events: Any) -> go.Figure:
    """Each breaker's state over time: a row per breaker, segments coloured by state."""
    title = "Circuit breakers"
    df = _frame(events, "events_df", ("time", "type"))
    if df.empty:
        return _no_data(title)
    # the run's whole span: before its first transition a breaker was in its previous state
    start_time, end_time = df["time"].min(), df["time"].max()
    is_circuit = df["type"].astype("string").str.startswith("circuit.").fillna(False)
    df = df[is_circuit.to_numpy(dtype=bool)]
    if df.empty:
        return _no_data(title)
    segments: list[tuple[str, str, Any, Any]] = []  # (breaker, state, start, end)
    for name, rows in df.sort_values(["time", "seq"], kind="stable").groupby("name", sort=False):
        first = rows.iloc[0]
        state = _state(first["previous"]) if _text(first.get("previous")) else "CLOSED"
        since = start_time
        for row in rows.itertuples(index=False):
            new = _state(row.state)
            if new == state:
                continue  # circuit.rejected and repeats: no transition
            segments.append((str(name), state, since, row.time))
            state, since = new, row.time
        segments.append((str(name), state, since, end_time))
    seg = pd.DataFrame(segments, columns=["name", "state", "start", "end"])
    fig = Chart()
    extra: dict[str, str] = {}
    for state in [s for s in STATE_COLOURS if s in set(seg["state"])] + sorted(
        set(seg["state"]) - set(STATE_COLOURS)
    ):
        part = seg[seg["state"] == state]
        fig.add_trace(
            go.Bar(
                name=state,
                y=part["name"].tolist(),
                base=part["start"].tolist(),
                x=_ms(part["end"] - part["start"]),
                orientation="h",
                marker_color=_colour(STATE_COLOURS, state, extra),
                hovertemplate="%{y}: " + state + "<br>from %{base}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        barmode="overlay",
        xaxis={"type": "date", "title": "time"},
        legend_title_text="state",
        height=max(220, 120 + 40 * seg["name"].nunique()),
    )
    return fig


def span_tree(spans: Any, *, chart: str = "icicle", value: str = "duration_s") -> go.Figure:
    """The spans as a tree (run > agents > calls), as an icicle or a sunburst sized by `value`."""
    if chart not in ("icicle", "sunburst"):
        raise ValueError(f"chart must be 'icicle' or 'sunburst'; got {chart!r}")
    title = "Span tree"
    df = _frame(spans, "spans_df", ("span_id", "parent_id", "name", value))
    if df.empty:
        return _no_data(title)
    ids = df["span_id"].map(_text)
    known = set(ids)
    # a parent outside the frame (partial data) makes its child a root, not an invisible orphan
    parents = df["parent_id"].map(lambda p: _text(p) if _text(p) in known else "")
    kinds = df["kind"].map(_text) if "kind" in df else pd.Series([""] * len(df))
    extra: dict[str, str] = {}
    trace = go.Icicle if chart == "icicle" else go.Sunburst
    fig = Chart(
        trace(
            ids=ids.tolist(),
            parents=parents.tolist(),
            labels=df["name"].map(_text).tolist(),
            values=df[value].astype("float64").fillna(0.0).clip(lower=0.0).tolist(),
            branchvalues="remainder",
            marker={"colors": [_colour(KIND_COLOURS, k, extra) for k in kinds]},
            customdata=kinds.tolist(),
            hovertemplate="%{label}<br>%{customdata}<br>" + value + " %{value}<extra></extra>",
        )
    )
    fig.update_layout(title=title, template="plotly_white", margin={"t": 50, "l": 10, "r": 10})
    return fig


def patterns(patterns_df: Any) -> go.Figure:
    """Failure patterns: occurrences, and how often their strategy was applied and recovered."""
    title = "Failure patterns"
    df = _frame(patterns_df, "patterns_df", ("name", "occurrences", "applied", "recovered"))
    if df.empty:
        return _no_data(title)
    df = df.sort_values("occurrences", ascending=False, kind="stable")
    names = df["name"].map(_text).tolist()
    hover = [
        [
            _text(r.get("tool")),
            _text(r.get("category")),
            _text(r.get("fallback")),
            _text(r.get("source")),
        ]
        for r in df.to_dict("records")
    ]
    fig = Chart()
    for column, colour in (
        ("occurrences", "#78909c"),
        ("applied", "#1565c0"),
        ("recovered", "#2e7d32"),
    ):
        fig.add_trace(
            go.Bar(
                name=column,
                x=names,
                y=df[column].fillna(0).astype("int64").tolist(),
                marker_color=colour,
                customdata=hover,
                hovertemplate="%{x}<br>" + column + " %{y}<br>tool %{customdata[0]} "
                "(%{customdata[1]})<br>fallback %{customdata[2]}, %{customdata[3]}<extra></extra>",
            )
        )
    fig.update_layout(title=title, template="plotly_white", barmode="group", yaxis_title="count")
    return fig
