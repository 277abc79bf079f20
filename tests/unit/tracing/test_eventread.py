"""One compiled pass over the events: classes, codes and every field, in order."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from taskorch_nb.core.events import CircuitEvent, Event, RunEvent, ToolEvent
from taskorch_nb.tracing.eventread import BASE_NAMES, as_array, own_fields, read_fields


@dataclass(kw_only=True)
class _Unslotted(ToolEvent):
    """A subclass with a __dict__ and a field of its own."""

    note: str | None = None


def test_classes_in_order_of_appearance_with_their_own_fields_in_event_order() -> None:
    events: list[Event] = [
        ToolEvent(type="tool.called", run_id="r1", tool="a", seq=0, ts=0.5, wall=10.0),
        RunEvent(type="run.started", run_id="r1", status="RUNNING", seq=1),
        ToolEvent(type="tool.failed", tool="b", status=504, seq=2),
        Event(type="plain", seq=3),  # no fields of its own
        CircuitEvent(type="circuit.opened", name="b", state="open", failures=3, seq=4),
        RunEvent(type="run.completed", status="COMPLETED", seq=5),
        _Unslotted(type="tool.called", tool="c", note="n", seq=6),
    ]
    classes, codes, base, own = read_fields(events)
    assert classes == [ToolEvent, RunEvent, Event, CircuitEvent, _Unslotted]
    assert list(codes) == [0, 1, 0, 2, 3, 1, 4]
    fields = dict(zip(BASE_NAMES, base, strict=True))
    assert fields["type"] == [e.type for e in events]
    assert fields["run_id"] == ["r1", "r1", None, None, None, None, None]
    assert list(fields["seq"]) == list(range(7))
    assert isinstance(fields["seq"], array)
    assert list(as_array(fields["ts"], float))[:2] == [0.5, 0.0]
    tool = dict(zip((f.name for f in own_fields(ToolEvent)), own[0], strict=True))
    assert tool["tool"] == ["a", "b"]
    assert tool["status"] == [None, 504]
    run = dict(zip((f.name for f in own_fields(RunEvent)), own[1], strict=True))
    assert run["status"] == ["RUNNING", "COMPLETED"]
    assert own[2] == []
    circuit = dict(zip((f.name for f in own_fields(CircuitEvent)), own[3], strict=True))
    assert circuit["failures"] == [3]
    unslotted = dict(zip((f.name for f in own_fields(_Unslotted)), own[4], strict=True))
    assert unslotted["note"] == ["n"]
    assert unslotted["tool"] == ["c"]


def test_a_number_that_is_not_one_is_read_into_a_list() -> None:
    events = [ToolEvent(type="tool.called", tool="a", seq=i) for i in range(3)]
    events[1].wall = None  # type: ignore[assignment]
    classes, codes, base, own = read_fields(events)
    fields = dict(zip(BASE_NAMES, base, strict=True))
    assert fields["wall"] == [0.0, None, 0.0]
    assert isinstance(fields["wall"], list)
    assert list(fields["seq"]) == [0, 1, 2]
    assert own[0][0] == ["a", "a", "a"]  # the own fields read once, not twice
    assert classes == [ToolEvent]
    assert list(codes) == [0, 0, 0]
