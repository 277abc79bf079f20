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
#: A pattern's trust, lowest first (`core.immune.Pattern.trust`).
TRUST_LEVELS = ("local", "approved", "confirmed")
#: The hub's view of a federated pattern (`Pattern.remote`), one typed column each.
_REMOTE_INT = ("occurrences", "applied", "recovered")


def patterns_df(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per failure pattern (learned or federated).

    Columns: `name`, `signature`, `tool`, `category`, `fallback`,
    `corrective_prompt` (also read from a `prompt` key), `source`, `approval` (pending,
    approved, rejected: the decision on a federated text; <NA> for our own), `approved_by` (str);
    `occurrences`, `applied`, `recovered` Int64; `first_seen`, `last_seen`
    datetime64[ns, UTC] (from epoch seconds); `known`, `demoted` boolean; `status`
    Int64 (HTTP), `message` str (the masked text, its leading "<n>" read back as the
    status), `trust` category (local < approved < confirmed); the hub's view in
    `remote_occurrences`, `remote_applied`, `remote_recovered` Int64, `remote_projects`
    str ("a, b"), `remote_apply_fallback` boolean; then any other keys the records
    carry (object). Missing keys are <NA>.
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
        return pd.to_datetime(values, unit="s", utc=True).as_unit("ns")

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
    if any(k in r for r in records for k in ("status", "message", "trust", "remote")):
        data.update(_described(records))
    extra = dict.fromkeys(k for r in records for k in r)
    for name in extra:
        if name not in data and name not in ("prompt", "remote"):
            data[name] = pd.Series(col(name), dtype=object)
    return pd.DataFrame(data)


def _readable(message: Any, status: Any) -> Any:
    """The masked message with its leading number read back: "<n> Gateway Timeout" and
    status 504 give "504 Gateway Timeout" (the mask is for the signature, not for people)."""
    if not isinstance(message, str):
        return None
    if isinstance(status, int) and message.startswith("<n>"):
        return f"{status}{message[3:]}"
    return message


def _described(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The status, message, trust and hub columns, typed."""
    import pandas as pd

    status = [r.get("status") if isinstance(r.get("status"), int) else None for r in records]
    remote = [r.get("remote") or {} for r in records]
    data: dict[str, Any] = {
        "status": pd.array(status, dtype="Int64"),
        "message": pd.array([_readable(r.get("message"), s)
                             for r, s in zip(records, status, strict=True)], dtype="str"),
        "trust": pd.Categorical([r.get("trust") for r in records], categories=TRUST_LEVELS,
                                ordered=True),
    }
    for name in _REMOTE_INT:
        data[f"remote_{name}"] = pd.array([m.get(name) for m in remote], dtype="Int64")
    data["remote_projects"] = pd.array(
        [", ".join(map(str, m["projects"])) if "projects" in m else None for m in remote],
        dtype="str")
    data["remote_apply_fallback"] = pd.array([m.get("apply_fallback") for m in remote],
                                             dtype="boolean")
    return data
