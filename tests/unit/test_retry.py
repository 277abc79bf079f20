from __future__ import annotations

import random

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
from taskorch_nb.testing import http_error

REQ = httpx.Request("GET", "http://x")


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
        (RuntimeError("boom"), "error", True),
        (FileNotFoundError("nope.txt"), "bad_request", False),
        (ValueError("negative"), "bad_request", False),
        (KeyError("k"), "bad_request", False),
    ],
)
def test_classification(exc: BaseException, category: str, transient: bool) -> None:
    failure = classify(exc)
    assert (failure.category, failure.transient) == (category, transient)


def test_retry_after_is_honoured_and_capped() -> None:
    policy = RetryPolicy(max_wait=30.0, jitter=0.0)
    assert policy.wait_for(1, classify(http_error(429, retry_after=7))) == 7.0
    assert policy.wait_for(1, classify(http_error(503, retry_after=500))) == 30.0
    assert policy.wait_for(1, classify(RateLimitError("r", retry_after=2.5))) == 2.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None


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
