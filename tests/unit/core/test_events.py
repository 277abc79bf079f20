from __future__ import annotations

import asyncio

import pytest

from taskorch_nb import FakeClock, Orchestrator
from taskorch_nb.core.events import (
    EventBus,
    Notice,
    ToolEvent,
    acting,
    event_from_record,
    person,
    scope,
)


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


def test_events_emitted_while_acting_name_the_actor() -> None:
    bus = EventBus(FakeClock())
    seen: list = []
    bus.subscribe(seen.append)
    bus.emit(Notice(type="before", message="system"))
    with acting("ada"):
        bus.emit(Notice(type="circuit.reset", message="by hand"))
        bus.emit(Notice(type="explicit", message="x", actor="bob"))  # an explicit actor stays
    bus.emit(Notice(type="after", message="system"))
    assert [(e.type, e.actor) for e in seen] == [
        ("before", None), ("circuit.reset", "ada"), ("explicit", "bob"), ("after", None)]
    assert seen[1].to_record()["actor"] == "ada"
    assert event_from_record(seen[1].to_record()).actor == "ada"


async def test_an_action_that_starts_work_names_only_its_own_events() -> None:
    bus = EventBus(FakeClock())
    seen: list = []
    bus.subscribe(seen.append)

    async def resume() -> None:
        bus.emit(Notice(type="budget.extended", message="+$1"))
        bus.emit(Notice(type="run.resumed", message="go"))
        await asyncio.sleep(0)
        bus.emit(Notice(type="llm.completed", message="the run's own work"))

    with acting("ada", until="run.resumed"):
        task = asyncio.get_running_loop().create_task(resume())
    await task
    assert [(e.type, e.actor) for e in seen] == [
        ("budget.extended", "ada"), ("run.resumed", "ada"), ("llm.completed", None)]


def test_the_person_acting_is_jupyterhubs_user_else_the_login_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTERHUB_USER", "ada")
    assert person() == "ada"
    monkeypatch.delenv("JUPYTERHUB_USER")
    monkeypatch.setenv("LOGNAME", "grace")
    assert person() == "grace"  # getpass reads LOGNAME first


def test_a_subscriber_can_take_only_some_types_and_order_is_kept() -> None:
    bus = EventBus(FakeClock())
    seen: list[tuple[str, str]] = []

    class Alerts:
        event_types = frozenset({"tool.failed"})

        def __call__(self, event) -> None:
            seen.append(("alerts", event.type))

    bus.subscribe(lambda e: seen.append(("all", e.type)))
    bus.subscribe(lambda e: seen.append(("circuits", e.type)), types=("circuit.",))
    stop = bus.subscribe(Alerts())
    bus.subscribe(lambda e: seen.append(("last", e.type)), types=["tool.failed"])
    for kind in ("tool.called", "tool.failed", "circuit.opened", "tool.failed"):
        bus.emit(Notice(type=kind, message=""))
    assert seen == [
        ("all", "tool.called"),
        ("all", "tool.failed"), ("alerts", "tool.failed"), ("last", "tool.failed"),
        ("all", "circuit.opened"), ("circuits", "circuit.opened"),
        ("all", "tool.failed"), ("alerts", "tool.failed"), ("last", "tool.failed"),
    ]
    stop()  # the per-type lists are worked out again
    seen.clear()
    bus.emit(Notice(type="tool.failed", message=""))
    assert seen == [("all", "tool.failed"), ("last", "tool.failed")]
    with pytest.raises(TypeError, match="not one string"):
        bus.subscribe(seen.append, types="circuit.")
