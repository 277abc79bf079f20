"""A call's decisions: failures named, waits counted, fake time moved on sync paths."""

from __future__ import annotations

import json

import httpx

from taskorch_nb import FakeClock, RetryPolicy
from taskorch_nb.guard import wire
from taskorch_nb.guard.call import Call, blocking_sleep


def _call(guard) -> Call:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 5}
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions",
                            content=json.dumps(body).encode())
    ask = wire.read_ask(wire.OPENAI_CHAT, request.content)
    return Call(guard, ask, request, httpx, local=True)


def test_blocking_sleep_moves_a_fake_clock() -> None:
    clock = FakeClock()
    blocking_sleep(clock, 2.5)
    blocking_sleep(clock, 0)
    assert clock.now() == 2.5
    assert clock.slept == [2.5]


def test_failures_are_named_like_the_orchestrators(orch) -> None:
    with orch.guard() as g:
        call = _call(g)
        request = call.request
        assert call.failure_of(httpx.Response(200, request=request)) is None
        rate = call.failure_of(httpx.Response(429, headers={"retry-after": "7"},
                                              request=request))
        assert (rate.category, rate.transient, rate.retry_after) == ("rate_limit", True, 7.0)
        bad = call.failure_of(httpx.Response(400, request=request))
        assert (bad.category, bad.transient) == ("client_error", False)
        down = call.failure_of(error=httpx.ConnectError("refused"))
        assert (down.category, down.transient) == ("connection", True)
        slow = call.failure_of(error=httpx.ReadTimeout("slow"))
        assert slow.category == "timeout"


def test_waits_follow_the_policy_and_end_with_a_learned_pattern(orch) -> None:
    policy = RetryPolicy(max_attempts=3, initial_wait=1.0, multiplier=3.0, jitter=0.0)
    with orch.guard() as g:
        call = _call(g)
        assert call.admit() is None
        failure = call.failure_of(httpx.Response(503, request=call.request))
        waits = []
        while (wait := call.next_wait(failure, policy)) is not None:
            waits.append(wait)
            assert call.acquire() is None
        call.give_up(failure)
    assert waits == [1.0, 3.0]
    assert [p.name for p in orch.immune.patterns()] == ["openai_gpt_4o_mini_server_error"]
    assert g.budget.reserved == 0


def test_a_rewritten_body_is_sent_with_its_new_length(orch) -> None:
    with orch.guard() as g:
        call = _call(g)
        call.ask.body["model"] = "gpt-4o"
        call.rewritten = True
        sent = call.outgoing()
    assert json.loads(sent.content)["model"] == "gpt-4o"
    assert sent.headers["content-length"] == str(len(sent.content))
