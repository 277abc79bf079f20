"""DataFrames of events, spans, costs and patterns: columns, dtypes, values."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pytest

from taskorch_nb.core.events import BudgetEvent, Event, EventBus, LLMEvent, scope
from taskorch_nb.testing import FakeClock
from taskorch_nb.tracing.frames import cost_df, events_df, spans_df
from taskorch_nb.tracing.spans import build_spans
from tests.unit.tracing.test_spans import self_healing_run


def is_utc_datetime(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.DatetimeTZDtype) and str(series.dtype.tz) == "UTC"


@pytest.fixture
def events() -> list[Event]:
    clock = FakeClock()
    bus = EventBus(clock)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    with scope(run_id="run-1"):
        bus.emit(BudgetEvent(type="budget.approved", amount=Decimal("0.10"), spent=Decimal(0),
                             reserved=Decimal("0.10"), limit=Decimal("5.00"),
                             remaining=Decimal("4.90")))
    self_healing_run(bus, clock)
    return seen


def test_events_df_columns_dtypes_and_order(events: list[Event]) -> None:
    df = events_df(reversed(events))  # any order in, seq order out
    assert list(df.columns[:6]) == ["seq", "time", "ts", "type", "kind", "run_id"]
    assert df["seq"].tolist() == sorted(e.seq for e in events)
    assert df["seq"].dtype == "int64"
    assert df["ts"].dtype == "float64"
    assert is_utc_datetime(df["time"])
    assert df["time"].iloc[0] == pd.Timestamp("2026-01-01", tz="UTC")
    for name in ("amount", "spent", "limit", "remaining", "reserved", "cost"):
        assert df[name].dtype == "float64", name
    assert df.loc[df["type"] == "budget.approved", "limit"].tolist() == [5.0]
    assert df["attempt"].dtype == "Int64"
    assert df["input_tokens"].dtype == "Int64"
    assert df["detail"].dtype == object
    assert df["status"].dtype == object  # HTTP codes and run statuses share the name
    assert pd.api.types.is_string_dtype(df["type"])
    assert pd.api.types.is_string_dtype(df["tool"])
    assert set(df["kind"]) == {"BudgetEvent", "RunEvent", "LLMEvent", "ToolEvent",
                               "CircuitEvent"}
    qc = df[df["type"] == "qc.failed"].iloc[0]
    assert qc["detail"]["tests_total"] == 4
    failed = df[df["type"] == "tool.failed"]
    assert failed["status"].tolist() == [504, 504]
    assert failed["category"].tolist() == ["timeout", "timeout"]
    assert df.loc[df["type"] == "run.started", "tool"].isna().all()


def test_events_df_matches_the_naive_frame(events: list[Event]) -> None:
    fast = events_df(events)
    naive = pd.DataFrame([e.to_record() for e in events])
    assert set(naive.columns) <= set(fast.columns) | {"wall"}
    for name in ("type", "run_id", "tool", "model", "agent"):
        assert fast[name].fillna("-").tolist() == naive[name].fillna("-").tolist()
    assert fast["cost"].fillna(-1).tolist() == [
        -1 if c is None or pd.isna(c) else float(c) for c in naive["cost"]]


def test_empty_events_df_keeps_the_base_columns() -> None:
    df = events_df([])
    assert list(df.columns) == ["seq", "time", "ts", "type", "kind", "run_id"]
    assert len(df) == 0
    assert df["seq"].dtype == "int64"
    assert is_utc_datetime(df["time"])


def test_spans_df(events: list[Event]) -> None:
    spans, _ = build_spans(events)
    df = spans_df(spans)
    assert list(df.columns[:9]) == ["trace_id", "span_id", "parent_id", "name", "kind",
                                    "start", "end", "duration_s", "status"]
    for name in ("agent", "phase", "model", "tool", "error", "input_tokens", "output_tokens",
                 "cached_tokens", "cost", "latency_s", "attempt"):
        assert name in df.columns
    assert is_utc_datetime(df["start"])
    assert is_utc_datetime(df["end"])
    for name in ("input_tokens", "output_tokens", "cached_tokens", "attempt"):
        assert df[name].dtype == "Int64"
    for name in ("duration_s", "cost", "latency_s"):
        assert df[name].dtype == "float64"
    gens = df[df["kind"] == "generation"]
    assert gens["cost"].sum() == pytest.approx(0.035)
    assert gens["input_tokens"].tolist() == [120, 120]
    assert gens["latency_s"].tolist() == [1.5, 1.5]
    tools = df[df["kind"] == "tool"]
    assert tools["attempt"].tolist() == [1, 2, 1, 1]
    assert tools["error"].iloc[0] == "gateway timeout"
    assert df["parent_id"].isna().sum() == 1
    assert spans_df([]).columns.tolist() == df.columns.tolist()


def test_cost_df_running_total_and_limit(events: list[Event]) -> None:
    bus = EventBus(FakeClock())
    extra: list[Event] = []
    bus.subscribe(extra.append)
    with scope(run_id="run-2"):  # a second run without a budget event: no limit
        bus.emit(LLMEvent(type="llm.completed", call_id="z", provider="p", model="m",
                          cost=Decimal("0.5")))
    df = cost_df([*events, *extra])
    assert df.columns.tolist() == ["time", "run_id", "call_id", "agent", "phase", "provider",
                                   "model", "input_tokens", "output_tokens", "cached_tokens",
                                   "cost", "cumulative_cost", "limit"]
    assert df["call_id"].tolist() == ["llm-1", "llm-2", "z"]
    assert df["cumulative_cost"].tolist() == pytest.approx([0.01, 0.035, 0.5])
    assert df["limit"].tolist()[:2] == [5.0, 5.0]
    assert pd.isna(df["limit"].iloc[2])
    assert df["cost"].dtype == "float64"
    assert df["input_tokens"].dtype == "Int64"
    assert is_utc_datetime(df["time"])
    assert len(cost_df([])) == 0


@dataclass(slots=True, kw_only=True)
class _Probe(Event):
    """An event class of the test's own: optional fields that are None only sometimes."""

    label: str | None = None
    count: int | None = None
    price: Decimal | None = None


