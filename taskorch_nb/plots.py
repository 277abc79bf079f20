"""Post-mortem charts: each function takes a DataFrame (or a `Run`) and returns a `go.Figure`.

Static `plotly.graph_objects.Figure`s, never `FigureWidget`s: they render in
every notebook front end and in an offline HTML report without anywidget or a
CDN. The inputs are the frames of `taskorch_nb.tracing.frames` (columns as
documented there); a `Run` (anything with `events_df()`, `spans_df()`,
`cost_df()`) or the immune system (`patterns_df()`) is accepted in their place.
An empty input gives a figure that says "no data" instead of an exception.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from taskorch_nb.chart import Chart, exportable
from taskorch_nb.core.money import format_usd
from taskorch_nb.plotkit import (
    ERROR_STATUSES,
    KIND_COLOURS,
    STATE_COLOURS,
    frame_of,
    ink,
    mark_ms,
    no_data,
    pick_colour,
    spread_axis,
    text_of,
    to_ms,
)

__all__ = [
    "budget_burn",
    "circuit_timeline",
    "cost_breakdown",
    "exportable",
    "patterns",
    "span_tree",
    "timeline",
]

def _lane(row: dict[str, Any]) -> str:
    """The row a span is drawn in: one per phase, agent, agent's model calls and tool."""
    kind, name = text_of(row.get("kind")), text_of(row.get("name"))
    if kind == "generation":
        return f"llm · {text_of(row.get('agent')) or name}"
    if kind in ("phase", "agent", "tool"):
        return f"{kind} · {name}"
    return name


