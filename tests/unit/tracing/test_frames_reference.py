"""`events_df` equals a frame built the slow, obvious way from `to_record()`, for any mix.

The fast path reads every event in one compiled loop, stores numbers in C
arrays and spreads each class's values over its rows; the reference below does
none of that: one record per event, one typed column per field name.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from taskorch_nb.core.events import (
    BudgetEvent,
    CircuitEvent,
    Event,
    LLMEvent,
    Notice,
    PatternEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.tracing.frames import MONEY_FIELDS, _field_dtype, events_df


@dataclass(slots=True, kw_only=True)
class _Probe(Event):
    """A class of the test's own: a bool, a money-like Decimal and a float beside optional ones."""

    flag: bool | None = None
    ratio: float = 0.0
    price: Decimal | None = None
    count: int | None = None
    label: str | None = None


@dataclass(kw_only=True)
class _Unslotted(ToolEvent):
    """A subclass without slots (it has a __dict__): read like the others."""

    note: str | None = None


def reference_df(events: list[Event]) -> pd.DataFrame:
    """The frame from records: sorted by seq, one column per field name, typed by annotation."""
    events = sorted(events, key=lambda e: e.seq)
    records = [e.to_record() for e in events]
    kinds: dict[str, str] = {}
    for cls in dict.fromkeys(type(e) for e in events):
        for f in dataclasses.fields(cls):
            kind = _field_dtype(f.name, f.type)
            kinds[f.name] = kind if kinds.setdefault(f.name, kind) == kind else "object"
    dtype = pd.StringDtype(na_value=math.nan)

    def column(name: str) -> Any:
        values = [r.get(name) for r in records]
        kind = kinds[name]
        if kind == "float":
            return np.array([math.nan if v is None else float(v) for v in values])
        if kind == "int":
            return pd.array(values, dtype="Int64")
        if kind == "bool":
            return pd.array(values, dtype="boolean")
        if kind == "str":
            return pd.array(values, dtype=dtype)
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out

    wall = np.array([r["wall"] for r in records], dtype=np.float64)
    data: dict[str, Any] = {
        "seq": np.array([r["seq"] for r in records], dtype=np.int64),
        "time": pd.to_datetime(wall, unit="s", utc=True).as_unit("ns"),
        "ts": np.array([r["ts"] for r in records], dtype=np.float64),
        "type": column("type"),
        "kind": pd.array([r["kind"] for r in records], dtype="str"),
        "run_id": column("run_id"),
        "wall": wall,
    }
    for name in kinds:
        data.setdefault(name, column(name))
    return pd.DataFrame(data)


texts = st.one_of(st.none(), st.sampled_from(["", "a", "search_api", "timeout"]), st.text())
ints = st.one_of(st.none(), st.integers(-(2**62), 2**62))
floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
shared = Decimal("0.25")  # one object in many events, as a budget's limit is
money = st.one_of(st.just(shared), st.decimals(allow_nan=False, allow_infinity=False,
                                               places=6, min_value=-1000, max_value=1000))


def _text() -> Any:
    return st.text(max_size=8)


event_strategy = st.one_of(
    st.builds(ToolEvent, type=st.just("tool.called"), run_id=texts, tool=_text(),
              call_id=texts, attempt=st.integers(0, 5), category=texts,
              status=ints, error=texts, duration=st.one_of(st.none(), floats)),
    st.builds(LLMEvent, type=st.just("llm.completed"), call_id=_text(), provider=_text(),
              model=_text(), input_tokens=st.integers(0, 10**9),
              cost=st.one_of(st.none(), money), status=ints),
    st.builds(BudgetEvent, type=st.just("budget.settled"), amount=money, spent=money,
              reserved=money, limit=money, remaining=money, reservation=ints),
    st.builds(RunEvent, type=st.just("run.started"), status=texts,
              detail=st.dictionaries(_text(), st.integers(), max_size=2)),
    st.builds(CircuitEvent, type=st.just("circuit.opened"), name=_text(), state=_text(),
              failures=st.integers(0, 9), reset_at=st.one_of(st.none(), floats)),
    st.builds(PatternEvent, type=st.just("pattern.learned"), name=_text(),
              signature=_text(), tool=_text(), category=_text(), occurrences=st.integers(0, 9)),
    st.builds(Notice, type=st.just("tracing.warning"), message=st.text(), actor=texts),
    st.builds(Event, type=st.just("plain")),
    st.builds(_Probe, type=st.just("probe"), flag=st.one_of(st.none(), st.booleans()),
              ratio=floats, price=st.one_of(st.none(), money), count=ints, label=texts),
    st.builds(_Unslotted, type=st.just("tool.called"), tool=_text(), note=texts),
)


