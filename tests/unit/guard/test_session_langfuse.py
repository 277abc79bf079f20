"""A guard's calls reach Langfuse: one trace per outermost guard, a generation per call."""

from __future__ import annotations

import time

import openai
import pytest

from taskorch_nb import Orchestrator
from taskorch_nb.core.events import Notice
from taskorch_nb.tracing.langfuse import LangfuseExporter
from tests.langfuse_server import FakeLangfuse
from tests.unit.guard.conftest import PRICES
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body

pytest.importorskip("langfuse")


def test_a_guard_is_exported_as_a_trace_with_its_generations() -> None:
    warnings: list[Notice] = []
    body = openai_body(prompt_tokens=9, completion_tokens=4, model="gpt-4o-mini")
    with FakeLangfuse() as langfuse, LoopbackServer(lambda r: Answer(body=body)) as server:
        exporter = LangfuseExporter(public_key=f"pk-guard-{time.monotonic_ns()}",
                                    secret_key="sk-test", base_url=langfuse.url,
                                    on_warning=warnings.append)
        orch = Orchestrator(store=":memory:", prices=PRICES, langfuse=exporter)
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="k")
        with orch.guard(name="exported"):
            for _ in range(2):
                client.chat.completions.create(
                    model="gpt-4o-mini", max_tokens=5,
                    messages=[{"role": "user", "content": "hi " * 10}])
        client.close()
        assert exporter.flush(15.0)
        orch.close()
        received = langfuse.received
    assert warnings == []
    names = sorted(s.name for s in received.spans)
    assert names == ["guard exported", "openai:gpt-4o-mini", "openai:gpt-4o-mini"]
    generations = [s for s in received.spans if s.type == "generation"]
    assert {s.trace_id for s in received.spans} == {generations[0].trace_id}
    assert generations[0].json_attr("langfuse.observation.usage_details") == {
        "input": 9, "output": 4, "total": 13}
