"""Frameworks and async streams under a guard: LangChain's ChatOpenAI, AsyncAnthropic."""

from __future__ import annotations

import anthropic
import pytest

from tests.unit.guard.conftest import anthropic_events, model_posts, sse
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body


async def test_langchain_sync_and_async_calls_are_guarded(orch) -> None:
    langchain_openai = pytest.importorskip("langchain_openai")
    body = openai_body("Paris.", prompt_tokens=12, completion_tokens=2, model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server:
        llm = langchain_openai.ChatOpenAI(base_url=server.url + "/v1", api_key="k",
                                          model="gpt-4o-mini", max_tokens=20)
        async with orch.guard(name="chain") as g:
            first = await llm.ainvoke("Capital of France?")
            second = llm.invoke("Capital of France?")  # the sync client, same guard
        llm.root_client.close()
        await llm.root_async_client.close()
    assert first.content == second.content == "Paris."
    assert len(model_posts(server.requests)) == 2
    done = [e for e in g.events if e.type == "llm.completed"]
    assert [(e.input_tokens, e.output_tokens) for e in done] == [(12, 2), (12, 2)]


async def test_an_async_anthropic_stream_is_settled(orch) -> None:
    answer = sse(anthropic_events(["Bon", "jour"], input_tokens=40, output_tokens=3),
                 done=False, named=True)
    with LoopbackServer(lambda r: answer) as server:
        client = anthropic.AsyncAnthropic(base_url=server.url, api_key="k")
        async with orch.guard() as g, client.messages.stream(
                model="claude-haiku", max_tokens=20,
                messages=[{"role": "user", "content": "Say hello in French. " * 8}]
        ) as stream:
            text = await stream.get_final_text()
        await client.close()
    assert text == "Bonjour"
    done = next(e for e in g.events if e.type == "llm.completed")
    assert (done.input_tokens, done.output_tokens) == (40, 3)
    assert g.budget.spent == done.cost > 0