def timeline(spans: Any) -> go.Figure:
    """Gantt chart of the spans: a lane per phase, agent, agent's LLM calls and tool; bars
    from start to end, coloured by kind."""
    title = "Timeline"
    df = frame_of(spans, "spans_df", ("name", "kind", "start", "end"))
    df = df.dropna(subset=["start"]) if not df.empty else df
    if df.empty:
        return no_data(title)
    df = df.sort_values("start", kind="stable")
    end = df["end"].fillna(df[["start", "end"]].max().max())  # open spans run to the last time
    df = df.assign(end=end, length=to_ms(end - df["start"]))
    mark = mark_ms(df["start"].min(), end.max())  # a zero-length span still shows
    df = df.assign(lane=[_lane(r) for r in df.to_dict("records")])
    fig = Chart()
    extra: dict[str, str] = {}
    for kind, part in df.groupby(df["kind"].map(text_of), sort=False):
        errors = part["status"].isin(ERROR_STATUSES) if "status" in part else None
        fig.add_trace(
            go.Bar(
                name=kind or "span",
                y=part["lane"].tolist(),
                base=part["start"].tolist(),
                x=part["length"].clip(lower=mark).tolist(),
                orientation="h",
                marker={
                    "color": pick_colour(KIND_COLOURS, kind, extra),
                    "line": {
                        "color": ["#c62828" if e else "rgba(0,0,0,0)" for e in errors]
                        if errors is not None
                        else "rgba(0,0,0,0)",
                        "width": 2,
                    },
                },
                customdata=[
                    [
                        text_of(r.get("agent")),
                        text_of(r.get("model")),
                        text_of(r.get("status")),
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
    df = frame_of(costs, "cost_df", (by, "cost"))
    if df.empty:
        return no_data(title)
    keys = df[by].map(lambda v: text_of(v) or "(none)")
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
        title=title, template="plotly_white", xaxis_title=by,
        yaxis={"title": "cost (USD)", **spread_axis(grouped["cost"].tolist())},
    )
    return fig


def budget_burn(costs: Any, limit: float | None = None, warn_below: float = 0.20) -> go.Figure:
    """Cumulative spend over time against the limit and the warning line at (1-warn_below)*limit."""
    title = "Budget burn"
    df = frame_of(costs, "cost_df", ("time", "cost"))
    if df.empty:
        return no_data(title)
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
    top = float(spent.max())
    if limit is not None:
        # the lines run past the last call, so calls at one instant still show them
        pad = pd.Timedelta(milliseconds=max(mark_ms(times[0], times[-1], 0.04), 500.0))
        pad = pad.floor("us")  # Plotly's datetimes have no nanoseconds
        span = [times[0], times[-1] + pad]
        warning = float(limit) * (1.0 - warn_below)
        for name, level, colour, dash, label in (
            ("limit", float(limit), "#c62828", "dash", f"limit {format_usd(float(limit))}"),
            (f"warning ({warn_below:.0%} left)", warning, "#ef6c00", "dot",
             f"warning: {warn_below:.0%} left ({format_usd(warning)})"),
        ):
            fig.add_trace(go.Scatter(name=name, x=span, y=[level] * 2, mode="lines",
                                     line={"color": colour, "dash": dash}))
            # at the left: the burn climbs to the right, so it never covers the label
            fig.add_annotation(text=label, x=0.0, xref="paper", y=level, yref="y",
                               xanchor="left", yanchor="bottom", showarrow=False,
                               font={"color": colour, "size": 11})
        top = max(top, float(limit))
    fig.update_layout(
        title=title,
        template="plotly_white",
        xaxis_title="time",
        yaxis={"title": "USD", "range": [0.0, top * 1.12 if top > 0 else 1.0]},
    )
    return fig


def _state(value: Any) -> str:
    name = getattr(value, "name", None) or text_of(value)
    return name.upper().replace("-", "_")


def circuit_timeline(events: Any) -> go.Figure:
    """Each breaker's state over time: a row per breaker, segments coloured by state."""
    title = "Circuit breakers"
    df = frame_of(events, "events_df", ("time", "type"))
    if df.empty:
        return no_data(title)
    # the run's whole span: before its first transition a breaker was in its previous state
    start_time, end_time = df["time"].min(), df["time"].max()
    is_circuit = df["type"].astype("string").str.startswith("circuit.").fillna(False)
    df = df[is_circuit.to_numpy(dtype=bool)]
    if df.empty:
        return no_data(title)
    segments: list[tuple[str, str, Any, Any]] = []  # (breaker, state, start, end)
    for name, rows in df.sort_values(["time", "seq"], kind="stable").groupby("name", sort=False):
        first = rows.iloc[0]
        state = _state(first["previous"]) if text_of(first.get("previous")) else "CLOSED"
        since = start_time
        for row in rows.itertuples(index=False):
            new = _state(row.state)
            if new == state:
                continue  # circuit.rejected and repeats: no transition
            segments.append((str(name), state, since, row.time))
            state, since = new, row.time
        segments.append((str(name), state, since, end_time))
    seg = pd.DataFrame(segments, columns=["name", "state", "start", "end"])
    # a breaker that opened at the last event gets a visible red mark, past the end
    mark = mark_ms(start_time, end_time, 0.02)
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
                x=[max(ms, mark) for ms in to_ms(part["end"] - part["start"])],
                orientation="h",
                marker_color=pick_colour(STATE_COLOURS, state, extra),
                text=[state] * len(part),
                textposition="inside",
                insidetextanchor="middle",
                textfont={"color": "#ffffff"},
                hovertemplate="%{y}: " + state + "<br>from %{base}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title,
        template="plotly_white",
        barmode="overlay",
        xaxis={"type": "date", "title": "time",
               "range": [start_time, end_time + pd.Timedelta(milliseconds=mark).floor("us")]},
        legend={"title": {"text": "state"}, "orientation": "h", "x": 0.0, "xanchor": "left",
                "y": 1.02, "yanchor": "bottom"},
        height=max(260, 160 + 40 * seg["name"].nunique()),
    )
    return fig


def span_tree(spans: Any, *, chart: str = "icicle", value: str = "duration_s") -> go.Figure:
    """The spans as a tree (run > agents > calls), as an icicle or a sunburst sized by `value`."""
    if chart not in ("icicle", "sunburst"):
        raise ValueError(f"chart must be 'icicle' or 'sunburst'; got {chart!r}")
    title = "Span tree"
    df = frame_of(spans, "spans_df", ("span_id", "parent_id", "name", value))
    if df.empty:
        return no_data(title)
    ids = df["span_id"].map(text_of)
    known = set(ids)
    # a parent outside the frame (partial data) makes its child a root, not an invisible orphan
    parents = df["parent_id"].map(lambda p: text_of(p) if text_of(p) in known else "")
    kinds = df["kind"].map(text_of) if "kind" in df else pd.Series([""] * len(df))
    extra: dict[str, str] = {}
    colours = [pick_colour(KIND_COLOURS, k, extra) for k in kinds]
    values = df[value].astype("float64").fillna(0.0).clip(lower=0.0)
    # a span that took no time (a tool call, the QC verdict) is a thin box, not nothing
    values = values.clip(lower=float(values.max()) * 0.01 if values.max() > 0 else 1.0)
    sizes = _totals(ids.tolist(), parents.tolist(), values.tolist())
    trace = go.Icicle if chart == "icicle" else go.Sunburst
    fig = Chart(
        trace(
            ids=ids.tolist(),
            parents=parents.tolist(),
            labels=df["name"].map(text_of).tolist(),
            values=sizes,
            branchvalues="total",  # children fill their parent: deep boxes wide enough to read
            marker={"colors": colours},
            insidetextfont={"color": [ink(c) for c in colours]},
            outsidetextfont={"color": [ink(c) for c in colours]},  # the root, top left
            customdata=list(zip(kinds, values, strict=True)),
            hovertemplate="%{label}<br>%{customdata[0]}<br>" + value
            + " %{customdata[1]:.3f}<extra></extra>",
        )
    )
    roots = df["name"][(parents == "").to_numpy()].map(text_of).tolist()
    if len(roots) == 1:  # a long root label may not fit its box (a sunburst's centre)
        title = f"{title}: {roots[0]}"
    fig.update_layout(title=title, template="plotly_white", margin={"t": 50, "l": 10, "r": 10},
                      height=520, uniformtext={"minsize": 10, "mode": "hide"})
    return fig


def _totals(ids: list[str], parents: list[str], values: list[float]) -> list[float]:
    """Each span's size for `branchvalues="total"`: its own value, or its children's sum
    when that is more (spans that overlap, or minimum marks, must not break the tree)."""
    parent_of = dict(zip(ids, parents, strict=True))

    def depth(node: str) -> int:
        seen: set[str] = set()
        while parent_of.get(node) and node not in seen:
            seen.add(node)
            node = parent_of[node]
        return len(seen)

    total = dict(zip(ids, values, strict=True))
    below = dict.fromkeys(ids, 0.0)
    for node in sorted(ids, key=depth, reverse=True):  # children before their parents
        total[node] = max(total[node], below[node])
        if parent_of[node]:
            below[parent_of[node]] += total[node]
    return [total[node] for node in ids]


def patterns(patterns_df: Any) -> go.Figure:
    """Failure patterns: occurrences, and how often their strategy was applied and recovered."""
    title = "Failure patterns"
    df = frame_of(patterns_df, "patterns_df", ("name", "occurrences", "applied", "recovered"))
    if df.empty:
        return no_data(title)
    df = df.sort_values("occurrences", ascending=False, kind="stable")
    names = df["name"].map(text_of).tolist()
    hover = [
        [
            text_of(r.get("tool")),
            text_of(r.get("category")),
            text_of(r.get("fallback")),
            text_of(r.get("source")),
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
    most = int(df["occurrences"].fillna(0).max())
    fig.update_layout(title=title, template="plotly_white", barmode="group",
                      yaxis={"title": "count", "tickformat": "d", "rangemode": "tozero",
                             **({"dtick": 1} if most <= 10 else {})})
    return fig
