"""How an event is stored in the events table's `record` column, and read back.

Every run writes about 22 events, so the encoding is on the hot path. The table
already has columns for what every event has (`type`, `run_id`, `ts`, `wall`,
`seq`); the record holds the rest, positionally:

    ["ToolEvent:9c1e04b2", ["search_api", "call#1", 1, null, ...]]

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


#: Layout id -> (class, [(position, field)] it still has, positions of money fields).
_Decoder = tuple[type[Event], tuple[str, ...] | None, tuple[tuple[int, str], ...],
                 tuple[str, ...]]
_DECODERS: dict[str, _Decoder] = {}


def _decoder(layout: str, fields: tuple[str, ...]) -> _Decoder:
    kind = layout.split(":", 1)[0]
    cls = EVENT_KINDS.get(kind, Event)
    known = set(field_names(cls))
    money = tuple(name for name in fields if name in MONEY_FIELDS and name in known)
    if record_fields(cls) == fields:  # this release's layout: values map one to one
        return cls, fields, (), money
    kept = tuple((i, name) for i, name in enumerate(fields) if name in known)
    return cls, None, kept, money


for _id, _kind, _fields in LAYOUTS:
    _DECODERS[_id] = _decoder(_id, tuple(_fields.split(",")) if _fields else ())


def decode(row: tuple[Any, ...],
           layouts: Callable[[str], tuple[str, ...] | None]) -> Event:
    """The event of a row `(run_id, seq, type, ts, wall, record)`, in either form;
    `layouts(id)` gives the field names of a layout this release does not define
    (from the store's `event_layouts`), None if the store has no such layout."""
    run_id, seq, type_, ts, wall, text = row
    data = from_json(text)
    if type(data) is dict:  # the old form carries its columns too
        for key in MONEY_FIELDS.intersection(data):
            if isinstance(data[key], str):
                data[key] = Decimal(data[key])
        return event_from_record(data)
    layout, values = data
    decoder = _DECODERS.get(layout)
    if decoder is None:
        fields = layouts(layout)
        if fields is None:
            raise ValueError(f"event record of unknown layout {layout!r} "
                             "(missing from the store's event_layouts table)")
        decoder = _DECODERS[layout] = _decoder(layout, fields)
    cls, names, kept, money = decoder
    if names is not None:
        kwargs = dict(zip(names, values, strict=True))
    else:
        kwargs = {name: values[i] for i, name in kept}
    for key in money:
        if isinstance(kwargs[key], str):
            kwargs[key] = Decimal(kwargs[key])
    return cls(type=type_, run_id=run_id, ts=ts, wall=wall, seq=seq, **kwargs)


__all__ = ["COLUMNS", "INSERT_LAYOUT", "LAYOUTS", "MONEY_FIELDS", "decode", "encode",
           "encode_dict", "json_default", "layout_id", "record_fields"]
