from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from decimal import Decimal

import pytest

from taskorch_nb.core.backends import open_store
from taskorch_nb.core.eventcodec import (
    LAYOUTS,
    decode,
    encode,
    encode_dict,
    layout_id,
    record_fields,
)
from taskorch_nb.core.events import (
    EVENT_KINDS,
    BudgetEvent,
    CircuitEvent,
    Event,
    EventBus,
    LLMEvent,
    Notice,
    PatternEvent,
    RunEvent,
    ToolEvent,
)
from taskorch_nb.core.schema import MIGRATIONS, VERSION, render
from taskorch_nb.testing import FakeClock
from tests.store_backends import BACKENDS, fresh_store

MONEY = {"amount": Decimal("0.0302"), "spent": Decimal("1.50"), "reserved": Decimal("0"),
         "limit": Decimal("5.00"), "remaining": Decimal("3.4698")}


def every_kind() -> list[Event]:
    """One event of each class, every optional field set (so a value in the wrong place
    would show), and one with the defaults."""
    return [
        Event(type="custom.thing", actor="ada"),
        ToolEvent(type="tool.failed", tool="search_api", call_id="search_api#3", attempt=2,
                  category="timeout", status=504, error="gateway timeout", wait=0.25,
                  duration=5.0, fallback_of="web_search", agent="builder", actor="ada"),
        ToolEvent(type="tool.called", tool="list_files"),
        CircuitEvent(type="circuit.opened", name="search_api", state="OPEN",
                     previous="CLOSED", failures=3, reset_at=1234.5),
        PatternEvent(type="pattern.learned", name="timeout on search", signature="abc123",
                     tool="search_api", category="timeout", fallback="web_search",
                     prompt="retry with a smaller page", source="hub", occurrences=4),
        BudgetEvent(type="budget.settled", reservation=7, agent="builder", model="sim-small",
                    tool="search_api", **MONEY),
        LLMEvent(type="llm.completed", call_id="llm#1", provider="simulated",
                 model="sim-small", agent="builder", phase="build", input_tokens=322,
                 output_tokens=94, cached_tokens=12, cost=Decimal("0.0302"), latency=0.5,
                 status=200, error="none"),
        RunEvent(type="run.completed", task="list the files", status="COMPLETED",
                 workflow="single", phase="build", agent="builder",
                 detail={"output": {"files": ["a.py"]}, "cost": "0.03", "n": 2, "ok": True}),
        Notice(type="subscriber.failed", message="boom", level="error",
               detail={"event": "tool.called"}),
    ]


def stamped(events: list[Event]) -> list[Event]:
    bus = EventBus(FakeClock(start=12.345678901))
    for i, event in enumerate(events):
        event.run_id = event.run_id or ("run-000000000001" if i % 2 else None)
        bus.emit(event)
    return events


@pytest.fixture(params=BACKENDS)
def db(request, tmp_path):
    with fresh_store(request.param, tmp_path) as target:
        yield target


def test_every_event_class_is_covered() -> None:
    assert {type(e) for e in every_kind()} == set(EVENT_KINDS.values())


def test_every_event_class_round_trips_through_the_store(db) -> None:
    events = stamped(every_kind())
    store = open_store(db)
    for event in events:
        store.record(event)
    store.flush()
    assert store.events() == events
    assert store.events("run-000000000001") == [e for e in events
                                                if e.run_id == "run-000000000001"]
    store.close()
    again = open_store(db)  # another process: nothing cached in this one's store
    back = again.events()
    assert back == events
    assert [type(e) for e in back] == [type(e) for e in events]
    assert back[5].amount == Decimal("0.0302")
    assert isinstance(back[6].cost, Decimal)
    again.close()


def test_records_are_positional_arrays_that_name_a_registered_layout(db) -> None:
    store = open_store(db)
    event = stamped([ToolEvent(type="tool.called", tool="list_files", attempt=2)])[0]
    store.record(event)
    store.flush()
    [(record,)] = store.query("SELECT record FROM events")
    layout = layout_id("ToolEvent", record_fields(ToolEvent))
    assert record.startswith(f'["{layout}",[null,"list_files",null,2,')  # actor first
    assert "tool.called" not in record  # the type is a column, not repeated in the record
    assert set(store.query("SELECT id, kind, fields FROM event_layouts")) >= set(LAYOUTS)
    store.close()


