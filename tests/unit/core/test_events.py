from __future__ import annotations

from taskorch_nb import FakeClock, Orchestrator
from taskorch_nb.core.events import EventBus, Notice, ToolEvent, scope


def test_subscriber_that_raises_is_reported_and_never_breaks_the_run() -> None:
    bus = EventBus(FakeClock(start=5.0))
    seen: list = []

    def broken(event) -> None:
        raise RuntimeError("widget died")

    bus.subscribe(broken)
    bus.subscribe(seen.append)
    bus.emit(ToolEvent(type="tool.succeeded", tool="t"))
    assert [e.type for e in seen] == ["tool.succeeded", "subscriber.failed"]
    assert "widget died" in seen[1].message
    assert seen[0].ts == 5.0
    assert seen[0].wall == FakeClock.EPOCH + 5.0
    assert seen[1].seq > seen[0].seq


def test_unsubscribe_and_run_scope() -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock())
    seen: list = []
    stop = orch.subscribe(seen.append)
    with scope(run_id="r1", agent="builder"):
        orch.bus.emit(Notice(type="x", message="in run"))
    orch.bus.emit(Notice(type="y", message="outside"))
    stop()
    orch.bus.emit(Notice(type="z", message="unheard"))
    assert [(e.type, e.run_id) for e in seen] == [("x", "r1"), ("y", None)]
    orch.close()


def test_records_round_trip() -> None:
    from taskorch_nb.core.events import event_from_record

    e = ToolEvent(type="tool.failed", tool="t", attempt=2, status=504)
    again = event_from_record(e.to_record())
    assert again == e
