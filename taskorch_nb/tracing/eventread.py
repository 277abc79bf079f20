"""Every field of every event in one pass, for `events_df`.

A loop compiled for the event classes present walks the events once: the
numbers every event has (`ts`, `wall`, `seq`) go into C arrays, the other fields
of `Event` into one list each, and each class's own fields into one list per
field over that class's events. Walking a million events costs more than the
reads in it, and a pass per class or per field walked them again and again.
"""

from __future__ import annotations

import dataclasses
import keyword
from array import array
from collections.abc import Callable
from itertools import islice
from typing import Any

from taskorch_nb.core.events import Event

BASE_NAMES = tuple(f.name for f in dataclasses.fields(Event))
#: fields of every event stored straight into C arrays (typecode), which become columns
NUMBERS = {"ts": "d", "wall": "d", "seq": "q"}


def own_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The fields of an event class beyond those of `Event`, in order."""
    return [f for f in dataclasses.fields(cls) if f.name not in BASE_NAMES]


def read_fields(events: list[Event]) -> tuple[list[type], Any, list[Any], list[list[list[Any]]]]:
    """Every field of every event, in one pass: (classes, class codes, base, own).

    `classes` in order of appearance; `codes[i]` is event i's index in them (an
    `array`); `base` one list per field of `Event` in event order (the numbers:
    an `array`, or a list when one is not a number); `own[c]` one list per
    own field of class c, over that class's events in order. The pass is a
    loop compiled for the classes met so far; an event of a new class stops
    it, and a loop knowing that class too goes on from there.
    """
    n = len(events)
    codes = array("i", [0]) * n
    classes: list[type] = [type(events[0])]
    own: list[list[list[Any]]] = [[[] for _ in own_fields(classes[0])]]
    # numbers straight into C arrays: no list of a million floats to convert and free
    base: list[Any] = [array(NUMBERS[name], [0]) * n if name in NUMBERS else [None] * n
                       for name in BASE_NAMES]
    start = 0
    while True:
        try:
            start = _reader(tuple(classes))(events, start, codes, *base,
                                             *(values for lists in own for values in lists))
        except (TypeError, OverflowError):  # a number that is not one (None): lists then
            if all(isinstance(b, list) for b in base):
                raise
            base = [b if isinstance(b, list) else [None] * n for b in base]
            classes, own, start = classes[:1], [[[] for _ in own_fields(classes[0])]], 0
            continue
        if start == n:
            return classes, codes, base, own
        cls = type(events[start])
        classes.append(cls)
        own.append([[] for _ in own_fields(cls)])


_Reader = Callable[..., int]
_READERS: dict[tuple[type, ...], _Reader] = {}
_MAX_READERS = 256


def _reader(classes: tuple[type, ...]) -> _Reader:
    """The loop reading the events of these classes, compiled once per tuple of classes.

    Compiled as dataclasses and namedtuple compile their methods: attribute
    loads specialise to slot reads and `type(e) is C` tests are cheap, so an
    event costs a store per field and no call, and the events are walked once
    (a walk over a million events costs more than the reads in it). Each
    class's branch reads the fields of `Event` too: CPython specialises a load
    for one class, and one load shared by all classes stayed generic (0.58 s
    instead of 0.47 s for the million events of `bench_frames.py`).
    Returns where it stopped: `len(events)`, or the first event of another class.
    """
    cached = _READERS.get(classes)
    if cached is not None:
        return cached

    def load(name: str) -> str:
        if name.isidentifier() and not keyword.iskeyword(name):
            return f"e.{name}"
        return f"getattr(e, {name!r})"  # a name code cannot spell

    base = [f"b{i}" for i in range(len(BASE_NAMES))]
    params = list(base)
    body: list[str] = []
    for code, cls in enumerate(classes):
        names = [f.name for f in own_fields(cls)]
        lists = [f"c{code}_{i}" for i in range(len(names))]
        params += lists
        body += [f"        {'if' if code == 0 else 'elif'} t is K{code}:",
                 *([f"            codes[i] = {code}"] if code else []),
                 *(f"            {b}[i] = {load(name)}"
                   for b, name in zip(base, BASE_NAMES, strict=True)),
                 *(f"            {v}.append({load(name)})"
                   for v, name in zip(lists, names, strict=True))]
    source = "\n".join([
        f"def read(events, start, codes, {', '.join(params)}):",
        "    i = start",
        "    for e in (events if start == 0 else islice(events, start, None)):",
        "        t = type(e)",
        *body,
        "        else:",
        "            return i",
        "        i += 1",
        "    return i",
    ])
    namespace: dict[str, Any] = {"islice": islice, **{f"K{c}": k for c, k in enumerate(classes)}}
    exec(source, namespace)
    if len(_READERS) >= _MAX_READERS:
        _READERS.clear()
    read = _READERS[classes] = namespace["read"]
    return read


def as_array(values: Any, dtype: Any) -> Any:
    """An ndarray of a field every event has: the reader's `array` as it is, or from a list."""
    import numpy as np

    if isinstance(values, array):
        return np.frombuffer(values, dtype=dtype)
    return np.fromiter(values, dtype=dtype, count=len(values))
