"""Agents against a real OpenAI-compatible server: llama-cpp-python with SmolLM2-135M.

The server is started with the plain command line a user types (no `--chat_format`), so
it refuses the `json_schema` response format, ignores `tools` and holds 4,096 tokens:
the provider must adapt to each. A 135M model writes poor code, so the full workflow may
end FAILED, but only with QC's verdict, never a protocol error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.agents.archetypes import ContextReport
from taskorch_nb.core.events import Event
from taskorch_nb.core.store import Store
from taskorch_nb.engine.run import RunStatus
from taskorch_nb.llm.capabilities import context_overflow, memory_key, refused_feature
from taskorch_nb.llm.openai import OpenAIProvider
from tests.llm_server import N_CTX, LlamaServer

pytestmark = [pytest.mark.llm_server, pytest.mark.slow]

FREE = {"smollm2": {"input": 0, "output": 0}}


class Recording(httpx.AsyncBaseTransport):
    """A real transport that keeps every exchange, to compare with what the run reports."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        self.exchanges.append((request, response))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def chats(self) -> list[tuple[dict[str, Any], httpx.Response]]:
        return [(json.loads(req.content), resp) for req, resp in self.exchanges
                if req.url.path.endswith("/chat/completions")]


def orchestrator(server: LlamaServer, tmp_path: Path, events: list[Event],
                 transport: httpx.AsyncBaseTransport | None = None) -> Orchestrator:
    provider = OpenAIProvider(base_url=server.base_url, api_key="none", timeout=300,
                              transport=transport)
    orch = Orchestrator(provider, model=server.model, prices=FREE,
                        store=str(tmp_path / "taskorch.db"), langfuse=False)
    orch.subscribe(events.append)
    return orch


def test_the_request_shapes_this_server_refuses(llama_server: LlamaServer) -> None:
    """What the provider adapts to, checked on the wire (the closing note's table)."""
    url = llama_server.base_url + "/chat/completions"
    ask = [{"role": "user", "content": "Name a fruit."}]
    base = {"model": llama_server.model, "messages": ask, "max_tokens": 16}
    schema = {"type": "object", "properties": {"fruit": {"type": "string"}},
              "required": ["fruit"]}
    with httpx.Client(timeout=300) as http:
        native = http.post(url, json={**base, "response_format": {
            "type": "json_schema", "json_schema": {"name": "F", "schema": schema}}})
        assert native.status_code == 500
        assert refused_feature(500, native.text, set(base) | {"response_format"}) \
            == "response_format"
        grammar = http.post(url, json={**base, "max_tokens": 64, "response_format": {
            "type": "json_object", "schema": schema}})
        assert grammar.status_code == 200
        null_content = http.post(url, json={**base, "messages": [*ask, {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]}]})
        assert null_content.status_code == 500
        assert refused_feature(500, null_content.text, set(base)) is not None
        tools = [{"type": "function", "function": {"name": "ping", "parameters": {
            "type": "object", "properties": {"x": {"type": "integer"}}}}}]
        for choice in ("auto", "required"):
            plain = http.post(url, json={**base, "tools": tools, "tool_choice": choice})
            assert plain.status_code == 200
            assert not plain.json()["choices"][0]["message"].get("tool_calls"), choice
        too_long = http.post(url, json={**base, "messages": [
            {"role": "user", "content": "word " * (N_CTX + 500)}]})
        assert too_long.status_code == 400
        assert context_overflow(400, too_long.text) == (True, N_CTX)


async def test_single_researcher_run_completes_with_valid_output_and_server_tokens(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    events: list[Event] = []
    transport = Recording()
    with orchestrator(llama_server, tmp_path, events, transport) as orch:
        run = await orch.run("Explain in one sentence what a stack data structure is.",
                             workflow="single", archetype="researcher",
                             workspace=str(tmp_path / "ws"))
        await orch.provider.aclose()
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.output is not None
    report = ContextReport.model_validate_json(run.output)
    assert report.summary.strip()
    assert [e for e in events if e.type == "llm.failed"] == []
    served = [resp.json()["usage"] for _, resp in transport.chats() if resp.status_code == 200]
    completed = [e for e in events if e.type == "llm.completed"]
    assert sum(e.input_tokens for e in completed) == sum(u["prompt_tokens"] for u in served) > 0
    assert sum(e.output_tokens for e in completed) \
        == sum(u["completion_tokens"] for u in served) > 0
    # json_schema refused once with a 500, then never asked for again
    kinds = [(body.get("response_format") or {}).get("type") for body, _ in transport.chats()]
    assert kinds[0] == "json_schema"
    assert kinds.count("json_schema") == 1
    adapted = [e.message for e in events if e.type == "model.adapted"]
    assert any("using 'json_object' output" in m for m in adapted), adapted
    store = Store(str(tmp_path / "taskorch.db"))
    try:
        saved = store.load_capabilities()[memory_key(llama_server.base_url, "smollm2")]
    finally:
        store.close()
    assert saved["output_mode"] == "json_object"


async def test_full_workflow_ends_with_research_design_and_a_qc_verdict(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    events: list[Event] = []
    transport = Recording()
    started = time.monotonic()
    with orchestrator(llama_server, tmp_path, events, transport) as orch:
        run = await orch.run("Write a function add(a, b) in calc.py that returns a + b.",
                             workflow="full", max_rounds=1, workspace=str(tmp_path / "ws"))
        await orch.provider.aclose()
    elapsed = time.monotonic() - started
    done = [e.phase for e in events if e.type == "phase.completed"]
    assert "research" in done
    assert "design" in done
    assert [(e.agent, e.error) for e in events if e.type == "llm.failed"] == []
    qc = [e.type for e in events if e.type in ("qc.passed", "qc.failed")]
    if run.status == RunStatus.FAILED:
        assert qc == ["qc.failed"], run.error
        assert run.error is not None
        assert run.error.startswith("QC did not approve"), run.error
    else:
        assert run.status == RunStatus.COMPLETED
        assert qc == ["qc.passed"]
    completed = [e for e in events if e.type == "llm.completed"]
    chats = transport.chats()
    print(f"\nfull workflow on SmolLM2-135M: {run.status}, {len(completed)} model calls "
          f"({len(chats)} HTTP requests), {sum(e.input_tokens for e in completed)} input + "
          f"{sum(e.output_tokens for e in completed)} output tokens, {elapsed:.1f} s")


async def test_context_window_is_learned_from_the_server_and_the_conversation_fitted(
    llama_server: LlamaServer,
) -> None:
    transport = Recording()
    provider = OpenAIProvider(base_url=llama_server.base_url, api_key="none", timeout=300,
                              transport=transport)
    messages: list[dict] = [{"role": "system", "content": "You summarise files."},
                            {"role": "user", "content": "What do these files hold?"}]
    for i in range(6):
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"c{i}", "name": "read_file", "arguments": {"path": f"notes{i}.txt"}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}",
                         "content": f"note {i}: the meeting moved to Tuesday. " * 150})
    try:
        completion = await provider.complete(messages, model=llama_server.model,
                                             max_tokens=128)
    finally:
        await provider.aclose()
    statuses = [resp.status_code for _, resp in transport.chats()]
    assert statuses == [400, 200]
    assert provider.capabilities.get(llama_server.base_url, "smollm2").context_window == N_CTX
    assert completion.usage.input_tokens + completion.usage.output_tokens <= N_CTX
