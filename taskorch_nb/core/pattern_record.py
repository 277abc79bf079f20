"""The pattern record: one project's totals for one failure signature and its strategy.

Defined once, here at the ground floor, because three parties read it: the
immune system writes it (`Pattern.wire`), the federation client pushes it, and
the hub validates it (422 with a reason), stores it (its SQL columns come from
these fields) and serves aggregates of it. Strict pydantic (no coercion, no
extra keys): this is where the product meets input from other projects, and
every limit is a refusal with a reason, never a silent truncation at the hub.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from taskorch_nb.core.toolname import MAX_TOOL_NAME, TOOL_NAME_RE, check_tool_name

#: Counts stay far below 2**63 so sums over projects fit a BIGINT.
MAX_COUNT = 10**12
#: Epoch seconds beyond year 5000 are not timestamps.
MAX_EPOCH = 1e11
MAX_PROMPT_CHARS = 2000
MAX_MESSAGE_CHARS = 500

# max_length only sizes the column: the pattern is what refuses (and names the reason).
Signature = Annotated[
    str, Field(max_length=64, pattern=r"^[0-9a-f]{16,64}$", description="lowercase hex")
]
# The rule is `check_tool_name`, the orchestrator's own (so both give the same reason);
# the schema states it for readers and sizes the hub's column.
ToolName = Annotated[str, AfterValidator(check_tool_name), WithJsonSchema(
    {"type": "string", "maxLength": MAX_TOOL_NAME, "pattern": f"^{TOOL_NAME_RE.pattern}$"})]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Epoch = Annotated[float, Field(ge=0.0, le=MAX_EPOCH, allow_inf_nan=False)]


class PatternRecord(BaseModel):
    """One project's current totals for one failure signature and its strategy."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    signature: Signature
    name: str = Field(min_length=1, max_length=120, pattern=r"^[a-z0-9_]+$")
    tool: ToolName
    category: str = Field(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_.\-]+$")
    status: int | None = Field(default=None, ge=0, le=999)
    message: str = Field(default="", max_length=MAX_MESSAGE_CHARS)
    """The error text with numbers, ids, URLs and quoted values masked."""
    fallback: ToolName | None = None
    corrective_prompt: str | None = Field(default=None, min_length=1, max_length=MAX_PROMPT_CHARS)
    occurrences: Count = 0
    applied: Count = 0
    recovered: Count = 0
    first_seen: Epoch
    last_seen: Epoch

    @model_validator(mode="after")
    def _consistent(self) -> PatternRecord:
        if self.recovered > self.applied:
            raise ValueError("recovered must not exceed applied")
        if self.first_seen > self.last_seen:
            raise ValueError("first_seen must not be after last_seen")
        return self


#: Every field of the record, in wire order.
RECORD_FIELDS: tuple[str, ...] = tuple(PatternRecord.model_fields)
#: The roles the fields play when records are merged.
STRATEGY = ("fallback", "corrective_prompt")
COUNTS = ("occurrences", "applied", "recovered")
SEEN = ("first_seen", "last_seen")
DESCRIPTIVE = tuple(f for f in RECORD_FIELDS if f not in ("signature", *STRATEGY, *COUNTS, *SEEN))


def _max_lengths() -> dict[str, int]:
    """Each text field's length limit, read from the schema."""
    limits: dict[str, int] = {}
    for name, spec in PatternRecord.model_json_schema()["properties"].items():
        for option in spec.get("anyOf", [spec]):
            if "maxLength" in option:
                limits[name] = option["maxLength"]
    return limits


MAX_LENGTHS = _max_lengths()


def record_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The record's fields from a mapping (an object's fields), descriptive texts cut to
    their limits.

    A local tool name or message may be longer than the hub accepts; the cut keeps
    the pattern shareable. The strategy is never altered (its text is its identity
    at the hub); everything else is left for the hub to judge.
    """
    out: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        if name not in values:
            continue
        value = values[name]
        limit = MAX_LENGTHS.get(name) if name in DESCRIPTIVE else None
        if limit is not None and isinstance(value, str):
            value = value[:limit]
        out[name] = value
    return out


def add_counts(stored: Mapping[str, Any], record: Mapping[str, Any],
               added: Mapping[str, int]) -> dict[str, Any]:
    """`record` as it replaces `stored` when several processes update one pattern: the
    counts are the stored ones plus what this writer `added` since it last saw them,
    the dates span both, and everything else (strategy, approval) is the writer's."""
    merged = dict(record)
    for name in COUNTS:
        merged[name] = int(stored.get(name) or 0) + int(added.get(name, 0))
    firsts = [v for v in (stored.get("first_seen"), record.get("first_seen")) if v]
    if firsts:
        merged["first_seen"] = min(firsts)
    merged["last_seen"] = max(stored.get("last_seen") or 0.0, record.get("last_seen") or 0.0)
    return merged


__all__ = [
    "COUNTS", "DESCRIPTIVE", "MAX_COUNT", "MAX_EPOCH", "MAX_LENGTHS", "MAX_MESSAGE_CHARS",
    "MAX_PROMPT_CHARS", "RECORD_FIELDS", "SEEN", "STRATEGY", "Count", "Epoch", "PatternRecord",
    "Signature", "ToolName", "add_counts", "record_values",
]
