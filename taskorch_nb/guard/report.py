"""What a guard saw: spend by model, calls, refusals, breakers and patterns."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from taskorch_nb.core.display import mimebundle
from taskorch_nb.core.money import format_usd


@dataclass(slots=True)
class ModelUse:
    """The calls of one model inside a guard."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    estimated: int = 0
    """Calls whose tokens the guard counted itself (a stream without usage)."""
    cost: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class GuardReport:
    """The guard's result: `%%orchestrate --guard` shows it, `taskorch-nb guard` prints it."""

    name: str
    spent: Decimal
    limit: Decimal
    remaining: Decimal
    calls: int
    requests: int
    tool_calls: int
    by_model: dict[str, ModelUse] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    """Requests the guard answered itself, by reason (budget_exceeded, circuit_open, ...)."""
    stopped: str | None = None
    """The first refusal's message: why the agent was stopped, if it was."""
    breakers: dict[str, str] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        return sum(u.input_tokens + u.output_tokens for u in self.by_model.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (amounts as float USD)."""
        return {
            "name": self.name, "spent": float(self.spent), "limit": float(self.limit),
            "remaining": float(self.remaining), "calls": self.calls,
            "requests": self.requests, "tool_calls": self.tool_calls, "tokens": self.tokens,
            "by_model": {m: {"calls": u.calls, "input_tokens": u.input_tokens,
                             "output_tokens": u.output_tokens, "estimated": u.estimated,
                             "cost": float(u.cost)} for m, u in self.by_model.items()},
            "refused": dict(self.refused), "stopped": self.stopped,
            "breakers": dict(self.breakers), "patterns": list(self.patterns),
        }

    def __str__(self) -> str:
        lines = [f"Guard {self.name!r}: {format_usd(self.spent)} of {format_usd(self.limit)} "
                 f"({format_usd(self.remaining)} left), {self.calls} calls, "
                 f"{self.tokens:,} tokens, {self.tool_calls} tool calls"]
        for model, use in sorted(self.by_model.items(), key=lambda kv: (-kv[1].cost, kv[0])):
            counted = f", {use.estimated} counted from the stream" if use.estimated else ""
            lines.append(f"  {model}: {use.calls} calls, {use.input_tokens:,} in / "
                         f"{use.output_tokens:,} out, {format_usd(use.cost)}{counted}")
        if self.refused:
            lines.append("  refused: " + ", ".join(f"{r} x{n}" for r, n in
                                                   sorted(self.refused.items())))
        if self.stopped:
            lines.append(f"  stopped: {self.stopped}")
        if self.breakers:
            lines.append("  breakers: " + ", ".join(f"{k} {v}" for k, v in
                                                    sorted(self.breakers.items())))
        if self.patterns:
            lines.append("  patterns: " + ", ".join(self.patterns))
        return "\n".join(lines)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return mimebundle(self, str(self), include, exclude)


__all__ = ["GuardReport", "ModelUse"]
