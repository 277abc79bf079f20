"""Token and request caps of the budget guard (pydantic-ai's UsageLimits, reserved)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from taskorch_nb.core.budget import BudgetGuard
from taskorch_nb.errors import BudgetExceededError, ConfigurationError


def test_tokens_are_reserved_then_settled_at_what_was_used() -> None:
    events = []
    guard = BudgetGuard("1", max_tokens=1000, on_event=events.append)
    first = guard.reserve("0", tokens=600, requests=1)
    with pytest.raises(BudgetExceededError, match="a call needs up to 500 tokens, 400 of 1,000"):
        guard.reserve("0", tokens=500, requests=1)  # 600 are still reserved
    assert events[-1].type == "usage.rejected"
    guard.commit(first, Decimal(0), tokens=150)
    assert guard.tokens == 150
    second = guard.reserve("0", tokens=500, requests=1)  # fits now: 150 used
    guard.release(second)
    assert guard.tokens == 150
    assert guard.requests == 1


def test_requests_are_capped() -> None:
    guard = BudgetGuard("1", max_requests=2)
    for _ in range(2):
        guard.commit(guard.reserve("0", requests=1), 0)
    with pytest.raises(BudgetExceededError,
                       match="request limit reached: 2 of 2 model requests made"):
        guard.reserve("0", requests=1)
    assert guard.status == "exceeded"
    guard.reserve("0.5", tool="search")  # a tool call is no model request
    guard.extend_usage(requests=1)
    assert guard.max_requests == 3
    assert guard.reserve("0", requests=1).requests == 1


def test_caps_survive_a_checkpoint() -> None:
    guard = BudgetGuard("2", max_tokens=5000, max_requests=10)
    guard.commit(guard.reserve("0.1", tokens=900, requests=1), "0.05", tokens=700)
    restored = BudgetGuard.restored(guard.checkpoint())
    assert (restored.max_tokens, restored.max_requests) == (5000, 10)
    assert (restored.tokens, restored.requests) == (700, 1)
    assert restored.spent == Decimal("0.05")


@pytest.mark.parametrize("bad", [0, -5, 1.5, "many", True])
def test_bad_caps_are_a_clear_error(bad) -> None:
    with pytest.raises(ConfigurationError, match="max_tokens must be a whole number >= 1"):
        BudgetGuard("1", max_tokens=bad)
    with pytest.raises(ConfigurationError, match="max_requests must be a whole number >= 1"):
        BudgetGuard("1", max_requests=bad)
