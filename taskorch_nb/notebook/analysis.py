"""Post-mortem recipes: three questions people ask after a run.

What failed (`failures`), where the time went (`phase_durations`), and how
several runs compare (`compare`). Import them from `taskorch_nb`, beside the
frames they build on (`events_df`, `spans_df`, `cost_df`, `patterns_df`) and
`history`; the frames' old names here still work, with a DeprecationWarning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

from taskorch_nb.tracing import frames as _frames

__all__ = ["compare", "failures", "phase_durations"]



def __getattr__(name: str) -> Any:
    """The names this module used to re-export; their home is `taskorch_nb` now."""
    from taskorch_nb.core.pattern_frame import patterns_df
    from taskorch_nb.engine.orchestrator import history

    moved = {"cost_df": _frames.cost_df, "events_df": _frames.events_df, "history": history,
             "patterns_df": patterns_df, "spans_df": _frames.spans_df}
    if name not in moved:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"taskorch_nb.notebook.analysis.{name} is deprecated: "
                  f"use taskorch_nb.{name}", DeprecationWarning, stacklevel=2)
    return moved[name]

#: The event types that mean something went wrong or was worked around.
FAILURE_TYPES = (
    "tool.failed",
    "llm.failed",
    "retry.scheduled",
    "circuit.opened",
    "circuit.rejected",
    "tool.fallback",
    "pattern.applied",
    "budget.rejected",
    "qc.failed",
    "run.failed",
    "run.paused",
)
_FAILURE_COLUMNS = ("seq", "time", "ts", "type", "tool", "name", "model", "agent", "category",
                    "status", "attempt", "wait", "error")


def _events(data: Any) -> Any:
    """A frame of events from a Run, a list of events or an events frame."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "events_df"):
        return data.events_df()
    return _frames.events_df(list(data))


def failures(data: Any) -> Any:
    """What went wrong in a run and what was done about it: one row per failure, retry,
    breaker trip, fallback, pattern applied, budget refusal or failed QC, in order."""
    frame = _events(data)
    if frame.empty:
        return frame
    picked = frame[frame["type"].isin(FAILURE_TYPES).to_numpy(dtype=bool)]
    columns = [c for c in _FAILURE_COLUMNS if c in picked.columns]
    table = picked[columns].reset_index(drop=True)
    if "status" in table:  # the HTTP status; a run's status ("FAILED") is already its type
        table["status"] = _http_status(table["status"])
    return table


def _http_status(values: Any) -> Any:
    import pandas as pd

    codes = [v if isinstance(v, int) and not isinstance(v, bool) else None for v in values]
    return pd.array(codes, dtype="Int64")


def phase_durations(data: Any) -> Any:
    """Seconds spent in each phase round (`research`, `design`, `build` 1, `qc` 1, ...),
    measured on the run's clock (`ts`), with the model cost of each round."""
    import pandas as pd

    frame = _events(data)
    rows: list[dict[str, Any]] = []
    open_rounds: dict[str, dict[str, Any]] = {}
    rounds: dict[str, int] = {}
    if not frame.empty:
        needed = frame[["type", "ts"]].assign(
            phase=frame.get("phase", None),
            cost=frame.get("cost", 0.0),
        )
        for etype, ts, phase, cost in needed.itertuples(index=False):
            if etype == "phase.started":
                rounds[phase] = rounds.get(phase, 0) + 1
                open_rounds[phase] = {"phase": phase, "round": rounds[phase], "start": ts,
                                      "cost": 0.0}
            elif etype == "llm.completed" and phase in open_rounds and pd.notna(cost):
                open_rounds[phase]["cost"] += float(cost)
            elif etype == "phase.completed" and phase in open_rounds:
                row = open_rounds.pop(phase)
                rows.append(row | {"seconds": ts - row["start"]})
    rows.extend(row | {"seconds": float("nan")} for row in open_rounds.values())
    result = pd.DataFrame(rows, columns=["phase", "round", "start", "seconds", "cost"])
    return result.drop(columns="start").astype(
        {"phase": "str", "round": "int64", "seconds": "float64", "cost": "float64"}
    )


def call_counts(events: Iterable[Any]) -> dict[str, int]:
    """Model calls (answered or failed, each with its retries) and tool calls.

    A model is guarded by a breaker named `provider:model`, so its attempts are
    `tool.*` events too: they count as the model's, not as tool calls.
    """
    events = list(events)
    models = {f"{e.provider}:{e.model}" for e in events
              if e.type.startswith("llm.") and getattr(e, "model", None)}
    return {
        "llm_calls": sum(e.type in ("llm.completed", "llm.failed") for e in events),
        "tool_calls": sum(e.type in ("tool.succeeded", "tool.failed")
                          and getattr(e, "tool", None) not in models for e in events),
    }


def compare(runs: Iterable[Any]) -> Any:
    """One row per run: status, spent, limit, model calls, tokens, retries, patterns applied,
    QC rounds; for before/after questions across runs."""
    import pandas as pd

    rows = []
    for run in runs:
        summary = run.summary()
        events = getattr(run, "events", None)
        rows.append({
            "run_id": summary["run_id"],
            "task": summary["task"],
            "workflow": summary["workflow"],
            "status": summary["status"],
            "spent": float(summary["cost"]["spent"]),
            "limit": float(summary["cost"]["limit"]),
            **summary["metrics"],
            **(call_counts(events) if events is not None else {}),
        })
    return pd.DataFrame(rows)
