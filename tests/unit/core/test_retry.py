from __future__ import annotations

import random
from email.utils import formatdate

import httpx
import pytest

from taskorch_nb import RetryPolicy
from taskorch_nb.core.retry import classify, parse_retry_after
from taskorch_nb.errors import (
    CircuitOpenError,
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    ToolArgumentsError,
)
from taskorch_nb.testing import FakeClock, http_error

REQ = httpx.Request("GET", "http://x")
CLOCK = FakeClock()


@pytest.mark.parametrize(
    ("exc", "category", "transient"),
    [
        (http_error(504), "timeout", True),
        (http_error(408), "timeout", True),
        (http_error(425), "client_error", True),
        (http_error(429), "rate_limit", True),
        (http_error(500), "server_error", True),
        (http_error(502), "server_error", True),
        (http_error(503), "server_error", True),
        (http_error(501), "server_error", False),
        (http_error(505), "server_error", False),
        (http_error(400), "client_error", False),
        (http_error(401), "client_error", False),
        (http_error(404), "client_error", False),
        (httpx.ReadTimeout("slow", request=REQ), "timeout", True),
        (httpx.ConnectError("refused", request=REQ), "connection", True),
        (TimeoutError(), "timeout", True),
        (ConnectionResetError(), "connection", True),
        (ProviderTimeoutError("t"), "timeout", True),
        (RateLimitError("r", status=429, retry_after=3), "rate_limit", True),
        (ProviderError("x", status=503), "server_error", True),
        (ProviderError("x", status=401), "client_error", False),
        (ProviderResponseError("bad json"), "malformed", True),
        (ToolArgumentsError("t", "bad"), "bad_arguments", False),
        (TypeError("wrong"), "bad_arguments", False),
        (CircuitOpenError("t"), "circuit_open", False),
        (RuntimeError("boom"), "error", False),
        (ZeroDivisionError("division by zero"), "error", False),
        (FileNotFoundError("nope.txt"), "bad_request", False),
        (ValueError("negative"), "bad_request", False),
        (KeyError("k"), "bad_request", False),
    ],
)
def test_classification(exc: BaseException, category: str, transient: bool) -> None:
    failure = classify(exc, CLOCK)
    assert (failure.category, failure.transient) == (category, transient)


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_wait=30.0, jitter=0.0)
    assert policy.wait_for(1, classify(http_error(429, retry_after=7), CLOCK)) == 7.0
    assert policy.wait_for(1, classify(http_error(503, retry_after=500), CLOCK)) == 30.0
    assert policy.wait_for(1, classify(RateLimitError("r", retry_after=2.5), CLOCK)) == 2.5


def test_retry_after_seconds_date_and_millis() -> None:
    wall = FakeClock.EPOCH
    assert parse_retry_after(httpx.Headers({"retry-after": "3"}), wall=wall) == 3.0
    assert parse_retry_after(httpx.Headers({"Retry-After": " 1.5 "}), wall=wall) == 1.5
    date = formatdate(wall + 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": date}), wall=wall) == 30.0
    past = formatdate(wall - 30, usegmt=True)
    assert parse_retry_after(httpx.Headers({"retry-after": past}), wall=wall) == 0.0
    zoneless = formatdate(wall + 10, usegmt=True).replace("GMT", "-0000")
    assert parse_retry_after({"retry-after": zoneless}, wall=wall) == 10.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"}), wall=wall) == 0.25
    assert parse_retry_after({"retry-after-ms": "x", "retry-after": "2"}, wall=wall) == 2.0
    assert parse_retry_after(httpx.Headers({"retry-after": "-4"}), wall=wall) == 0.0
    for unusable in ("soon", "nan", "inf", ""):
        assert parse_retry_after({"retry-after": unusable}, wall=wall) is None
    assert parse_retry_after(httpx.Headers({}), wall=wall) is None


def test_an_http_date_retry_after_is_read_on_the_callers_clock() -> None:
    """The wait is the date minus the clock's wall time, not the machine's: 45 s in fake time."""
    clock = FakeClock(start=100.0)
    date = formatdate(clock.wall() + 45, usegmt=True)
    response = httpx.Response(503, request=REQ, headers={"Retry-After": date})
    exc = httpx.HTTPStatusError("503", request=REQ, response=response)
    assert classify(exc, clock).retry_after == 45.0
    clock.advance(40.0)
    assert classify(exc, clock).retry_after == 5.0


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(jitter=0.0)
    assert [policy.wait_for(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_relative_jitter_bounds() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    first = [policy.wait_for(1) for _ in range(500)]
    second = [policy.wait_for(2) for _ in range(500)]
    assert min(first) >= 1.8
    assert max(first) <= 2.2
    assert min(second) >= 3.6
    assert max(second) <= 4.4
    assert len(set(first)) > 100


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"jitter": 1.0}, {"multiplier": 0.5}, {"initial_wait": -1}]
)
def test_bad_policy_is_a_configuration_error(kwargs) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        RetryPolicy(**kwargs)
