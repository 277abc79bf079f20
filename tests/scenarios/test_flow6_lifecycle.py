"""Seed flow 6, as the diagram reads: request intake -> safety checks (budget, circuits,
patterns) -> execution (traced) -> learning (outcomes, new patterns) -> response with
result and metrics."""

from __future__ import annotations

from taskorch_nb import FakeClock, Orchestrator, RunStatus


def stage(event_type: str) -> str:
    if event_type == "run.started":
        return "intake"
    if event_type == "safety.checked":
        return "safety"
    if event_type == "learning.completed":
        return "learning"
    if event_type in ("run.completed", "run.failed"):
        return "response"
    return "execution"


async def test_complete_request_lifecycle(tmp_path) -> None:
    orch = Orchestrator(store=":memory:", clock=FakeClock(), budget=2.0)

    @orch.tool(fallback="cached_docs")
    async def docs_api(query: str) -> str:
        return f"docs for {query}"

    @orch.tool()
    def cached_docs(query: str) -> str:
        return f"cached docs for {query}"

    run = await orch.run("Add a {feature} module", feature="rate limiter", workflow="single",
                         archetype="builder", tools=["docs_api"], workspace=tmp_path)
    assert run.task == "Add a rate limiter module"
    assert run.status is RunStatus.COMPLETED, run.error

    stages = [stage(e.type) for e in run.events]
    # Collapse repeats: the order of the five stages is the diagram's.
    order = [s for i, s in enumerate(stages) if i == 0 or stages[i - 1] != s]
    assert order[0] == "intake"
    assert order[-2:] == ["learning", "response"]
    assert order[1] == "safety"
    assert "execution" in order

    checks = [e.detail["check"] for e in run.events if e.type == "safety.checked"]
    assert checks[:3] == ["budget", "circuits", "patterns"]
    circuits = next(e for e in run.events if e.type == "safety.checked"
                    and e.detail["check"] == "circuits")
    assert circuits.detail["open"] == []
    assert "docs_api" in circuits.detail["states"]

    traced = {e.type for e in run.events}
    assert {"agent.started", "llm.requested", "llm.completed", "agent.completed"} <= traced

    response = run.events[-1]
    assert response.type == "run.completed"
    assert response.detail["metrics"]["llm_calls"] == len(
        [e for e in run.events if e.type == "llm.completed"]
    )
    assert response.detail["cost"]["spent"] > 0
    summary = run.summary()
    assert summary["status"] == "COMPLETED"
    assert summary["metrics"]["llm_calls"] >= 2
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.py"))
    assert written == ["rate_limiter_module.py", "tests/test_rate_limiter_module.py"]
    orch.close()
