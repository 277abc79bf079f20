"""The guard's own answers: a request it will not send, answered in the API's error shape.

An exception raised from inside `send` would be retried by the SDK and then wrapped
as a connection error; an HTTP answer is not. So a refusal is a response: status 402
(budget or a cap), 503 (an open breaker), 400 (a model without a price), 502/504 (the
network failed after the guard's retries), with `x-should-retry: false` (which both
SDKs obey) and `x-taskorch-guard: REASON`. The SDK raises its usual status error
(`openai.APIStatusError`, `anthropic.APIStatusError` and their subclasses) carrying
the guard's message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from taskorch_nb.guard import wire

#: The header that names why the guard answered instead of the server.
HEADER = "x-taskorch-guard"


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request was not sent (or not retried), and how to tell the SDK."""

    reason: str
    status: int
    message: str
    kind: str
    retry_after: float | None = None

    def response(self, module: Any, request: Any) -> Any:
        """The answer, as a response of the HTTP stack `module` (httpx or httpx2)."""
        headers = {"content-type": "application/json", "x-should-retry": "false",
                   HEADER: self.reason}
        if self.retry_after is not None:
            headers["retry-after"] = str(max(1, math.ceil(self.retry_after)))
        return module.Response(self.status, headers=headers,
                               content=wire.error_body(self.kind, self.message, self.reason),
                               request=request)


def no_retry(response: Any) -> Any:
    """Tell the SDK not to retry this error: the guard has decided already."""
    response.headers["x-should-retry"] = "false"
    return response


__all__ = ["HEADER", "Refusal", "no_retry"]
