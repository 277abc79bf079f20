"""How an event is stored in the events table's `record` column, and read back.

Every run writes about 22 events, so the encoding is on the hot path. The table
already has columns for what every event has (`type`, `run_id`, `ts`, `wall`,
`seq`); the record holds the rest, positionally:

    ["ToolEvent:86fd9e04", [null, "search_api", "search_api#1", 1, null, ...]]

The first element is the event's *layout*: its class and a hash of the field
names the values follow. The `event_layouts` table (schema migration 4) maps a
layout to those names, and every store registers the layouts of the event
classes of this release when it opens, so a record stays readable after a class
gains, loses or reorders a field (that makes a new layout, and the old rows
keep theirs). Encoding an array is about 1 us an event, the self-describing
dict it replaces about 2.3 us (benchmarks/bench_events.py).

The old form, a JSON object of the non-None fields with the class under
`kind`, is still read (rows written before migration 4), and still written for
an event class outside `EVENT_KINDS` (which has no registered layout).
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from pydantic_core import from_json, to_json

from taskorch_nb.core.events import EVENT_KINDS, Event, event_from_record, field_names

#: What the events table keeps in columns (in this order), not in the record.
COLUMNS = ("run_id", "seq", "type", "ts", "wall")
_COLUMN_SET = frozenset(COLUMNS)

#: Fields that hold money: stored as strings, read back as Decimals.
MONEY_FIELDS = frozenset({"amount", "spent", "reserved", "limit", "remaining", "cost"})

#: Registers a layout; both dialects accept it (SQLite >= 3.24).
INSERT_LAYOUT = ("INSERT INTO event_layouts (id, kind, fields) VALUES (?, ?, ?) "
                 "ON CONFLICT (id) DO NOTHING")


def json_default(value: Any) -> Any:
    """What pydantic-core's encoder does not know: models, and anything else as text."""
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def record_fields(cls: type) -> tuple[str, ...]:
    """The fields of `cls` its record holds: all but the table's columns."""
    return tuple(name for name in field_names(cls) if name not in _COLUMN_SET)


def layout_id(kind: str, fields: Iterable[str]) -> str:
    """`Kind:hash-of-the-field-names`: equal ids mean equal layouts, in any store."""
    digest = hashlib.blake2s(",".join(fields).encode(), digest_size=4).hexdigest()
    return f"{kind}:{digest}"


def _getter(names: tuple[str, ...]) -> Callable[[Event], tuple[Any, ...]]:
    if len(names) > 1:
        return operator.attrgetter(*names)  # one C call returns the tuple
    if names:
        name = names[0]
        return lambda event: (getattr(event, name),)
    return lambda event: ()


#: The layouts of this release's event classes: class -> (layout id, field getter).
_ENCODERS: dict[type, tuple[str, Callable[[Event], tuple[Any, ...]]]] = {}
#: The layouts to register in every store: (id, kind, comma-separated fields).
LAYOUTS: list[tuple[str, str, str]] = []
for _kind, _cls in EVENT_KINDS.items():
    _names = record_fields(_cls)
    _ENCODERS[_cls] = (layout_id(_kind, _names), _getter(_names))
    LAYOUTS.append((layout_id(_kind, _names), _kind, ",".join(_names)))


def encode(event: Event) -> str:
    """The record of `event` (its columns aside): a layout and its values."""
    encoder = _ENCODERS.get(type(event))
    if encoder is None:
        return encode_dict(event)
    layout, values = encoder
    return to_json((layout, values(event)), fallback=json_default).decode()


def encode_dict(event: Event) -> str:
    """The old, self-describing form: the fields that are set, the class under `kind`."""
    record = {"kind": type(event).__name__}
    for name in field_names(type(event)):
        value = getattr(event, name)
        if value is not None:
            record[name] = value
    return to_json(record, fallback=json_default).decode()


#: Rebuilds an event from its columns and its record's values.
_Builder = Callable[[Any, Any, Any, Any, Any, list[Any]], Event]
#: Layout id -> its builder (this release's layouts at import, others when first read).
_DECODERS: dict[str, _Builder] = {}


def _money(value: Any) -> Any:
    return Decimal(value) if type(value) is str else value


def _builder(layout: str, fields: tuple[str, ...]) -> _Builder:
    cls = EVENT_KINDS.get(layout.split(":", 1)[0], Event)
    if record_fields(cls) == fields:
        return _direct(cls, fields)
    # Another release's layout: the fields this class still has, its defaults for the rest.
    known = set(field_names(cls))
    kept = tuple((i, name) for i, name in enumerate(fields) if name in known)

    def build(run_id: Any, seq: Any, type_: Any, ts: Any, wall: Any,
              values: list[Any]) -> Event:
        kwargs = {name: _money(values[i]) if name in MONEY_FIELDS else values[i]
                  for i, name in kept}
        return cls(type=type_, run_id=run_id, ts=ts, wall=wall, seq=seq, **kwargs)

    return build


def _direct(cls: type[Event], fields: tuple[str, ...]) -> _Builder:
    """A function that sets every field of a new `cls` from a row, as dataclasses
    generates `__init__`: a third of the cost of `cls(**kwargs)` (bench_events.py)."""
    names = [f"v{i}" for i in range(len(fields))]
    lines = ["def build(run_id, seq, type_, ts, wall, values):",
             "    e = new(cls)",
             *(f"    e.{column} = {column}" for column in ("run_id", "seq", "ts", "wall")),
             "    e.type = type_"]
    if fields:
        lines.append(f"    {', '.join(names)}, = values")
    for name, local in zip(fields, names, strict=True):
        value = f"money({local})" if name in MONEY_FIELDS else local
        lines.append(f"    e.{name} = {value}")
    lines.append("    return e")
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, "money": _money}
    exec("\n".join(lines), namespace)  # only our classes' field names go into the text
    return namespace["build"]  # type: ignore[no-any-return]


for _id, _kind, _fields in LAYOUTS:
    _DECODERS[_id] = _builder(_id, tuple(_fields.split(",")) if _fields else ())


def decode(row: tuple[Any, ...],
           layouts: Callable[[str], tuple[str, ...] | None]) -> Event:
    """The event of a row `(run_id, seq, type, ts, wall, record)`, in either form;
    `layouts(id)` gives the field names of a layout this release does not define
    (from the store's `event_layouts`), None if the store has no such layout."""
    run_id, seq, type_, ts, wall, text = row
    data = from_json(text)
    if type(data) is dict:  # the old form carries its columns too
        for key in MONEY_FIELDS.intersection(data):
            data[key] = _money(data[key])
        return event_from_record(data)
    layout, values = data
    build = _DECODERS.get(layout)
    if build is None:
        fields = layouts(layout)
        if fields is None:
            raise ValueError(f"event record of unknown layout {layout!r} "
                             "(missing from the store's event_layouts table)")
        build = _DECODERS[layout] = _builder(layout, fields)
    return build(run_id, seq, type_, ts, wall, values)


__all__ = ["COLUMNS", "INSERT_LAYOUT", "LAYOUTS", "MONEY_FIELDS", "decode", "encode",
           "encode_dict", "json_default", "layout_id", "record_fields"]
