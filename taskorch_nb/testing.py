"""Test doubles for taskorch_nb users and for our own tests (public API).

`FakeClock` makes 30 s breaker timeouts pass in microseconds; `http_error`
and `FlakyTool` script the failures a real API produces, so you can test your
own agents without a network and without `unittest.mock`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx

from taskorch_nb.core.clock import FakeClock

__all__ = ["FakeClock", "FlakyTool", "http_error"]


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