def test_events_df_optional_values_in_any_position_match_the_records() -> None:
    bus = EventBus(FakeClock())
    events: list[Event] = []
    bus.subscribe(events.append)
    shared = Decimal("0.25")  # one object in many events, as a budget's limit is
    for i in range(40):
        bus.emit(_Probe(type="probe", label=None if i % 3 == 1 else f"l{i % 4}",
                        count=None if i % 5 == 2 else i, price=shared if i % 2 else None))
        bus.emit(BudgetEvent(type="budget.settled", amount=shared, spent=Decimal(i),
                             reserved=shared, limit=Decimal(5), remaining=Decimal(5) - i))
    df = events_df(events)
    naive = pd.DataFrame([e.to_record() for e in events])
    assert df["label"].dtype == "str"
    assert df["label"].fillna("-").tolist() == naive["label"].fillna("-").tolist()
    assert df["count"].dtype == "Int64"
    assert df["count"].astype(object).where(df["count"].notna(), None).tolist() == [
        None if pd.isna(v) else int(v) for v in naive["count"]]
    for name in ("price", "amount", "spent", "remaining"):
        assert df[name].fillna(-1.0).tolist() == [
            -1.0 if v is None or pd.isna(v) else float(v) for v in naive[name]], name


def test_every_time_column_is_nanosecond_utc(events: list[Event]) -> None:
    spans, _ = build_spans(events)
    frames = {"events": (events_df(events), ["time"]), "empty events": (events_df([]), ["time"]),
              "spans": (spans_df(spans), ["start", "end"]),
              "empty spans": (spans_df([]), ["start", "end"]),
              "cost": (cost_df(events), ["time"]), "empty cost": (cost_df([]), ["time"])}
    for what, (frame, columns) in frames.items():
        for column in columns:
            assert str(frame[column].dtype) == "datetime64[ns, UTC]", (what, column)


def test_span_breaker_states_are_uppercase_like_everywhere_else(events: list[Event]) -> None:
    spans, _ = build_spans(events)
    states = spans_df(spans)["breaker_state"].dropna()
    assert len(states) > 0
    assert set(states) <= {"CLOSED", "OPEN", "HALF_OPEN"}
    assert "OPEN" in set(states) or "CLOSED" in set(states)
