"""The hub's wire format: what a project may push and what a pull serves.

The record itself is `taskorch_nb.core.pattern_record.PatternRecord` (one
schema for the immune system, this client and the hub); this module adds the
envelopes around it and the hub's limits. Strict pydantic models (no coercion,
no extra keys) for what the hub reads; every limit is a 422 with a reason.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from taskorch_nb.core.pattern_record import (
    MAX_COUNT,
    MAX_EPOCH,
    MAX_MESSAGE_CHARS,
    MAX_PROMPT_CHARS,
    Count,
    Epoch,
    PatternRecord,
    Signature,
    ToolName,
)

#: Largest request body the hub reads by default (bytes); past it: 413.
MAX_BODY_BYTES = 256 * 1024
#: Patterns one push may carry.
MAX_PATTERNS_PER_PUSH = 500
#: Patterns one pull page may return.
MAX_PULL_LIMIT = 1000
DEFAULT_PULL_LIMIT = 500

Trust = Literal["approved", "confirmed", "quarantined"]
ServedTrust = Literal["approved", "confirmed"]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class PushBody(_Strict):
    """`POST /v1/patterns`: a project's current records (re-pushing is idempotent)."""

    patterns: list[PatternRecord] = Field(max_length=MAX_PATTERNS_PER_PUSH)


class PushEnvelope(_Strict):
    """What the hub parses first: the list, each item then judged on its own (`PushBody`
    documents the items; a bad one is rejected alone, the rest are shared)."""

    patterns: list[Any] = Field(max_length=MAX_PATTERNS_PER_PUSH)


class Rejection(BaseModel):
    """One pushed pattern the hub refused, and why."""

    index: int
    """Its position in the push."""
    signature: str | None
    reason: str


class PushResult(BaseModel):
    """What a push did: records accepted, signatures changed, prompts held back, records
    refused (each with its reason)."""

    accepted: int
    changed: int
    quarantined: list[str] = Field(default_factory=list)
    """Signatures whose pushed corrective prompt is held for review."""
    rejected: list[Rejection] = Field(default_factory=list)


class StrategyRecord(BaseModel):
    """One strategy of a served pattern, its record summed over the projects using it."""

    fallback: str | None
    corrective_prompt: str | None
    applied: int
    recovered: int
    source: list[str]
    trust: ServedTrust


class ServedPattern(PatternRecord):
    """A pulled pattern: the record's fields aggregated over projects, with its winning
    strategy first (the hub's own output, so validated leniently)."""

    model_config = ConfigDict(strict=False, extra="forbid", frozen=False)

    occurrences: int = Field(ge=0)
    """Summed over projects (each project's count is capped, the sum is not)."""
    applied: int = Field(ge=0)
    recovered: int = Field(ge=0)
    source: list[str]
    """Projects that contributed to this signature (sorted)."""
    trust: ServedTrust
    """Trust of the winning strategy; quarantined strategies are never served."""
    strategies: list[StrategyRecord]


class PullResult(BaseModel):
    """`GET /v1/patterns`: the patterns changed since `since`, and the cursor to pass next."""

    patterns: list[ServedPattern]
    cursor: str
    has_more: bool


class Health(BaseModel):
    status: Literal["ok"]
    version: str


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    """Every error body: a short `detail` and the `reason` a client can show."""

    detail: str
    reason: str
    errors: list[ErrorItem] = Field(default_factory=list)


__all__ = [
    "DEFAULT_PULL_LIMIT", "MAX_BODY_BYTES", "MAX_COUNT", "MAX_EPOCH", "MAX_MESSAGE_CHARS",
    "MAX_PATTERNS_PER_PUSH", "MAX_PROMPT_CHARS", "MAX_PULL_LIMIT", "Count", "Epoch", "ErrorItem",
    "Health", "PatternRecord", "Problem", "PullResult", "PushBody", "PushEnvelope", "PushResult",
    "Rejection", "ServedPattern", "ServedTrust", "Signature", "StrategyRecord", "ToolName", "Trust",
]