def test_old_dict_records_still_read_back(db) -> None:
    events = stamped(every_kind())
    store = open_store(db)
    store.execute_held([
        ("INSERT INTO events (run_id, seq, type, ts, wall, record) VALUES (?,?,?,?,?,?)",
         (e.run_id, e.seq, e.type, e.ts, e.wall, encode_dict(e))) for e in events])
    assert store.events() == events
    store.close()


def test_a_layout_of_another_release_reads_by_its_registered_fields(db) -> None:
    store = open_store(db)
    # A release whose ToolEvent had a field `gone` (since removed) and no `call_id`.
    old = layout_id("ToolEvent", ("tool", "gone", "attempt"))
    store.execute("INSERT INTO event_layouts (id, kind, fields) VALUES (?,?,?)",
                  (old, "ToolEvent", "tool,gone,attempt"))
    store.execute("INSERT INTO events (run_id, seq, type, ts, wall, record) "
                  "VALUES (?,?,?,?,?,?)",
                  ("r1", 4, "tool.called", 1.5, 2.5, f'["{old}",["search",7,3]]'))
    assert store.events() == [ToolEvent(type="tool.called", run_id="r1", seq=4, ts=1.5,
                                        wall=2.5, tool="search", attempt=3)]
    store.execute("INSERT INTO events (run_id, seq, type, ts, wall, record) "
                  "VALUES (?,?,?,?,?,?)", ("r1", 5, "tool.called", 1.5, 2.5,
                                           '["ToolEvent:00000000",["search"]]'))
    with pytest.raises(ValueError, match="unknown layout 'ToolEvent:00000000'"):
        store.events()
    store.close()


def test_an_event_class_outside_the_kinds_keeps_the_dict_form() -> None:
    @dataclass(slots=True, kw_only=True)
    class Custom(ToolEvent):
        extra: str = "x"

    event = Custom(type="tool.called", tool="t", seq=3)
    record = encode(event)
    assert record.startswith('{"kind":"Custom"')
    back = decode((None, 3, "tool.called", 0.0, 0.0, record), lambda layout: None)
    assert (type(back), back.type, back.seq) == (Event, "tool.called", 3)


def test_the_encoding_knows_what_pydantic_core_does_not() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    event = RunEvent(type="run.started", detail={"obj": Thing(), "tags": {"b"}})
    back = decode((None, 0, "run.started", 0.0, 0.0, encode(event)), lambda layout: None)
    assert back.detail == {"obj": "a thing", "tags": ["b"]}


def _version_3_store(path) -> None:
    """A SQLite store as release 3 left it: schema at 3, dict records."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied REAL)")
    for number, statements in enumerate(MIGRATIONS[:3], 1):
        for statement in statements:
            db.execute(render(statement, "sqlite"))
        db.execute("INSERT INTO schema_version VALUES (?, 0.0)", (number,))
    for e in stamped(every_kind()):
        db.execute("INSERT INTO events (run_id, seq, type, ts, wall, record) "
                   "VALUES (?,?,?,?,?,?)", (e.run_id, e.seq, e.type, e.ts, e.wall,
                                            encode_dict(e)))
    db.close()


def test_a_version_3_sqlite_file_migrates_and_reads_old_and_new_rows(tmp_path) -> None:
    path = tmp_path / "taskorch.db"
    _version_3_store(path)
    store = open_store(str(path))
    assert store.query("SELECT version FROM schema_version WHERE version > 3") == [
        (v,) for v in range(4, VERSION + 1)]
    assert store.query("SELECT count(*) FROM event_layouts") == [(len(LAYOUTS),)]
    old = store.events()
    assert old == stamped(every_kind())
    new = [dataclasses.replace(e, seq=e.seq + 100) for e in old]
    for event in new:
        store.record(event)
    store.flush()
    forms = [r[0][0] for r in store.query("SELECT record FROM events ORDER BY id")]
    assert forms == ["{"] * len(old) + ["["] * len(new)
    assert store.events() == old + new
    store.close()
