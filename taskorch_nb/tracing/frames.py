"""pandas DataFrames of events, spans, costs and patterns, for post-mortems and charts.

pandas is imported inside each function so `import taskorch_nb` stays light.
Columns are built straight from the events' slots, one typed array per field
(not through a list of row dicts), so a million events become a frame in
about a second.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from taskorch_nb.core.events import Event
from taskorch_nb.tracing.spans import Span

if TYPE_CHECKING:
    import pandas as pd

#: Event fields holding money (Decimal); they become float64 columns.
MONEY_FIELDS = frozenset({"amount", "spent", "reserved", "limit", "remaining", "cost"})

_BASE = ("seq", "time", "ts", "type", "kind", "run_id")
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

    Columns: `seq` int64, `time` datetime64[UTC] (from `wall`), `ts` float64
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

    seq = np.fromiter(map(attrgetter("seq"), events), dtype=np.int64, count=n)
    if n > 1 and not bool((seq[1:] >= seq[:-1]).all()):
        order = np.argsort(seq, kind="stable")
        events = _objects(events, n)[order].tolist()
        seq = seq[order]

    classes = list(map(type, events))
    kinds = {cls: i for i, cls in enumerate(dict.fromkeys(classes))}
    if len(kinds) == 1:
        codes = np.zeros(n, dtype=np.int32)
    else:
        codes = np.fromiter(map(kinds.__getitem__, classes), dtype=np.int32, count=n)
    del classes

    # the type of each column, from the fields of every event class present
    dtypes: dict[str, str] = {}
    for cls in kinds:
        for f in dataclasses.fields(cls):
            kind = _field_dtype(f.name, f.type)
            if dtypes.setdefault(f.name, kind) != kind:
                dtypes[f.name] = "object"
    for name in ("seq", "ts", "wall", "type", "run_id"):
        dtypes.pop(name, None)

    class_names = pd.array([cls.__name__ for cls in kinds], dtype="str")
    wall = np.fromiter(map(attrgetter("wall"), events), dtype=np.float64, count=n)
    columns: dict[str, Any] = {
        "seq": seq,
        "time": pd.to_datetime(wall, unit="s", utc=True),
        "ts": np.fromiter(map(attrgetter("ts"), events), dtype=np.float64, count=n),
        "type": _str_column([(None, list(map(attrgetter("type"), events)))], n),
        "kind": class_names.take(codes),
        "run_id": _str_column([(None, list(map(attrgetter("run_id"), events)))], n),
        "wall": wall,
    }

    # each field's values, read per event class (one C-level pass per slot: the
    # fastest way out of slots), then written at that class's rows
    pieces: dict[str, list[tuple[Any, list[Any]]]] = {name: [] for name in dtypes}
    if len(kinds) == 1:
        groups: Any = [(next(iter(kinds)), None, events)]
    else:
        objects = _objects(events, n)
        groups = []
        for cls, code in kinds.items():
            idx = np.flatnonzero(codes == code)
            groups.append((cls, idx, objects[idx].tolist()))
        del objects
    for cls, idx, group in groups:
        for f in dataclasses.fields(cls):
            if f.name in pieces:
                pieces[f.name].append((idx, list(map(attrgetter(f.name), group))))
    del groups

    for name, kind in dtypes.items():
        columns[name] = _column(kind, pieces.pop(name), n, money=name in MONEY_FIELDS)
    return pd.DataFrame(columns, copy=False)


def _objects(items: list[Any], n: int) -> Any:
    """An object ndarray of the items (fromiter: np.array would probe each for sequences)."""
    import numpy as np

    return np.fromiter(items, dtype=object, count=n)


def _floats(values: list[Any], money: bool) -> Any:
    """float64 values (None -> NaN); Decimals through a table of distinct values when repeated.

    `float(Decimal)` formats and parses a string (~0.3 us); budget limits and
    prices repeat, so converting each distinct value once is several times faster.
    """
    import numpy as np

    m = len(values)
    if money:
        distinct = dict.fromkeys(values)
        if len(distinct) * 4 <= m:
            table = {v: _NAN if v is None else float(v) for v in distinct}
            return np.fromiter(map(table.__getitem__, values), dtype=np.float64, count=m)
        return np.fromiter(values, dtype=object, count=m).astype(np.float64)
    try:
        return np.fromiter(values, dtype=np.float64, count=m)
    except TypeError:  # None among the values
        return np.fromiter(values, dtype=object, count=m).astype(np.float64)


def _str_column(pieces: list[tuple[Any, list[Any]]], n: int) -> Any:
    """A str column (NaN where missing) from the (positions, values) pieces.

    The values go straight into the object array a python-backed str column
    holds, None replaced by NaN, and are validated once in C; pieces that are
    all None are skipped (the column starts as NaN).
    """
    import numpy as np
    import pandas as pd

    out = np.full(n, _NAN, dtype=object)
    for idx, values in pieces:
        m = len(values)
        nones = values.count(None)
        if nones == m:
            continue
        arr = np.fromiter(values, dtype=object, count=m)
        if nones:
            arr[np.equal(arr, None)] = _NAN
        out[slice(None) if idx is None else idx] = arr
    dtype = pd.StringDtype(na_value=_NAN)
    if dtype.storage == "python":
        try:
            return pd.arrays.StringArray(out, dtype=dtype)
        except ValueError:  # not all str (a subclass's field holds numbers): convert
            pass
    return pd.array(out, dtype=dtype)


def _column(kind: str, pieces: list[tuple[Any, list[Any]]], n: int, *, money: bool) -> Any:
    """One typed column from the (positions, values) pieces of each event class."""
    import numpy as np
    import pandas as pd

    if kind == "str":
        return _str_column(pieces, n)
    if kind == "float":
        out = np.full(n, _NAN)
        for idx, values in pieces:
            # Decimal == None is slow (abc checks), so money skips the all-None test
            if money or values.count(None) != len(values):
                out[slice(None) if idx is None else idx] = _floats(values, money)
        return out
    if kind == "int":
        ints = np.zeros(n, dtype=np.int64)
        missing = np.ones(n, dtype=bool)
        for idx, values in pieces:
            where = slice(None) if idx is None else idx
            nones = values.count(None)
            if nones == len(values):
                continue
            if nones:
                missing[where] = np.array([v is None for v in values], dtype=bool)
                ints[where] = np.array([0 if v is None else v for v in values], dtype=np.int64)
            else:
                missing[where] = False
                ints[where] = np.fromiter(values, dtype=np.int64, count=len(values))
        return pd.arrays.IntegerArray(ints, missing)
    out = np.empty(n, dtype=object)  # object columns start as None
    for idx, values in pieces:
        out[slice(None) if idx is None else idx] = np.fromiter(values, dtype=object,
                                                               count=len(values))
    if kind == "bool":
        return pd.array(out, dtype="boolean")
    return pd.Series(out, dtype=object, copy=False).array


_SPAN_COLUMNS = (
    "trace_id", "span_id", "parent_id", "name", "kind", "start", "end", "duration_s", "status",
    "agent", "phase", "model", "tool", "input_tokens", "output_tokens", "cached_tokens", "cost",
    "latency_s", "attempt", "wait_s", "category", "breaker_state", "error", "start_ts", "end_ts",
)


def spans_df(spans: Iterable[Span]) -> pd.DataFrame:
    """One row per span, in the order they opened.

    Columns: `trace_id`, `span_id`, `parent_id`, `name`, `kind`, `status` (str);
    `start`, `end` datetime64[UTC] (wall clock; `end` NaT while open);
    `duration_s` float64; `agent`, `phase`, `model`, `tool`, `category`,
    `breaker_state`, `error` (str, missing where they do not apply);
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
        "start": pd.to_datetime(start, unit="s", utc=True),
        "end": pd.to_datetime(end, unit="s", utc=True),
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
    for name in ("category", "breaker_state", "error"):
        data[name] = pd.array(attr(name), dtype="str")
    data["start_ts"] = start_ts
    data["end_ts"] = end_ts
    return pd.DataFrame(data, columns=list(_SPAN_COLUMNS))


