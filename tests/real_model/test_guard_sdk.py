"""orch.guard() around the real `openai` SDK and a LangGraph agent, against llama-cpp-python.

The server reports usage in plain answers and none in streams (shared FACTS): a plain
call's spend and tokens must be the server's own numbers; a stream's are counted.
"""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.guard import HEADER
from tests.llm_server import LlamaServer

pytestmark = pytest.mark.llm_server

#: A price for the local model, so that money moves (a loopback model is free otherwise).
PRICES = {"smollm2": {"input": 100.0, "output": 400.0}}
ASK = [{"role": "user", "content": "Say hello in five words."}]


@pytest.fixture
def orch():
    o = Orchestrator(store=":memory:", prices=PRICES)
    yield o
    o.close()


def test_sync_calls_spend_what_the_server_reported(llama_server: LlamaServer, orch) -> None:
    client = openai.OpenAI(base_url=llama_server.base_url, api_key="local")
    with orch.guard(budget=5.0, name="sync") as g:
        answers = [client.chat.completions.create(model=llama_server.model, messages=ASK,
                                                  max_tokens=16, temperature=0)
                   for _ in range(2)]
    done = [e for e in g.events if e.type == "llm.completed"]
    assert [(e.input_tokens, e.output_tokens) for e in done] == [
        (a.usage.prompt_tokens, a.usage.completion_tokens) for a in answers]
    expected = sum((orch.prices.cost("openai", "smollm2", input_tokens=a.usage.prompt_tokens,
                                     output_tokens=a.usage.completion_tokens)
                    for a in answers), Decimal(0))
    assert g.budget.spent == expected > 0
    client.close()
    assert g.report().by_model["smollm2"].calls == 2
    assert g.report().breakers == {"openai:smollm2": "CLOSED"}


async def test_async_stream_is_counted_when_the_server_sends_no_usage(
        llama_server: LlamaServer, orch) -> None:
    client = openai.AsyncOpenAI(base_url=llama_server.base_url, api_key="local")
    async with orch.guard(budget=5.0, name="stream") as g:
        plain = await client.chat.completions.create(model=llama_server.model, messages=ASK,
                                                     max_tokens=12, temperature=0, seed=1)
        stream = await client.chat.completions.create(model=llama_server.model, messages=ASK,
                                                      max_tokens=12, temperature=0, seed=1,
                                                      stream=True)
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    first, second = [e for e in g.events if e.type == "llm.completed"]
    assert (first.input_tokens, first.output_tokens) == (plain.usage.prompt_tokens,
                                                         plain.usage.completion_tokens)
    # one token per streamed chunk: the same answer, the same count
    assert "".join(pieces) == plain.choices[0].message.content
    assert second.output_tokens == plain.usage.completion_tokens
    # the prompt: the estimate plus the template overhead learned from the plain answer
    assert second.input_tokens == plain.usage.prompt_tokens
    await client.close()
    assert g.report().by_model["smollm2"].estimated == 1


def test_a_budget_stop_comes_before_the_request_that_would_overspend(
        llama_server: LlamaServer, orch) -> None:
    client = openai.OpenAI(base_url=llama_server.base_url, api_key="local", max_retries=3)
    # each call may cost up to ~(30 + 8) input + 64 output tokens at these prices: ~$0.03
    def agent() -> None:
        for _ in range(4):
            client.chat.completions.create(model=llama_server.model, messages=ASK,
                                           max_tokens=64)

    with orch.guard(budget=0.05, name="tight") as g, \
            pytest.raises(openai.APIStatusError) as caught:
        agent()
    client.close()
    assert caught.value.status_code == 402
    assert caught.value.response.headers[HEADER] == "budget_exceeded"
    assert g.budget.spent <= Decimal("0.05")
    # the refused request was never sent: every request that went out was paid
    assert [e.type for e in g.events].count("llm.requested") == g.report().calls >= 1


def test_a_langgraph_agent_inside_a_guard(llama_server: LlamaServer, orch) -> None:
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, MessagesState, StateGraph

    llm = ChatOpenAI(base_url=llama_server.base_url, api_key="local", model=llama_server.model,
                     max_tokens=16, temperature=0)

    def draft(state: MessagesState) -> dict:
        return {"messages": [llm.invoke(state["messages"])]}

    def review(state: MessagesState) -> dict:
        return {"messages": [llm.invoke([*state["messages"],
                                         ("user", "Now say it shorter.")])]}

    graph = StateGraph(MessagesState)
    graph.add_node("draft", draft)
    graph.add_node("review", review)
    graph.add_edge(START, "draft")
    graph.add_edge("draft", "review")
    graph.add_edge("review", END)
    agent = graph.compile()
    with orch.guard(budget=5.0, name="langgraph") as g:
        result = agent.invoke({"messages": [("user", "Say hello in five words.")]})
    llm.root_client.close()
    assert len(result["messages"]) == 3
    frame = g.events_df()
    calls = frame[frame["type"] == "llm.completed"]
    assert list(calls["model"]) == ["smollm2", "smollm2"]
    assert (calls["output_tokens"] > 0).all()
    assert g.report().calls == 2
