"""The drivers: a request that is not a model call passes; an unreadable one is refused."""

from __future__ import annotations

import httpx

from taskorch_nb.guard import drive
from taskorch_nb.guard.refusal import HEADER


def test_other_requests_are_sent_untouched(orch) -> None:
    sent = []
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/models")
    with orch.guard() as g:
        answer = drive.handle(g, httpx, request,
                              lambda r: sent.append(r) or httpx.Response(200), stream=False)
    assert sent == [request]
    assert answer.status_code == 200
    assert g.report().calls == 0


def test_an_unreadable_model_request_is_refused_unsent(orch) -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", content=b"{")
    with orch.guard() as g:
        answer = drive.handle(g, httpx, request, lambda r: 1 / 0, stream=False)
    assert answer.status_code == 400
    assert answer.headers[HEADER] == "unreadable"


async def test_the_async_driver_retries_on_the_clock(orch, clock) -> None:
    answers = [httpx.Response(503), httpx.Response(200, json={
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1}})]

    async def send(request: httpx.Request) -> httpx.Response:
        return answers.pop(0)

    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions",
                            json={"model": "gpt-4o-mini", "max_tokens": 5, "messages": []})
    async with orch.guard() as g:
        answer = await drive.ahandle(g, httpx, request, send, stream=False)
    assert answer.status_code == 200
    assert clock.slept == [2.0]
    assert [e.type for e in g.events].count("retry.scheduled") == 1


def test_local_hosts_are_known_once_per_host() -> None:
    assert drive._local("127.0.0.1") is True
    assert drive._local("::1") is True
    assert drive._local("localhost") is True
    assert drive._local("api.openai.com") is False
