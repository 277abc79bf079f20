"""Retry policy and failure classification.

`classify(exc, clock)` decides what a failure is: a *transient* error (timeouts,
connection errors, HTTP 408/425/429 and 5xx but 501/505) is retried and counted
by breakers; a *caller* error (other 4xx, bad arguments) fails at once; any other
exception (`RuntimeError`, `ZeroDivisionError`...) is a *bug* in the tool (category
"error"): trying again cannot fix it, so it is neither retried nor counted by a breaker.
`RetryPolicy.retrying()` builds a fresh tenacity `AsyncRetrying` for one
failing call only: the success path never builds retry machinery.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from taskorch_nb.core.clock import Clock
from taskorch_nb.errors import (
    CapabilityError,
    CircuitOpenError,
    ConfigurationError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    ToolArgumentsError,
)

_NOT_TRANSIENT_5XX = {501, 505}
#: Errors that say the request itself was wrong (a missing file, a bad value, a
#: path outside the sandbox): trying again cannot help.
_CALLER_ERRORS = (ValueError, LookupError, FileNotFoundError, FileExistsError,
                  IsADirectoryError, NotADirectoryError, PermissionError)
_TRANSIENT_4XX = {408, 425, 429}


@dataclass(frozen=True, slots=True)
class Failure:
    """What went wrong, in the terms retries, breakers and the immune system use."""

    category: str
    """timeout | connection | rate_limit | server_error | malformed | client_error |
    capability | bad_arguments | circuit_open | error"""
    transient: bool
    status: int | None = None
    retry_after: float | None = None
    message: str = ""


def _httpx() -> Any:
    # httpx costs ~0.3 s to import; if nobody imported it, no httpx error can exist.
    return sys.modules.get("httpx")


def _status_of(exc: BaseException) -> tuple[int | None, Any]:
    httpx = _httpx()
    if httpx is not None and isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code, exc.response.headers
    if isinstance(exc, ProviderError):
        return exc.status, None
    status = getattr(exc, "status_code", None) or getattr(exc, "status", None)
    if isinstance(status, int) and 100 <= status <= 599:
        return status, getattr(exc, "headers", None)
    return None, None


def parse_retry_after(headers: Any, *, wall: float) -> float | None:
    """Seconds to wait from `retry-after-ms` or `Retry-After` (seconds or an HTTP date), else None.

    `headers` is anything with `.get` (httpx's headers ignore case); `wall` is the
    caller's clock's wall time, so an HTTP date means the same wait in fake time.
    """
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            seconds = float(millis) / 1000.0
        except ValueError:
            seconds = math.nan  # fall through to the standard header
        if math.isfinite(seconds):
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; a zone-less one is read as UTC
            when = when.replace(tzinfo=dt.UTC)
        return max(0.0, when.timestamp() - wall)
    return max(0.0, seconds) if math.isfinite(seconds) else None


def classify(exc: BaseException, clock: Clock) -> Failure:
    """Name the failure and say whether trying again may help (`clock` dates a Retry-After)."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, CircuitOpenError):
        return Failure("circuit_open", False, message=message)
    if isinstance(exc, CapabilityError):  # a refused request shape: whatever the status
        return Failure("capability", False, exc.status, None, message)
    if isinstance(exc, ToolArgumentsError | TypeError):
        return Failure("bad_arguments", False, message=message)
    if isinstance(exc, _CALLER_ERRORS):
        return Failure("bad_request", False, message=message)
    status, headers = _status_of(exc)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None and headers is not None:
        retry_after = parse_retry_after(headers, wall=clock.wall())
    httpx = _httpx()
    if isinstance(exc, ProviderTimeoutError | TimeoutError) or (
        httpx is not None and isinstance(exc, httpx.TimeoutException)
    ):
        return Failure("timeout", True, status, retry_after, message)
    if isinstance(exc, ProviderResponseError):
        return Failure("malformed", True, status, retry_after, message)
    if isinstance(exc, RateLimitError):
        return Failure("rate_limit", True, status or 429, retry_after, message)
    if isinstance(exc, ConnectionError) or (
        httpx is not None and isinstance(exc, httpx.TransportError)
    ):
        return Failure("connection", True, status, retry_after, message)
    if status is not None:
        if status in (408, 504):
            return Failure("timeout", True, status, retry_after, message)
        if status == 429:
            return Failure("rate_limit", True, status, retry_after, message)
        if status in _TRANSIENT_4XX:
            return Failure("client_error", True, status, retry_after, message)
        if status >= 500:
            transient = status not in _NOT_TRANSIENT_5XX
            return Failure("server_error", transient, status, retry_after, message)
        if status >= 400:
            return Failure("client_error", False, status, retry_after, message)
    if isinstance(exc, ProviderError):
        # No status: the request never got an answer (DNS, refused connection).
        return Failure("connection", True, None, retry_after, message)
    return Failure("error", False, status, retry_after, message)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with relative jitter; defaults follow the seed (2 s, 4 s, ...)."""

    max_attempts: int = 3
    initial_wait: float = 2.0
    multiplier: float = 2.0
    max_wait: float = 30.0
    jitter: float = 0.1
    """Each wait is multiplied by a factor in [1 - jitter, 1 + jitter]."""
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError("RetryPolicy.max_attempts must be >= 1")
        if self.initial_wait < 0 or self.max_wait < 0 or self.multiplier < 1:
            raise ConfigurationError("RetryPolicy waits must be >= 0 and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ConfigurationError("RetryPolicy.jitter must be in [0, 1)")

    def wait_for(self, failed_attempt: int, failure: Failure | None = None) -> float:
        """Seconds to wait after the `failed_attempt`-th attempt failed."""
        if failure is not None and failure.retry_after is not None:
            return min(failure.retry_after, self.max_wait)
        base = min(self.initial_wait * self.multiplier ** (failed_attempt - 1), self.max_wait)
        if self.jitter:
            base *= self.rng.uniform(1 - self.jitter, 1 + self.jitter)
        return min(base, self.max_wait * (1 + self.jitter))

    def retrying(
        self, clock: Clock, *, on_wait: Callable[[int, float, Failure], None]
    ) -> AsyncRetrying:
        """A fresh tenacity controller for attempts 2..max_attempts of one failing call.

        The caller made attempt 1 and waited after it; tenacity owns the rest of
        the loop, sleeping on our clock and retrying only what `classify` calls
        transient. `on_wait(next_attempt, seconds, failure)` reports each wait.
        """

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            failure = classify(exc, clock) if exc is not None else None
            failed_attempt = state.attempt_number + 1
            if failed_attempt >= self.max_attempts:
                return 0.0  # tenacity asks for a wait before it checks stop: nothing to report
            seconds = self.wait_for(failed_attempt, failure)
            if failure is not None:
                on_wait(failed_attempt + 1, seconds, failure)
            return seconds

        def transient(exc: BaseException) -> bool:
            # tenacity catches BaseException: a cancellation (a caller's deadline, a
            # cancelled run) must end the loop, not be retried as an unknown error.
            return isinstance(exc, Exception) and classify(exc, clock).transient

        return AsyncRetrying(
            stop=stop_after_attempt(max(1, self.max_attempts - 1)),
            wait=wait,
            retry=retry_if_exception(transient),
            sleep=clock.sleep,
            reraise=True,
        )
