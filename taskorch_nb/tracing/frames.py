"""pandas DataFrames of events, spans, costs and patterns, for post-mortems and charts.

pandas is imported inside each function so `import taskorch_nb` stays light.
Columns are built straight from the events' slots (not through a list of row
dicts): one loop, compiled for the event classes present, walks the events once
and reads every field (numbers into C arrays, the rest into a list per field
and class); then each field becomes one typed array, written at its classes' rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.events import Event
from taskorch_nb.tracing.eventread import BASE_NAMES, NUMBERS, as_array, own_fields, read_fields
from taskorch_nb.tracing.spans import Span

if TYPE_CHECKING:
    import pandas as pd

#: Event fields holding money (Decimal); they become float64 columns.
MONEY_FIELDS = frozenset({"amount", "spent", "reserved", "limit", "remaining", "cost"})

_NAN = math.nan


def _field_dtype(name: str, annotation: Any) -> str:
    """The column kind for a dataclass field: float, int, bool, str or object."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    if name in MONEY_FIELDS or "Decimal" in text:
        return "float"
    parts = {p.strip() for p in text.split("|")} - {"None"}
    if parts == {"float"}:
        return "float"
    if parts == {"int"}:
        return "int"
    if parts == {"bool"}:
        return "bool"
    if parts == {"str"}:
        return "str"
    return "object"


def events_df(events: Iterable[Event]) -> pd.DataFrame:
    """One row per event, ordered by `seq`.

    Columns: `seq` int64, `time` datetime64[ns, UTC] (from `wall`), `ts` float64
    (monotonic s), `type` str, `kind` str (event class), `run_id` str, then the
    union of all event fields in order of appearance: money (`amount`, `spent`,
    `reserved`, `limit`, `remaining`, `cost`) and float fields as float64, int
    fields (`attempt`, `failures`, tokens, ...) as nullable Int64, strings as
    str, `detail` dicts as object; a name with different types in different
    event kinds (`status`: HTTP code or run status) is object. A field an event
    kind lacks is missing (NaN/<NA>/None).
    """
    import numpy as np
    import pandas as pd

    events = events if isinstance(events, list) else list(events)
    n = len(events)
    if n == 0:
        return pd.DataFrame({
            "seq": pd.Series([], dtype="int64"),
            "time": pd.Series([], dtype="datetime64[ns, UTC]"),
            "ts": pd.Series([], dtype="float64"),
            "type": pd.Series([], dtype="str"),
            "kind": pd.Series([], dtype="str"),
            "run_id": pd.Series([], dtype="str"),
        })

    kinds, codes, base, own = read_fields(events)
    common = dict(zip(BASE_NAMES, base, strict=True))
    del base
    seq = as_array(common.pop("seq"), np.int64)
    if n > 1 and not bool((seq[1:] >= seq[:-1]).all()):
        return events_df(_objects(events)[np.argsort(seq, kind="stable")].tolist())
    codes_arr = np.frombuffer(codes, dtype=np.int32)
    rows: list[Any] = [None] if len(kinds) == 1 else [
        np.flatnonzero(codes_arr == code) for code in range(len(kinds))]
    # (rows of a class or None for all, values) per field name, in order of appearance
    pieces: dict[str, list[tuple[Any, list[Any]]]] = {}
    dtypes: dict[str, str] = {}
    for f in dataclasses.fields(Event):
        if f.name not in NUMBERS:
            pieces[f.name] = [(None, common.pop(f.name))]
        dtypes[f.name] = _field_dtype(f.name, f.type)
    for cls, idx, lists in zip(kinds, rows, own, strict=True):
        for f, values in zip(own_fields(cls), lists, strict=True):
            kind = _field_dtype(f.name, f.type)
            if dtypes.setdefault(f.name, kind) != kind:
                dtypes[f.name] = "object"
            pieces.setdefault(f.name, []).append((idx, values))
    del own
    wall = as_array(common.pop("wall"), np.float64)
    source = np.full(n, -1, dtype=np.intp)  # for the str columns' `take`
    columns: dict[str, Any] = {
        "seq": seq,
        "time": pd.to_datetime(wall, unit="s", utc=True).as_unit("ns"),
        "ts": as_array(common.pop("ts"), np.float64),
        "type": _str_column(pieces.pop("type"), n, source),
        "kind": pd.array([cls.__name__ for cls in kinds], dtype="str").take(codes_arr),
        "run_id": _str_column(pieces.pop("run_id"), n, source),
        "wall": wall,
    }
    for name in list(pieces):
        columns[name] = _column(dtypes[name], pieces.pop(name), n, money=name in MONEY_FIELDS,
                                source=source)
    return pd.DataFrame(columns, copy=False)


def _objects(items: list[Any]) -> Any:
    """An object ndarray of the items (fromiter: np.array would probe each for sequences)."""
    import numpy as np

    return np.fromiter(items, dtype=object, count=len(items))