def cost_df(events: Iterable[Event]) -> pd.DataFrame:
    """One row per `llm.completed`, in order: what each model call cost and the running total.

    Columns: `time` datetime64[UTC], `run_id`, `call_id`, `agent`, `phase`,
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
        "time": pd.to_datetime(np.array(cols[0], dtype=np.float64), unit="s", utc=True)}
    for i, name in enumerate(("run_id", "call_id", "agent", "phase", "provider", "model"), 1):
        data[name] = pd.array(list(cols[i]), dtype="str")
    for i, name in enumerate(("input_tokens", "output_tokens", "cached_tokens"), 7):
        data[name] = pd.array(list(cols[i]), dtype="Int64")
    for i, name in enumerate(("cost", "cumulative_cost", "limit"), 10):
        data[name] = np.array(cols[i], dtype=np.float64)
    return pd.DataFrame(data)


_PATTERN_STR = ("name", "signature", "tool", "category", "fallback", "corrective_prompt",
                "source")
_PATTERN_INT = ("occurrences", "applied", "recovered")
_PATTERN_BOOL = ("known", "demoted")


def patterns_df(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per failure pattern (learned or federated).

    Columns: `name`, `signature`, `tool`, `category`, `fallback`,
    `corrective_prompt` (also read from a `prompt` key), `source` (str);
    `occurrences`, `applied`, `recovered` Int64; `first_seen`, `last_seen`
    datetime64[UTC] (from epoch seconds); `known`, `demoted` boolean; then any
    other keys the records carry (object). Missing keys are <NA>.
    """
    import numpy as np
    import pandas as pd

    records = [dict(r) for r in records]
    for r in records:
        if "corrective_prompt" not in r and "prompt" in r:
            r["corrective_prompt"] = r["prompt"]

    def col(name: str) -> list[Any]:
        return [r.get(name) for r in records]

    def seen(name: str) -> Any:
        values = np.array([_NAN if v is None else float(v) for v in col(name)], dtype=np.float64)
        return pd.to_datetime(values, unit="s", utc=True)

    data: dict[str, Any] = {}
    for name in ("name", "signature", "tool", "category"):
        data[name] = pd.array(col(name), dtype="str")
    data["occurrences"] = pd.array(col("occurrences"), dtype="Int64")
    data["first_seen"] = seen("first_seen")
    data["last_seen"] = seen("last_seen")
    for name in ("fallback", "corrective_prompt"):
        data[name] = pd.array(col(name), dtype="str")
    for name in ("applied", "recovered"):
        data[name] = pd.array(col(name), dtype="Int64")
    data["source"] = pd.array(col("source"), dtype="str")
    for name in _PATTERN_BOOL:
        data[name] = pd.array(col(name), dtype="boolean")
    extra = dict.fromkeys(k for r in records for k in r)
    for name in extra:
        if name not in data and name != "prompt":
            data[name] = pd.Series(col(name), dtype=object)
    return pd.DataFrame(data)
