"""Test doubles for taskorch_nb users and for our own tests (public API).

`FakeClock` makes 30 s breaker timeouts pass in microseconds; `http_error`
and `FlakyTool` script the failures a real API produces, so you can test your
own agents without a network and without `unittest.mock`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

from taskorch_nb.core.clock import FakeClock
from taskorch_nb.core.pricing import PriceTable
from taskorch_nb.llm.faults import FaultPlan
from taskorch_nb.llm.simulated import ScriptedResponder, SimReply, SimRequest, SimulatedProvider

__all__ = [
    "FakeClock",
    "FaultPlan",
    "FlakyTool",
    "NaiveOutcome",
    "ScriptedResponder",
    "SimReply",
    "SimRequest",
    "SimulatedProvider",
    "http_error",
    "naive_retry_agent",
]


def http_error(status: int, *, url: str = "https://api.example/search",
               retry_after: float | None = None, text: str | None = None) -> httpx.HTTPStatusError:
    """The exception httpx raises for an HTTP error answer (`raise_for_status`)."""
    request = httpx.Request("GET", url)
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    response = httpx.Response(status, request=request, headers=headers, text=text or "")
    phrase = response.reason_phrase
    return httpx.HTTPStatusError(f"{status} {phrase}", request=request, response=response)


class FlakyTool:
    """An async tool that fails as scripted, then answers: `FlakyTool([504, 504], "ok")`.

    Each item of `failures` is an HTTP status (raised as `http_error`) or an
    exception instance; after them every call returns `result(**kwargs)` (or
    `result` itself when it is not callable). `calls` records the arguments.
    """

    def __init__(self, failures: Iterable[int | BaseException] = (),
                 result: Any = "ok", *, always: int | BaseException | None = None) -> None:
        self.failures = list(failures)
        self.always = always
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def _next_error(self) -> BaseException | None:
        if self.failures:
            item = self.failures.pop(0)
        elif self.always is not None:
            item = self.always
        else:
            return None
        return http_error(item) if isinstance(item, int) else item

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        error = self._next_error()
        if error is not None:
            raise error
        result = self.result
        return result(**kwargs) if callable(result) else result


@dataclass
class NaiveOutcome:
    """What the naive agent cost before it gave up (or succeeded)."""

    iterations: int
    model_calls: int
    tool_calls: int
    cost: Decimal
    succeeded: bool


async def naive_retry_agent(
    provider: Any,
    prices: PriceTable,
    tool: Callable[..., Awaitable[Any]],
    *,
    task: str,
    model: str = "sim-small",
    tool_cost: Decimal = Decimal("0"),
    max_iterations: int = 100,
    **arguments: Any,
) -> NaiveOutcome:
    """The agent without taskorch_nb (seed flow 7's "old agent"): ask the model, call the
    tool, and on failure retry at once, with no backoff, no breaker and no budget.

    Bounded by `max_iterations` only so that tests end; the real thing is not.
    """
    cost = Decimal("0")
    messages = [{"role": "user", "content": f"{task}: call the search tool"}]
    for iteration in range(1, max_iterations + 1):
        completion = await provider.complete(messages, model=model, max_tokens=256)
        usage = completion.usage
        cost += prices.cost(provider.price_provider, model, input_tokens=usage.input_tokens,
                            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
                            cache_write_tokens=usage.cache_write_tokens)
        cost += tool_cost
        try:
            await tool(**arguments)
        except Exception:  # the naive agent's whole strategy: try again, immediately
            continue
        return NaiveOutcome(iteration, iteration, iteration, cost, True)
    return NaiveOutcome(max_iterations, max_iterations, max_iterations, cost, False)
