"""orch.guard() with the real openai and anthropic SDKs against loopback servers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import httpx
import openai
import pytest

from taskorch_nb import Orchestrator, RetryPolicy
from taskorch_nb.core.events import LLMEvent
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.guard import HEADER, intercept
from tests.unit.guard.conftest import (
    anthropic_events,
    model_posts,
    openai_chunks,
    sse,
)
from tests.unit.llm_servers import (
    Answer,
    LoopbackServer,
    anthropic_body,
    closed_port,
    openai_body,
)

#: About 400 tokens by the reservation's estimate: the servers below report fewer.
HI = [{"role": "user", "content": "hi " * 400}]


def _openai(server: LoopbackServer, **options) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="k", **options)


def _cost(orch: Orchestrator, model: str, i: int, o: int, **cache: int) -> Decimal:
    return orch.prices.cost("openai" if model.startswith("gpt") else "anthropic", model,
                            input_tokens=i, output_tokens=o, **cache)


def test_a_sync_call_is_reserved_settled_and_seen(orch) -> None:
    body = openai_body(prompt_tokens=350, completion_tokens=300, model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server, \
            orch.guard(budget=1.0, name="demo") as g:
        answer = _openai(server).chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                         max_tokens=500)
    assert answer.choices[0].message.content == "Hello!"
    expected = _cost(orch, "gpt-4o-mini", 350, 300)
    assert g.budget.spent == expected > 0
    kinds = [e.type for e in g.events if e.type.startswith(("budget.", "llm."))]
    assert kinds == ["budget.approved", "llm.requested", "budget.settled", "llm.completed"]
    done = next(e for e in g.events if e.type == "llm.completed")
    assert (done.input_tokens, done.output_tokens, done.cost) == (350, 300, expected)
    assert done.run_id == g.run_id
    assert done.provider == "openai"
    report = g.report()
    assert report.by_model["gpt-4o-mini"].calls == 1
    assert report.spent == expected
    assert report.breakers == {"openai:gpt-4o-mini": "CLOSED"}
    # the store has them, under the guard's id, like a run's
    stored = [e.type for e in orch.store.events(g.run_id)]
    assert stored[0] == "run.started"
    assert stored[-1] == "run.completed"
    assert "llm.completed" in stored
    assert list(g.events_df()["type"]) == [e.type for e in g.events]


async def test_an_async_call_is_guarded_too(orch) -> None:
    body = anthropic_body(input_tokens=100, output_tokens=40, cache_read=60,
                          model="claude-haiku")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = anthropic.AsyncAnthropic(base_url=server.url, api_key="k")
        async with orch.guard(budget=1.0) as g:
            message = await client.messages.create(model="claude-haiku", max_tokens=64,
                                                   messages=HI)
    assert message.content[0].text == "Hello!"
    assert server.last.path == "/v1/messages"
    done = next(e for e in g.events if e.type == "llm.completed")
    # fresh 100 + cache read 60 = 160 input tokens, 60 of them cached
    assert (done.input_tokens, done.cached_tokens, done.output_tokens) == (160, 60, 40)
    assert done.cost == _cost(orch, "claude-haiku", 160, 40, cached_tokens=60)
    assert g.budget.spent == done.cost


def test_an_openai_stream_asks_for_usage_and_settles_from_it(orch) -> None:
    usage = {"prompt_tokens": 300, "completion_tokens": 3, "total_tokens": 303}
    answer = sse(openai_chunks(["a", "b", "c"], usage=usage))
    with LoopbackServer(lambda r: answer) as server, orch.guard(budget=1.0) as g:
        stream = _openai(server).chat.completions.create(
            model="gpt-4o-mini", messages=HI, max_tokens=20, stream=True)
        assert not any(e.type == "llm.completed" for e in g.events)  # not read yet
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "abc"
    assert server.last.json["stream_options"] == {"include_usage": True}
    done = next(e for e in g.events if e.type == "llm.completed")
    assert (done.input_tokens, done.output_tokens) == (300, 3)
    assert g.budget.spent == _cost(orch, "gpt-4o-mini", 300, 3)
    assert g.report().by_model["gpt-4o-mini"].estimated == 0


async def test_a_stream_without_usage_is_counted_and_marked(orch) -> None:
    answer = sse(openai_chunks(["one", " two", " three", " four"]))  # llama.cpp: no usage
    with LoopbackServer(lambda r: answer) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="k")
        async with orch.guard(budget=1.0) as g:
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, max_tokens=20, stream=True)
            chunks = [c async for c in stream]
    assert len(chunks) == 5
    done = next(e for e in g.events if e.type == "llm.completed")
    assert done.output_tokens == 4  # one per content chunk
    assert done.input_tokens > 0  # the prompt's estimate
    assert g.report().by_model["gpt-4o-mini"].estimated == 1
    assert [e.type for e in g.events].count("usage.estimated") == 1


def test_an_anthropic_stream_settles_from_its_events(orch) -> None:
    answer = sse(anthropic_events(["Hel", "lo"], input_tokens=70, output_tokens=2),
                 done=False, named=True)
    with LoopbackServer(lambda r: answer) as server, orch.guard(budget=1.0) as g:
        client = anthropic.Anthropic(base_url=server.url, api_key="k")
        with client.messages.stream(model="claude-haiku", max_tokens=50,
                                    messages=HI) as stream:
            text = stream.get_final_text()
    assert text == "Hello"
    done = next(e for e in g.events if e.type == "llm.completed")
    assert (done.input_tokens, done.output_tokens) == (70, 2)


def test_the_request_that_would_overspend_is_never_sent(orch) -> None:
    body = openai_body(prompt_tokens=10, completion_tokens=1000, model="gpt-4o")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = _openai(server, max_retries=4)
        def agent() -> None:
            for _ in range(5):  # each call reserves up to 1,000 output tokens ($0.01)
                client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)

        with pytest.raises(openai.APIStatusError) as caught, \
                orch.guard(budget=0.02, name="tight") as g:
            agent()
    assert len(model_posts(server.requests)) == 1  # the second would pass the limit
    error = caught.value
    assert error.status_code == 402
    assert error.response.headers[HEADER] == "budget_exceeded"
    assert "budget exceeded" in str(error.message)
    assert any("stopped the agent" in note for note in error.__notes__)
    report = g.report()
    assert report.spent == _cost(orch, "gpt-4o", 10, 1000) <= Decimal("0.02")
    assert report.refused == {"budget_exceeded": 1}
    assert report.stopped.startswith("budget_exceeded")
    assert [e.type for e in g.events].count("budget.rejected") == 1


def test_an_open_breaker_stops_the_sdks_retries(orch, clock) -> None:
    with LoopbackServer(lambda r: Answer(500, {"error": {"message": "boom"}})) as server:
        client = _openai(server, max_retries=5)
        with orch.guard(budget=1.0) as g:
            with pytest.raises(openai.InternalServerError) as first:
                client.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                               max_tokens=10)
            # the guard made its 3 attempts (2 s, 4 s apart); the SDK retried none
            assert len(model_posts(server.requests)) == 3
            assert first.value.response.headers["x-should-retry"] == "false"
            assert clock.slept == [2.0, 4.0]
            assert orch.circuits["openai:gpt-4o-mini"].state == "OPEN"
            with pytest.raises(openai.InternalServerError) as second:
                client.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                               max_tokens=10)
    assert len(model_posts(server.requests)) == 3  # answered without the network
    assert second.value.status_code == 503
    assert second.value.response.headers[HEADER] == "circuit_open"
    types = [e.type for e in g.events]
    assert types.count("tool.failed") == 3
    assert types.count("retry.scheduled") == 2
    assert "circuit.opened" in types
    assert "pattern.learned" in types
    assert g.budget.spent == 0
    assert g.budget.reserved == 0
    report = g.report()
    assert report.breakers == {"openai:gpt-4o-mini": "OPEN"}
    assert report.patterns == ["openai_gpt_4o_mini_server_error"]


def test_the_sdk_alone_would_have_multiplied_the_attempts() -> None:
    # The baseline the guard removes: outside a guard the same client retries by itself.
    with LoopbackServer(lambda r: Answer(500, {"error": {"message": "boom"}})) as server:
        client = _openai(server, max_retries=2)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=HI, max_tokens=10)
    assert len(model_posts(server.requests)) == 3


def test_a_connection_failure_ends_in_a_status_the_sdk_does_not_retry(orch) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{closed_port()}/v1", api_key="k",
                           max_retries=3)
    policy = RetryPolicy(max_attempts=2, initial_wait=0.5, jitter=0.0)
    with orch.guard(budget=1.0, retry=policy) as g, \
            pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
    assert caught.value.status_code == 502
    assert "after 2 attempt(s)" in caught.value.message
    types = [e.type for e in g.events]
    assert types.count("tool.failed") == 2
    assert types.count("llm.failed") == 1


def test_fallback_model_takes_what_the_budget_cannot_cover(orch) -> None:
    body = openai_body(prompt_tokens=10, completion_tokens=100, model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server, \
            orch.guard(budget=0.005, fallback_model="gpt-4o-mini") as g:
        _openai(server).chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)
    assert server.last.json["model"] == "gpt-4o-mini"  # gpt-4o's worst case is $0.01
    fallback = next(e for e in g.events if e.type == "model.fallback")
    assert fallback.detail["from"] == "gpt-4o"
    assert fallback.detail["to"] == "gpt-4o-mini"
    assert set(g.report().by_model) == {"gpt-4o-mini"}


def test_a_reserve_is_kept_for_the_final_answer(orch) -> None:
    body = openai_body(prompt_tokens=10, completion_tokens=10, model="gpt-4o")
    with LoopbackServer(lambda r: Answer(body=body)) as server, \
            orch.guard(budget=0.015, reserve_final=0.01) as g:
        client = _openai(server)
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)
        assert caught.value.response.headers[HEADER] == "final_reserve"
        with g.final():
            client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)
        with pytest.raises(openai.APIStatusError) as beyond:  # more than the whole budget
            client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2000)
        assert beyond.value.response.headers[HEADER] == "budget_exceeded"
    assert len(model_posts(server.requests)) == 1
    assert g.report().calls == 1


def test_caps_on_requests_and_tool_calls(orch) -> None:
    call = {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    body = openai_body(None, tool_calls=[call, {**call, "id": "t2"}], model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = _openai(server)
        with orch.guard(max_tool_calls=3) as g:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
            with pytest.raises(openai.APIStatusError) as tools:
                client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
        assert tools.value.response.headers[HEADER] == "tool_call_limit"
        assert g.report().tool_calls == 4
        with orch.guard(max_requests=1) as h:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
            with pytest.raises(openai.APIStatusError) as requests:
                client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
        assert requests.value.response.headers[HEADER] == "request_limit"
        assert h.report().requests == 1
    assert len(model_posts(server.requests)) == 3


def test_a_nested_guard_never_exceeds_its_parents_remainder(orch) -> None:
    body = openai_body(prompt_tokens=10, completion_tokens=1000, model="gpt-4o")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = _openai(server)
        with orch.guard(budget=0.025, name="session") as outer:
            client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)
            with orch.guard(budget=1.0, name="phase") as inner:  # asks more than is left
                client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=1000)
                with pytest.raises(openai.APIStatusError) as caught:
                    client.chat.completions.create(model="gpt-4o", messages=HI,
                                                   max_tokens=1000)
    assert "enclosing budget exceeded" in caught.value.message
    one = _cost(orch, "gpt-4o", 10, 1000)
    assert inner.budget.spent == one
    assert outer.budget.spent == 2 * one
    assert outer.report().by_model["gpt-4o"].calls == 2
    assert inner.run_id == outer.run_id
    phases = {e.phase for e in outer.events if isinstance(e, LLMEvent)}
    assert phases == {None, "phase"}
    # the parent's holds are silent: one settlement event per call on the bus
    settled = [e for e in orch.store.events(outer.run_id) if e.type == "budget.settled"]
    assert len(settled) == 2


def test_threads_and_pools_started_inside_are_seen_those_before_are_not(orch) -> None:
    body = openai_body(model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = _openai(server)

        def ask() -> None:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)

        go = threading.Event()
        early = threading.Thread(target=lambda: (go.wait(10), ask()))
        early.start()  # before the block: not seen
        with orch.guard() as g:
            late = threading.Thread(target=ask)
            late.start()
            late.join()
            with ThreadPoolExecutor(2) as pool:
                pool.submit(ask).result()
            go.set()
            early.join()
    assert len(model_posts(server.requests)) == 3
    assert g.report().calls == 2


def test_other_requests_pass_and_the_patch_is_undone(orch) -> None:
    original = httpx.Client.send
    with LoopbackServer(lambda r: Answer(body=openai_body()),
                        get=lambda r: Answer(body={"data": []})) as server:
        with orch.guard() as g:
            assert httpx.Client.send is not original
            assert intercept.installed()
            assert httpx.get(server.url + "/v1/models").json() == {"data": []}
        assert httpx.Client.send is original
        assert not intercept.installed()
        _openai(server).chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
    assert g.report().calls == 0
    assert len(server.gets) == 1


async def test_the_orchestrators_own_calls_are_not_counted_twice() -> None:
    body = openai_body(model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        orch = Orchestrator("openai", "gpt-4o-mini", base_url=server.url + "/v1",
                            api_key="k", store=":memory:")
        try:
            async with orch.guard() as g:
                await orch.complete(HI, max_tokens=5)
                await orch.complete(HI, max_tokens=5)
        finally:
            await orch.aclose()
    assert len(model_posts(server.requests)) == 2
    assert g.report().calls == 0
    assert orch.session_guard.report().calls == 2


def test_a_model_without_a_price_is_refused_before_sending(orch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("the request must not be sent")

    import httpx2

    client = openai.OpenAI(base_url="https://api.example.com/v1", api_key="k",
                           http_client=httpx2.Client(transport=httpx2.MockTransport(handler)))
    with orch.guard() as g, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="no-such-model-x", messages=HI, max_tokens=5)
    assert caught.value.response.headers[HEADER] == "unknown_price"
    assert "no price for model 'no-such-model-x'" in caught.value.message
    assert g.report().refused == {"unknown_price": 1}


def test_bad_options_are_one_line_errors(orch) -> None:
    with pytest.raises(ConfigurationError, match="max_tool_calls"):
        orch.guard(max_tool_calls=0)
    with pytest.raises(ConfigurationError, match="budget"):
        orch.guard(budget=-1)
    with pytest.raises(ConfigurationError, match="fallback_model"):
        orch.guard(fallback_model="")
    g = orch.guard()
    with g:
        pass
    with pytest.raises(ConfigurationError, match="used once"), g:
        pass


def test_spent_retries_go_to_the_fallback_model_and_teach_the_pattern(orch, clock) -> None:
    def answer(request):
        if request.json["model"] == "gpt-4o":
            return Answer(503, {"error": {"message": "overloaded"}})
        return Answer(body=openai_body(prompt_tokens=10, completion_tokens=5,
                                       model="gpt-4o-mini"))

    with LoopbackServer(answer) as server:
        client = _openai(server, max_retries=5)
        with orch.guard(budget=1.0, fallback_model="gpt-4o-mini") as g:
            first = client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
            orch.circuits["openai:gpt-4o"].reset()  # as after its reset timeout
            second = client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=5)
    assert first.model == second.model == "gpt-4o-mini"
    models = [r.json["model"] for r in model_posts(server.requests)]
    # the first call: 3 failed attempts, then the fallback; the second: the known
    # pattern takes the fallback at the first failure
    assert models == ["gpt-4o"] * 3 + ["gpt-4o-mini"] + ["gpt-4o", "gpt-4o-mini"]
    types = [e.type for e in g.events if e.type.startswith("pattern.")]
    assert types == ["pattern.learned", "pattern.applied", "pattern.recovered",
                     "pattern.applied", "pattern.recovered"]
    assert set(g.report().by_model) == {"gpt-4o-mini"}


def test_an_open_breaker_stops_the_anthropic_sdks_retries_too(orch) -> None:
    with LoopbackServer(lambda r: Answer(529, {"type": "error", "error": {
            "type": "overloaded_error", "message": "Overloaded"}})) as server:
        client = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=4)
        with orch.guard(budget=1.0) as g:
            for _ in range(3):
                with pytest.raises(anthropic.APIStatusError):
                    client.messages.create(model="claude-haiku", max_tokens=5, messages=HI)
    assert len(model_posts(server.requests)) == 3  # 3 attempts, then the breaker
    assert g.report().refused == {"circuit_open": 2}


def test_the_guards_calls_make_one_trace_with_a_generation_each(orch) -> None:
    from taskorch_nb.tracing.spans import build_spans

    body = openai_body(prompt_tokens=30, completion_tokens=5, model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server, \
            orch.guard(name="traced") as g:
        for _ in range(2):
            _openai(server).chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                    max_tokens=5)
    spans, _ = build_spans(orch.store.events(g.run_id))
    root = next(s for s in spans if s.kind == "trace")
    generations = [s for s in spans if s.kind == "generation"]
    assert root.name == "guard traced"
    assert root.status == "ok"
    assert [s.name for s in generations] == ["openai:gpt-4o-mini"] * 2
    assert all(s.parent_id == root.span_id for s in generations)
    assert [s.attributes["input_tokens"] for s in generations] == [30, 30]


def test_a_server_that_refuses_stream_options_gets_the_callers_request(orch) -> None:
    def answer(request):
        if "stream_options" in request.json:
            return Answer(400, {"error": {"message": "unknown field stream_options"}})
        return sse(openai_chunks(["a", "b"]))

    with LoopbackServer(answer) as server, orch.guard() as g:
        client = _openai(server)
        for _ in range(2):
            chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=HI,
                                                         max_tokens=5, stream=True))
            assert len(chunks) == 3
    sent = ["stream_options" in r.json for r in model_posts(server.requests)]
    assert sent == [True, False, False]  # learned once per host
    assert g.report().calls == 2
    assert orch.circuits["openai:gpt-4o-mini"].failures == 0


async def test_concurrent_calls_never_overspend_together(orch) -> None:
    import asyncio

    body = openai_body(prompt_tokens=10, completion_tokens=900, model="gpt-4o")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="k")

        async def one() -> str:
            try:
                await client.chat.completions.create(model="gpt-4o", messages=HI,
                                                     max_tokens=1000)
            except openai.APIStatusError as e:
                return e.response.headers[HEADER]
            return "sent"

        async with orch.guard(budget=0.05) as g:  # about five worst cases
            results = await asyncio.gather(*(one() for _ in range(20)))
        await client.close()
    assert g.budget.spent <= Decimal("0.05")
    assert g.budget.reserved == 0
    sent = results.count("sent")
    assert results.count("budget_exceeded") == 20 - sent
    assert sent == len(model_posts(server.requests)) == g.report().calls
    assert 4 <= sent < 20


def test_retry_after_is_honoured_and_a_half_open_probe_closes_the_breaker(orch, clock) -> None:
    answers = [Answer(429, {"error": {"message": "slow down"}}, headers={"retry-after": "7"}),
               Answer(body=openai_body(model="gpt-4o-mini"))]
    with LoopbackServer(lambda r: answers.pop(0) if len(answers) > 1 else answers[0]) as server:
        client = _openai(server, max_retries=0)
        with orch.guard() as g:
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
            assert clock.slept == [7.0]  # the server's Retry-After, not the 2 s backoff
            breaker = orch.breaker("openai:gpt-4o-mini")
            for _ in range(3):
                breaker.record_failure()
            assert breaker.state == "OPEN"
            clock.advance(30.0)  # the reset timeout: the next call is the probe
            client.chat.completions.create(model="gpt-4o-mini", messages=HI, max_tokens=5)
    assert breaker.state == "CLOSED"
    types = [e.type for e in g.events if e.type.startswith("circuit.")]
    # opened by hand outside any call; the probe's transitions belong to the guard's call
    assert types == ["circuit.half_opened", "circuit.closed"]
    assert len(model_posts(server.requests)) == 3
