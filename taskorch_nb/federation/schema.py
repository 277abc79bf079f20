"""The hub's wire format: what a project may push and what a pull serves.

Strict pydantic models (no coercion, no extra keys) because this is where the
product meets input from other projects; every limit here is a 422 with a
reason at the hub, never a silent truncation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Largest request body the hub reads by default (bytes); past it: 413.
MAX_BODY_BYTES = 256 * 1024
#: Patterns one push may carry.
MAX_PATTERNS_PER_PUSH = 500
#: Patterns one pull page may return.
MAX_PULL_LIMIT = 1000
DEFAULT_PULL_LIMIT = 500
#: Counts stay far below 2**63 so sums over projects fit a BIGINT.
MAX_COUNT = 10**12
#: Epoch seconds beyond year 5000 are not timestamps.
MAX_EPOCH = 1e11
MAX_PROMPT_CHARS = 2000
MAX_MESSAGE_CHARS = 500

Trust = Literal["approved", "confirmed", "quarantined"]
ServedTrust = Literal["approved", "confirmed"]

Signature = Annotated[str, Field(pattern=r"^[0-9a-f]{16,64}$", description="lowercase hex")]
ToolName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")
]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Epoch = Annotated[float, Field(ge=0.0, le=MAX_EPOCH, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class PatternRecord(_Strict):
    """One project's current totals for one failure signature and its strategy."""

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


class PushBody(_Strict):
    """`POST /v1/patterns`: a project's current records (re-pushing is idempotent)."""

    patterns: list[PatternRecord] = Field(max_length=MAX_PATTERNS_PER_PUSH)


class PushResult(BaseModel):
    """What a push did: records accepted, signatures changed, prompts held back."""

    accepted: int
    changed: int
    quarantined: list[str] = Field(default_factory=list)
    """Signatures whose pushed corrective prompt is held for review."""


class StrategyRecord(BaseModel):
    """One strategy of a served pattern, its record summed over the projects using it."""

    fallback: str | None
    corrective_prompt: str | None
    applied: int
    recovered: int
    source: list[str]
    trust: ServedTrust


class ServedPattern(BaseModel):
    """A pulled pattern: the aggregate over projects, with its winning strategy first."""

    signature: str
    name: str
    tool: str
    category: str
    status: int | None
    message: str
    fallback: str | None
    corrective_prompt: str | None
    occurrences: int
    applied: int
    recovered: int
    first_seen: float
    last_seen: float
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