@st.composite
def event_lists(draw: st.DrawFn) -> list[Event]:
    events = draw(st.lists(event_strategy, max_size=40))
    seqs = draw(st.lists(st.integers(0, 30), min_size=len(events), max_size=len(events)))
    for i, (event, seq) in enumerate(zip(events, seqs, strict=True)):
        event.seq = seq if draw(st.booleans()) else i  # in order, or not, ties included
        event.ts = float(i)
        event.wall = 1_767_225_600.0 + i / 8
    return events


def assert_same(events: list[Event]) -> None:
    fast = events_df(events)
    expected = reference_df(events)
    assert list(fast.columns) == list(expected.columns)
    assert [str(t) for t in fast.dtypes] == [str(t) for t in expected.dtypes]
    pd.testing.assert_frame_equal(fast, expected, check_exact=True)


@settings(max_examples=150, deadline=None)
@given(event_lists())
def test_events_df_equals_the_frame_of_records(events: list[Event]) -> None:
    if events:
        assert_same(events)
    else:
        assert list(events_df(events).columns) == ["seq", "time", "ts", "type", "kind", "run_id"]


def test_one_event_of_each_class_alone_and_together() -> None:
    examples = [
        ToolEvent(type="tool.failed", run_id="r", tool="t", status=504, error="x", seq=3),
        LLMEvent(type="llm.completed", call_id="c", provider="p", model="m",
                 cost=Decimal("0.0012"), seq=1),
        BudgetEvent(type="budget.settled", amount=shared, spent=shared, reserved=shared,
                    limit=shared, remaining=shared, seq=2),
        RunEvent(type="run.completed", status="COMPLETED", detail={"a": 1}, seq=0),
        _Probe(type="probe", flag=True, price=shared, seq=5),
    ]
    for event in examples:
        assert_same([event])
    assert_same(examples)
    assert_same(examples * 3)  # classes met again after others (the compiled loop goes on)


def test_generators_and_a_number_that_is_not_one() -> None:
    events = [ToolEvent(type="tool.called", tool="t", seq=i) for i in range(5)]
    assert_same(events)
    pd.testing.assert_frame_equal(events_df(iter(events)), events_df(events))
    odd = RunEvent(type="run.started", seq=9)
    odd.ts = None  # type: ignore[assignment]  # not a float: the lists path, NaN as before
    frame = events_df([*events, odd])
    assert math.isnan(frame["ts"].iloc[-1])
    assert frame["seq"].tolist() == [0, 1, 2, 3, 4, 9]


def test_money_columns_are_the_decimals_as_floats() -> None:
    one = Decimal("0.0123")
    events = [BudgetEvent(type="budget.settled", amount=one, spent=Decimal(i), reserved=one,
                          limit=Decimal("0.0123"), remaining=one, seq=i) for i in range(300)]
    frame = events_df(events)
    assert set(MONEY_FIELDS) - {"cost"} <= set(frame.columns)
    assert frame["amount"].tolist() == [0.0123] * 300
    assert frame["spent"].tolist() == [float(i) for i in range(300)]
    assert_same(events)
