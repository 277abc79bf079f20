"""What the charts share: their input frames, colours, minimum marks and axes.

A front-end module (plotly); `taskorch_nb.plots` builds each chart from these.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from taskorch_nb.chart import Chart

__all__ = ["KIND_COLOURS", "MIN_MARK", "STATE_COLOURS", "frame_of", "ink", "mark_ms",
           "no_data", "pick_colour", "spread_axis", "text_of", "to_ms"]

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
CYCLE = ("#5c6bc0", "#26a69a", "#d4e157", "#ab47bc", "#ffa726", "#8d6e63", "#29b6f6")
STATE_COLOURS = {"CLOSED": "#2e7d32", "HALF_OPEN": "#ef6c00", "OPEN": "#c62828"}
ERROR_STATUSES = {"error", "failed", "ERROR", "FAILED"}


def frame_of(data: Any, method: str, required: Sequence[str]) -> pd.DataFrame:
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
    return _microseconds(frame)


def _microseconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Times floored to the microsecond: Plotly turns them into Python datetimes, which
    have no nanoseconds (pandas warns for each one it drops); the axis shows ms anyway."""
    times = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if not times:
        return frame
    return frame.assign(**{c: frame[c].dt.floor("us") for c in times})


def no_data(title: str) -> go.Figure:
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


def pick_colour(palette: dict[str, str], key: str, seen: dict[str, str]) -> str:
    if key in palette:
        return palette[key]
    return seen.setdefault(key, CYCLE[len(seen) % len(CYCLE)])


def to_ms(delta: pd.Series) -> list[float]:
    """Timedeltas as milliseconds: the bar length a date axis expects."""
    return (delta.dt.total_seconds() * 1000.0).tolist()


#: The least width a bar is drawn with, as a share of its axis: an instant is a mark.
MIN_MARK = 0.006


def mark_ms(first: Any, last: Any, share: float = MIN_MARK) -> float:
    """The minimum bar length (ms) on an axis from `first` to `last`."""
    return max((last - first).total_seconds() * 1000.0 * share, 1.0)


def spread_axis(values: Sequence[float]) -> dict[str, Any]:
    """A log axis when the positive values differ 100 times or more (else plotly's own),
    so a small bar beside a large one is not a hairline: its range starts a decade below
    the smallest, so that bar has height too."""
    positive = [float(v) for v in values if v is not None and float(v) > 0]
    if len(positive) >= 2 and max(positive) >= 100 * min(positive):
        return {"type": "log",
                "range": [math.log10(min(positive)) - 1.0, math.log10(max(positive)) + 0.2]}
    return {}


def ink(colour: str) -> str:
    """Text colour that reads on a box of `colour` (#rrggbb): white on dark, dark on light."""
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "#ffffff" if luminance < 0.55 else "#212121"


def text_of(value: Any) -> str:
    """A cell as a label: missing values (None, NaN, NA, NaT) become ""."""
    if value is None:
        return ""
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or dict cell: not a scalar, so present
        missing = False
    return "" if missing else str(value)