def _money(values: list[Any]) -> Any:
    """float64 of Decimals (None -> NaN), each distinct object converted once.

    `float(Decimal)` formats and parses a string and hashing a Decimal costs
    more still, while a budget's limit or a price is one object shared by many
    events: so the table is keyed by object id (the values list keeps them alive).
    """
    import numpy as np

    m = len(values)
    sample = values[:: max(1, m // 64)]
    in_sample = len(set(map(id, sample)))  # distinct objects in the sample
    first = values[0]
    # one object everywhere (a budget's limit in its events): `count` compares by
    # identity first, so this costs next to nothing; equal Decimals count as well
    if in_sample == 1 and first is not None and values.count(first) == m:
        return np.full(m, float(first))
    if in_sample * 4 <= len(sample):  # shared objects: worth a table
        ids = list(map(id, values))
        distinct = dict(zip(ids, values, strict=True))
        table = {i: _NAN if v is None else float(v) for i, v in distinct.items()}
        return np.fromiter(map(table.__getitem__, ids), dtype=np.float64, count=m)
    return np.fromiter(values, dtype=np.float64, count=m)  # None -> NaN


def _str_column(pieces: list[tuple[Any, list[Any]]], n: int, source: Any) -> Any:
    """A str column (NaN where missing) from each class's (rows, values).

    Only the present values are converted (checked in C, not copied when all
    are str) and then spread over the rows with one `take`, so the missing
    rows, often most of a column, cost next to nothing. `source` is n times -1,
    shared by the columns of one frame and left as it was found (a fresh
    array per column cost more in page faults than its filling).
    """
    import numpy as np
    import pandas as pd

    dtype = pd.StringDtype(na_value=_NAN)
    present: list[Any] = []
    positions: list[Any] = []
    for idx, values in pieces:
        m = len(values)
        if values[0] is None:  # an optional field, often None for the whole class
            nones = values.count(None)
            if nones == m:
                continue
            if nones:
                arr = np.fromiter(values, dtype=object, count=m)
                keep = ~np.equal(arr, None)
                present.append(arr[keep])
                positions.append((np.arange(n) if idx is None else idx)[keep])
                continue
        arr = np.fromiter(values, dtype=object, count=m)
        if idx is None:  # one class, a value in every row (a None later becomes NaN)
            return pd.array(arr, dtype=dtype, copy=False)
        present.append(arr)
        positions.append(idx)
    if sum(map(len, present)) == n:  # a value in every row: put them in place
        out = np.empty(n, dtype=object)
        for idx, arr in zip(positions, present, strict=True):
            out[idx] = arr
        return pd.array(out, dtype=dtype, copy=False)
    if not present:
        return pd.array(np.empty(0, dtype=object), dtype=dtype).take(source, allow_fill=True)
    one = len(present) == 1  # (concatenate copies even one array)
    found = pd.array(present[0] if one else np.concatenate(present), dtype=dtype, copy=False)
    where = positions[0] if one else np.concatenate(positions)
    source[where] = np.arange(len(found))
    try:
        return found.take(source, allow_fill=True)
    finally:
        source[where] = -1


def _column(kind: str, pieces: list[tuple[Any, list[Any]]], n: int, *, money: bool,
            source: Any) -> Any:
    """One typed column from each class's (rows, values) of a field."""
    import numpy as np
    import pandas as pd

    if kind == "str":
        return _str_column(pieces, n, source)
    if kind == "float":
        out = np.full(n, _NAN)
        for idx, values in pieces:
            where = slice(None) if idx is None else idx
            if money:  # (no None test: Decimal == None is slow, abc instance checks)
                out[where] = _money(values)
            elif not _all_none(values):
                out[where] = np.fromiter(values, dtype=np.float64, count=len(values))
        return out
    if kind == "int":
        ints = np.zeros(n, dtype=np.int64)
        missing = np.ones(n, dtype=bool)
        for idx, values in pieces:
            where = slice(None) if idx is None else idx
            if _all_none(values):
                continue
            try:
                ints[where] = np.fromiter(values, dtype=np.int64, count=len(values))
                missing[where] = False
            except TypeError:  # None among the values
                arr = np.fromiter(values, dtype=object, count=len(values))
                none = np.equal(arr, None)
                arr[none] = 0
                ints[where] = arr.astype(np.int64)
                missing[where] = none
        return pd.arrays.IntegerArray(ints, missing)
    out = np.empty(n, dtype=object)  # object columns start as None
    for idx, values in pieces:
        out[slice(None) if idx is None else idx] = np.fromiter(values, dtype=object,
                                                               count=len(values))
    if kind == "bool":
        return pd.array(out, dtype="boolean")
    return pd.Series(out, dtype=object, copy=False).array


def _all_none(values: list[Any]) -> bool:
    """Whether every value is None; cheap unless the first one is (optional fields)."""
    return values[0] is None and values.count(None) == len(values)


_SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "duration_s", "status",
    "agent", "phase", "model", "tool", "input_tokens", "output_tokens", "cached_tokens", "cost",
    "latency_s", "attempt", "wait_s", "category", "breaker_state", "error", "start_ts", "end_ts",
)


def spans_df(spans: Iterable[Span]) -> pd.DataFrame:
    """One row per span, in the order they opened.

    Columns: `trace_id`, `span_id`, `parent_id`, `name`, `kind`, `status` (str);
    `start`, `end` datetime64[ns, UTC] (wall clock; `end` NaT while open);
    `duration_s` float64; `agent`, `phase`, `model`, `tool`, `category`,
    `breaker_state` (CLOSED, OPEN, HALF_OPEN), `error` (str, missing where they do not
    apply);
    `input_tokens`, `output_tokens`, `cached_tokens`, `attempt` Int64; `cost`
    (USD), `latency_s`, `wait_s` (backoff before this attempt), `start_ts`,
    `end_ts` (monotonic s) float64.
    """
    import numpy as np
    import pandas as pd

    spans = list(spans)

    def attr(name: str) -> list[Any]:
        return [s.attributes.get(name) for s in spans]

    def floats(values: list[Any]) -> Any:
        return np.array([_NAN if v is None else float(v) for v in values], dtype=np.float64)

    start = floats([s.start_wall for s in spans])
    end = floats([s.end_wall for s in spans])
    start_ts = floats([s.start for s in spans])
    end_ts = floats([s.end for s in spans])
    data: dict[str, Any] = {
        "trace_id": pd.array([s.trace_id for s in spans], dtype="str"),
        "span_id": pd.array([s.span_id for s in spans], dtype="str"),
        "parent_id": pd.array([s.parent_id for s in spans], dtype="str"),
        "name": pd.array([s.name for s in spans], dtype="str"),
        "kind": pd.array([s.kind for s in spans], dtype="str"),
        "start": pd.to_datetime(start, unit="s", utc=True).as_unit("ns"),
        "end": pd.to_datetime(end, unit="s", utc=True).as_unit("ns"),
        "duration_s": end_ts - start_ts,
        "status": pd.array([s.status for s in spans], dtype="str"),
    }
    for name in ("agent", "phase", "model", "tool"):
        data[name] = pd.array(attr(name), dtype="str")
    for name in ("input_tokens", "output_tokens", "cached_tokens"):
        data[name] = pd.array(attr(name), dtype="Int64")
    data["cost"] = floats(attr("cost"))
    data["latency_s"] = floats(attr("latency"))
    data["attempt"] = pd.array(attr("attempt"), dtype="Int64")
    data["wait_s"] = floats(attr("wait"))
    for name in ("category", "error"):
        data[name] = pd.array(attr(name), dtype="str")
    # states are uppercase everywhere else (CircuitState, the circuit events)
    data["breaker_state"] = pd.array(
        [None if v is None else str(v).upper() for v in attr("breaker_state")], dtype="str")
    data["start_ts"] = start_ts
    data["end_ts"] = end_ts
    return pd.DataFrame(data, columns=list(_SPAN_COLUMNS))


def cost_df(events: Iterable[Event]) -> pd.DataFrame:
    """One row per `llm.completed`, in order: what each model call cost and the running total.

    Columns: `time` datetime64[ns, UTC], `run_id`, `call_id`, `agent`, `phase`,
    `provider`, `model` (str); `input_tokens`, `output_tokens`, `cached_tokens`
    Int64; `cost` float64 (USD); `cumulative_cost` float64 (running total within
    the run); `limit` float64 (the run's budget limit from its latest budget
    event so far, NaN if none).
    """
    import numpy as np
    import pandas as pd

    rows: list[tuple[Any, ...]] = []
    limits: dict[str | None, float] = {}
    totals: dict[str | None, Decimal] = {}
    for event in events:  # in the order given (emission order), runs may come from several buses
        if event.type.startswith("budget."):
            limit = getattr(event, "limit", None)
            if limit is not None:
                limits[event.run_id] = float(limit)
        elif event.type == "llm.completed":
            e: Any = event
            cost = e.cost if e.cost is not None else Decimal(0)
            total = totals[e.run_id] = totals.get(e.run_id, Decimal(0)) + cost
            rows.append((e.wall, e.run_id, e.call_id, e.agent, e.phase, e.provider, e.model,
                         e.input_tokens, e.output_tokens, e.cached_tokens, float(cost),
                         float(total), limits.get(e.run_id, _NAN)))
    cols = list(zip(*rows, strict=True)) if rows else [[] for _ in range(13)]
    data: dict[str, Any] = {
        "time": pd.to_datetime(np.array(cols[0], dtype=np.float64), unit="s",
                               utc=True).as_unit("ns")}
    for i, name in enumerate(("run_id", "call_id", "agent", "phase", "provider", "model"), 1):
        data[name] = pd.array(list(cols[i]), dtype="str")
    for i, name in enumerate(("input_tokens", "output_tokens", "cached_tokens"), 7):
        data[name] = pd.array(list(cols[i]), dtype="Int64")
    for i, name in enumerate(("cost", "cumulative_cost", "limit"), 10):
        data[name] = np.array(cols[i], dtype=np.float64)
    return pd.DataFrame(data)
