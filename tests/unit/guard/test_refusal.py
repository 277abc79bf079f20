"""The guard's own answers: statuses and headers the SDKs obey."""

from __future__ import annotations

import json

import httpx

from taskorch_nb.guard import wire
from taskorch_nb.guard.refusal import HEADER, Refusal, no_retry


def test_a_refusal_is_an_answer_the_sdk_will_not_retry() -> None:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    refusal = Refusal("circuit_open", 503, "circuit open", wire.OPENAI_CHAT, retry_after=2.2)
    response = refusal.response(httpx, request)
    assert response.status_code == 503
    assert response.headers["x-should-retry"] == "false"
    assert response.headers[HEADER] == "circuit_open"
    assert response.headers["retry-after"] == "3"
    assert json.loads(response.content)["error"]["message"] == "circuit open"
    assert response.request is request


def test_no_retry_marks_a_servers_own_error() -> None:
    response = httpx.Response(500, headers={"x-should-retry": "true"})
    assert no_retry(response).headers["x-should-retry"] == "false"
