"""The immune system's patterns as a pandas DataFrame (learned and federated alike).

pandas is imported inside the function so `import taskorch_nb` stays light.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_NAN = math.nan

_PATTERN_STR = ("name", "signature", "tool", "category", "fallback", "corrective_prompt",
                "source")
_PATTERN_INT = ("occurrences", "applied", "recovered")
_PATTERN_BOOL = ("known", "demoted")


def patterns_df(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per failure pattern (learned or federated).

    Columns: `name`, `signature`, `tool`, `category`, `fallback`,
    `corrective_prompt` (also read from a `prompt` key), `source`, `approval` (pending,
    approved, rejected: the decision on a federated text; <NA> for our own), `approved_by` (str);
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
    for name in ("approval", "approved_by"):
        data[name] = pd.array(col(name), dtype="str")
    for name in _PATTERN_BOOL:
        data[name] = pd.array(col(name), dtype="boolean")
    extra = dict.fromkeys(k for r in records for k in r)
    for name in extra:
        if name not in data and name != "prompt":
            data[name] = pd.Series(col(name), dtype=object)
    return pd.DataFrame(data)
