"""The MCP server through the official client: in-process for speed, over stdio for real."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters

import taskorch_nb
from taskorch_nb import Orchestrator, RetryPolicy, RunStatus
from taskorch_nb.core.store import Store
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.federation.client import FederationClient
from taskorch_nb.mcp.server import build_server, federation_from_env, main

TOOLS = {"spawn_archetype_agent", "run_workflow", "get_run", "budget_status", "circuit_status",
         "reset_circuit", "list_patterns", "federation_sync", "resume_run", "approve_pattern"}


@pytest.fixture(autouse=True)
def _temp_workspaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs get a fresh temp workspace; keep those under the test's tmp_path."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "taskorch.db"


def factory(db: Path, **options: Any) -> Callable[[], Orchestrator]:
    return lambda: Orchestrator(store=db, **options)


def text(result: Any) -> str:
    return result.content[0].text


# -- the tool list ---------------------------------------------------------------------------

async def test_tools_are_listed_with_docs_and_typed_schemas(db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}

    assert set(tools) == TOOLS
    assert all(t.description for t in tools.values())
    spawn = tools["spawn_archetype_agent"].input_schema
    assert spawn["required"] == ["archetype", "task"]
    assert spawn["properties"]["budget"]["type"] == "number"
    assert spawn["properties"]["budget"]["default"] == 1.0
    assert spawn["properties"]["budget"]["exclusiveMinimum"] == 0
    assert spawn["properties"]["budget"]["maximum"] == 1e9
    assert spawn["properties"]["budget_usd"]["deprecated"] is True
    assert "builder" in spawn["properties"]["archetype"]["description"]
    assert "ctx" not in spawn["properties"]
    assert tools["run_workflow"].input_schema["properties"]["budget"]["default"] == 5.0
    assert tools["resume_run"].input_schema["properties"]["extra_budget"]["default"] == 1.0
    assert tools["get_run"].input_schema["required"] == ["run_id"]
    assert tools["reset_circuit"].input_schema["required"] == ["name"]
    for name in ("spawn_archetype_agent", "run_workflow", "get_run"):
        out = tools[name].output_schema
        assert {"run_id", "status", "output", "cost", "metrics"} <= set(out["properties"])
    assert tools["budget_status"].annotations.read_only_hint is True


# -- runs ------------------------------------------------------------------------------------

async def test_spawned_builder_returns_result_cost_and_metrics(db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        result = await client.call_tool("spawn_archetype_agent", {
            "archetype": "builder", "task": "Add a slugify function", "budget": 1.0})

    assert result.is_error is False, text(result)
    run = result.structured_content
    assert json.loads(text(result)) == run
    assert (run["status"], run["workflow"], run["archetype"]) == ("COMPLETED", "single", "builder")
    assert run["run_id"].startswith("run-")
    assert "code (GREEN)" in run["output"]
    assert 0 < run["cost"]["spent"] < run["cost"]["limit"] == 1.0
    assert set(run["cost"]["by_agent"]) == {"builder"}
    assert run["metrics"]["llm_calls"] == 4
    assert run["metrics"]["qc_rounds"] == 0
    workspace = Path(run["workspace"])
    written = sorted(p.relative_to(workspace).as_posix() for p in workspace.rglob("*.py"))
    assert any(p.startswith("tests/") for p in written)
    assert any(not p.startswith("tests/") for p in written)


async def test_progress_notifications_follow_phases_agents_and_model_calls(db: Path) -> None:
    seen: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    async with Client(build_server(factory(db))) as client:
        result = await client.call_tool(
            "spawn_archetype_agent", {"archetype": "builder", "task": "Add slugify"},
            progress_callback=progress)

    assert result.is_error is False
    assert [n for n, _ in seen] == list(range(1, len(seen) + 1))
    messages = [m or "" for _, m in seen]
    assert messages[:2] == ["phase build started", "agent builder started"]
    assert sum(m.startswith("model call by builder done") for m in messages) == 4
    assert messages.count("agent builder started") == 2  # RED (tests) then GREEN (code)


async def test_run_workflow_goes_through_every_phase(db: Path) -> None:
    phases: list[str] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        if message and message.startswith("phase "):
            phases.append(message.split()[1])

    async with Client(build_server(factory(db))) as client:
        result = await client.call_tool("run_workflow", {"task": "Add a slugify function"},
                                        progress_callback=progress)

    assert result.is_error is False, text(result)
    run = result.structured_content
    assert (run["status"], run["workflow"], run["cost"]["limit"]) == ("COMPLETED", "full", 5.0)
    assert run["metrics"]["qc_rounds"] >= 1
    assert phases[:4] == ["research", "design", "build", "qc"]


async def test_budget_exhaustion_pauses_and_is_reported_as_an_error_with_the_run_id(
        db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        result = await client.call_tool("spawn_archetype_agent", {
            "archetype": "builder", "task": "Add slugify", "budget": 0.0001})
        run_id = result.structured_content["run_id"]
        again = await client.call_tool("get_run", {"run_id": run_id})

    assert result.is_error is True
    assert text(result).startswith(f"paused: budget exhausted, run id {run_id}")
    assert result.structured_content["status"] == "PAUSED"
    assert again.is_error is False
    assert again.structured_content["status"] == "PAUSED"

    # Nothing was lost: the run resumes from the shared store with more budget.
    with Orchestrator(store=db) as orch:
        resumed = await orch.resume(run_id, extra_budget=1.0)
        assert resumed.status is RunStatus.COMPLETED, resumed.error


async def test_a_paused_run_resumes_over_mcp(db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        paused = await client.call_tool("spawn_archetype_agent", {
            "archetype": "builder", "task": "Add slugify", "budget": 0.0001})
        run_id = paused.structured_content["run_id"]
        assert f"resume_run(run_id={run_id!r}" in text(paused)
        resumed = await client.call_tool("resume_run",
                                         {"run_id": run_id, "extra_budget": 1.0})
        twice = await client.call_tool("resume_run", {"run_id": run_id})
        unknown = await client.call_tool("resume_run", {"run_id": "run-nope"})

    assert resumed.is_error is False, text(resumed)
    assert resumed.structured_content["status"] == "COMPLETED"
    assert resumed.structured_content["cost"]["spent"] <= 1.0001
    assert twice.is_error is True
    assert "only PAUSED or INTERRUPTED runs resume" in text(twice)
    assert unknown.is_error is True
    assert "run-nope" in text(unknown)


async def test_a_failed_run_is_an_error_naming_the_run_and_the_reason(db: Path) -> None:
    # The provider answers 400 (a caller error: not retried), so the run fails.
    async with Client(build_server(factory(db, faults="400"))) as client:
        result = await client.call_tool("spawn_archetype_agent",
                                        {"archetype": "researcher", "task": "Find prior art"})
        after = await client.call_tool("budget_status", {})

    assert result.is_error is True
    run_id = result.structured_content["run_id"]
    assert text(result).startswith(f"failed, run id {run_id}: ")
    assert "400" in text(result)
    assert after.is_error is False


async def test_get_run_reads_runs_of_earlier_sessions_from_the_shared_store(db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        first = await client.call_tool("spawn_archetype_agent",
                                       {"archetype": "researcher", "task": "Survey slug libraries"})
    run_id = first.structured_content["run_id"]

    async with Client(build_server(factory(db))) as client:  # a new Orchestrator, same file
        result = await client.call_tool("get_run", {"run_id": run_id})

    assert result.is_error is False
    run = result.structured_content
    assert (run["run_id"], run["status"], run["task"]) == (run_id, "COMPLETED",
                                                           "Survey slug libraries")
    assert run["events"] > 0
    assert run["metrics"]["llm_calls"] == first.structured_content["metrics"]["llm_calls"]
    assert run_id in set(taskorch_nb.history(store=db)["run_id"])


async def test_the_old_argument_names_still_work_and_warn(db: Path) -> None:
    async with Client(build_server(factory(db))) as client:
        with pytest.warns(DeprecationWarning, match="budget_usd is deprecated: call it budget"):
            paused = await client.call_tool("spawn_archetype_agent", {
                "archetype": "builder", "task": "Add slugify", "budget_usd": 0.0001})
        run_id = paused.structured_content["run_id"]
        with pytest.warns(DeprecationWarning, match="extra_budget_usd is deprecated"):
            resumed = await client.call_tool("resume_run",
                                             {"run_id": run_id, "extra_budget_usd": 1.5})

    assert paused.structured_content["cost"]["limit"] == 0.0001  # not the default $1
    assert resumed.is_error is False, text(resumed)
    assert resumed.structured_content["cost"]["limit"] == pytest.approx(1.5001)


# -- bad input: an error with a reason, and the server keeps serving ---------------------------

BAD_CALLS = [
    pytest.param("spawn_archetype_agent", {"archetype": "wizard", "task": "x"},
                 "unknown archetype 'wizard'; known: architect, builder, qc, researcher",
                 id="unknown-archetype"),
    pytest.param("spawn_archetype_agent", {"archetype": "builder", "task": ""},
                 "the task is empty", id="empty-task"),
    pytest.param("run_workflow", {"task": "   "}, "the task is empty", id="blank-task"),
    pytest.param("spawn_archetype_agent", {"archetype": "builder", "task": "x", "budget": -1},
                 "budget must be a USD amount above $0", id="negative-budget"),
    pytest.param("run_workflow", {"task": "x", "budget": 0}, "budget must be a USD amount above",
                 id="zero-budget"),
    pytest.param("run_workflow", {"task": "x", "budget": "lots"}, "got 'lots'",
                 id="budget-not-a-number"),
    pytest.param("run_workflow", {"task": "x", "budget": 1e300}, "at most $1,000,000,000",
                 id="absurd-budget"),
    pytest.param("resume_run", {"run_id": "run-x", "extra_budget": float("nan")},
                 "extra_budget must be a USD amount above $0", id="nan-extra-budget"),
    pytest.param("run_workflow", {"task": "x", "budget": 2.0, "budget_usd": 3.0},
                 "budget_usd is the old name of budget: give budget only",
                 id="old-and-new-name"),
    pytest.param("spawn_archetype_agent", {"task": "x"}, "archetype", id="missing-archetype"),
    pytest.param("get_run", {"run_id": "run-000000000000"}, "no run 'run-000000000000'",
                 id="unknown-run"),
    pytest.param("reset_circuit", {"name": "nope"}, "unknown circuit 'nope'; known circuits:",
                 id="unknown-circuit"),
    pytest.param("federation_sync", {}, "federation is not configured: set TASKORCH_HUB_URL",
                 id="no-federation"),
    pytest.param("launch_missiles", {}, "Unknown tool", id="unknown-tool"),
]


@pytest.mark.parametrize(("tool", "arguments", "reason"), BAD_CALLS)
async def test_bad_input_is_a_tool_error_and_the_next_call_works(
        db: Path, tool: str, arguments: dict[str, Any], reason: str) -> None:
    async with Client(build_server(factory(db))) as client:
        bad = await client.call_tool(tool, arguments)
        good = await client.call_tool("spawn_archetype_agent",
                                      {"archetype": "builder", "task": "Add slugify"})

    assert bad.is_error is True
    assert reason in text(bad)
    assert good.is_error is False
    assert good.structured_content["status"] == "COMPLETED"


async def test_an_orchestrator_that_cannot_start_is_a_tool_error_not_a_crash() -> None:
    def broken() -> Orchestrator:
        return Orchestrator(provider="no-such-provider")

    async with Client(build_server(broken)) as client:
        result = await client.call_tool("budget_status", {})
        listed = await client.list_tools()

    assert result.is_error is True
    assert "cannot start the orchestrator" in text(result)
    assert len(listed.tools) == len(TOOLS)


# -- budget, circuits, patterns -----------------------------------------------------------------

async def test_budget_status_shows_the_default_budget_and_recent_runs(db: Path) -> None:
    async with Client(build_server(factory(db, budget=3.0))) as client:
        run = await client.call_tool("spawn_archetype_agent",
                                     {"archetype": "builder", "task": "Add slugify"})
        result = await client.call_tool("budget_status", {})

    status = result.structured_content
    assert (status["provider"], status["model"]) == ("simulated", "sim-small")
    assert status["default_run_budget"] == 3.0
    assert status["status"] == "ok"
    assert [r["run_id"] for r in status["recent_runs"]] == [run.structured_content["run_id"]]
    assert status["recent_spent"] == pytest.approx(run.structured_content["cost"]["spent"])


async def test_budget_status_lists_a_crashed_run_as_interrupted(db: Path) -> None:
    # A process saves a RUNNING run and dies: the same rule as history() and get_run().
    code = ("import sys; from taskorch_nb.core.store import Store; s = Store(sys.argv[1]); "
            "s.save_run('run-dead', task='x', workflow='single', status='RUNNING', wall=0.0, "
            "data={'spent': '0.1', 'limit': '1'}); s.close()")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True, timeout=60)
    async with Client(build_server(factory(db))) as client:
        result = await client.call_tool("budget_status", {})
    [row] = result.structured_content["recent_runs"]
    assert (row["run_id"], row["status"]) == ("run-dead", "INTERRUPTED")


def flaky_orchestrator(db: Path, **options: Any) -> Orchestrator:
    orch = Orchestrator(store=db, **options)

    @orch.tool(retry=RetryPolicy(max_attempts=1))
    async def flaky_api(query: str) -> str:
        raise TimeoutError(f"upstream timed out for {query!r}")

    return orch


async def open_flaky_circuit(orch: Orchestrator) -> None:
    for _ in range(3):
        with pytest.raises(TimeoutError):
            await orch.call_tool("flaky_api", query="q")


async def test_circuit_status_reset_circuit_and_list_patterns(db: Path) -> None:
    orch = flaky_orchestrator(db)
    async with Client(build_server(lambda: orch)) as client:
        await open_flaky_circuit(orch)
        status = await client.call_tool("circuit_status", {})
        patterns = await client.call_tool("list_patterns", {})
        reset = await client.call_tool("reset_circuit", {"name": "flaky_api"})
        after = await client.call_tool("circuit_status", {})

    circuits = {c["name"]: c for c in status.structured_content["circuits"]}
    assert circuits["flaky_api"]["state"] == "OPEN"
    assert circuits["flaky_api"]["failures"] == 3
    assert 0 < circuits["flaky_api"]["retry_in"] <= 30.0
    assert circuits["flaky_api"]["loaded"] is True
    listed = patterns.structured_content
    assert listed["count"] == 1
    assert listed["patterns"][0]["name"] == "flaky_api_timeout"
    assert listed["patterns"][0]["occurrences"] == 3
    assert reset.structured_content == {"name": "flaky_api", "previous": "OPEN",
                                        "state": "CLOSED"}
    closed = {c["name"]: c for c in after.structured_content["circuits"]}
    assert (closed["flaky_api"]["state"], closed["flaky_api"]["failures"]) == ("CLOSED", 0)


async def test_circuits_known_only_from_the_store_are_shown_and_can_be_reset(db: Path) -> None:
    first = flaky_orchestrator(db)
    await open_flaky_circuit(first)
    first.close()

    async with Client(build_server(factory(db))) as client:  # a later server process
        status = await client.call_tool("circuit_status", {})
        reset = await client.call_tool("reset_circuit", {"name": "flaky_api"})

    stored = {c["name"]: c for c in status.structured_content["circuits"]}["flaky_api"]
    assert (stored["state"], stored["loaded"]) == ("OPEN", False)
    assert reset.structured_content["previous"] == "OPEN"
    assert reset.structured_content["state"] == "CLOSED"
    store = Store(db)
    try:
        assert store.load_circuits()["flaky_api"]["state"] == "CLOSED"
    finally:
        store.close()


# -- federation ----------------------------------------------------------------------------------

def fake_hub(calls: list[str], *, status: int = 200) -> httpx.MockTransport:
    """A hub speaking the wire protocol (the seam the client offers for tests)."""
    record = {
        "signature": f"{7:032x}", "name": "search_api_timeout", "tool": "search_api",
        "category": "timeout", "status": 504, "message": "gateway timeout after <num> s",
        "fallback": "cached_search", "corrective_prompt": None, "occurrences": 3,
        "applied": 1, "recovered": 1, "first_seen": 1.0, "last_seen": 2.0,
        "source": ["project-b"], "trust": "confirmed",
    }

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        if status != 200:
            return httpx.Response(status, json={"reason": "invalid or missing token"})
        if request.method == "POST":
            sent = json.loads(request.content)["patterns"]
            return httpx.Response(200, json={"accepted": len(sent), "changed": len(sent),
                                             "quarantined": []})
        return httpx.Response(200, json={"patterns": [record], "cursor": "c1",
                                         "has_more": False})

    return httpx.MockTransport(handle)


async def test_federation_sync_pushes_then_pulls(db: Path) -> None:
    calls: list[str] = []
    hub = FederationClient("http://hub.invalid", token="t0k", project="a",
                           transport=fake_hub(calls))
    orch = flaky_orchestrator(db, federation=hub)
    async with Client(build_server(lambda: orch)) as client:
        await open_flaky_circuit(orch)  # learns flaky_api_timeout here
        result = await client.call_tool("federation_sync", {})
        patterns = await client.call_tool("list_patterns", {})

    assert result.is_error is False, text(result)
    assert calls == ["POST /v1/patterns", "GET /v1/patterns"]
    synced = result.structured_content
    assert (synced["accepted"], synced["merged"], synced["patterns"]) == (1, 1, 2)
    sources = {p["name"]: p["source"] for p in patterns.structured_content["patterns"]}
    assert sources == {"flaky_api_timeout": "local", "search_api_timeout": "federation"}


async def test_a_hub_refusal_is_a_tool_error_with_the_hub_reason(db: Path) -> None:
    hub = FederationClient("http://hub.invalid", token="bad", project="a",
                           transport=fake_hub([], status=401))
    async with Client(build_server(factory(db, federation=hub))) as client:
        result = await client.call_tool("federation_sync", {})
        after = await client.call_tool("list_patterns", {})

    assert result.is_error is True
    assert "federation hub: hub answered 401: invalid or missing token" in text(result)
    assert after.is_error is False


def test_federation_is_configured_from_the_environment() -> None:
    assert federation_from_env({}) is None
    client = federation_from_env({"TASKORCH_HUB_URL": "http://127.0.0.1:9/",
                                  "TASKORCH_HUB_TOKEN": "t", "TASKORCH_PROJECT": "p"})
    assert isinstance(client, FederationClient)
    assert (client.url, client.project) == ("http://127.0.0.1:9", "p")
    with pytest.raises(ConfigurationError, match="TASKORCH_HUB_TOKEN"):
        federation_from_env({"TASKORCH_HUB_URL": "http://127.0.0.1:9/"})


def test_main_refuses_a_bad_configuration_before_serving(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKORCH_HOME", str(tmp_path))
    monkeypatch.setenv("TASKORCH_HUB_URL", "http://127.0.0.1:9")
    monkeypatch.delenv("TASKORCH_HUB_TOKEN", raising=False)
    assert main() == 2
    assert "TASKORCH_HUB_TOKEN" in capsys.readouterr().err


# -- over stdio, against the real server process -----------------------------------------------

async def test_over_stdio_tools_bad_input_and_a_builder_run(tmp_path: Path) -> None:
    server = StdioServerParameters(
        command=sys.executable, args=["-m", "taskorch_nb.mcp.server"],
        env={"TASKORCH_HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)})
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        bad = await client.call_tool("spawn_archetype_agent",
                                     {"archetype": "wizard", "task": "Add slugify"})
        good = await client.call_tool("spawn_archetype_agent",
                                      {"archetype": "builder", "task": "Add slugify"})

    assert set(tools) == TOOLS
    assert tools["spawn_archetype_agent"].input_schema["required"] == ["archetype", "task"]
    assert bad.is_error is True
    assert "unknown archetype 'wizard'" in text(bad)
    assert good.is_error is False, text(good)
    run = good.structured_content
    assert run["status"] == "COMPLETED"
    assert run["metrics"]["llm_calls"] == 4
    assert Path(run["workspace"]).is_relative_to(tmp_path)
    runs = taskorch_nb.history(store=tmp_path / "home" / "taskorch.db")
    assert list(runs["run_id"]) == [run["run_id"]]


async def test_approve_pattern_releases_a_federated_text(db: Path) -> None:
    text_ = "Use the cached_search tool instead; it takes the same arguments."
    orch = flaky_orchestrator(db)
    orch.immune.merge_federated([{
        "signature": "ab" * 16, "name": "search_api_timeout", "tool": "search_api",
        "category": "timeout", "fallback": "cached_search", "corrective_prompt": text_,
        "applied": 1, "recovered": 1, "source": ["project-b"], "trust": "approved"}])
    async with Client(build_server(lambda: orch)) as client:
        before = await client.call_tool("list_patterns", {})
        approved = await client.call_tool("approve_pattern", {"name": "search_api_timeout"})
        unknown = await client.call_tool("approve_pattern", {"name": "nope"})

    [pending] = before.structured_content["patterns"]
    assert (pending["approval"], pending["corrective_prompt"]) == ("pending", None)
    assert approved.is_error is False, text(approved)
    assert approved.structured_content["approval"] == "approved"
    assert approved.structured_content["approved_by"] == "mcp"
    assert approved.structured_content["corrective_prompt"] == text_
    assert unknown.is_error is True
    assert "'nope' is not a pattern" in text(unknown)
