"""Seed flow 4, as the diagram reads: project A learns a failure pattern and pushes it to
a real hub process on 127.0.0.1; the hub validates and stores it; B and C sync in
parallel and merge it; later B meets the same failure and recovers at the first one:
one call to the failing tool, no backoff, the fallback's result."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from taskorch_nb import FakeClock, Orchestrator, RetryPolicy
from taskorch_nb.federation import FederationClient
from taskorch_nb.testing import FlakyTool

CLI = [sys.executable, "-m", "taskorch_nb.cli", "hub"]


@pytest.fixture
def hub(tmp_path) -> Iterator[tuple[str, dict[str, str]]]:
    db = str(tmp_path / "hub.db")
    tokens = {
        name: subprocess.run([*CLI, "token", name, "--db", db], capture_output=True, text=True,
                             check=True).stdout.strip()
        for name in ("project-a", "project-b", "project-c")
    }
    log = tmp_path / "hub.log"
    with log.open("w") as out:
        server = subprocess.Popen([*CLI, "--db", db, "--port", "0"], stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        url = None
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline and server.poll() is None:
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log.read_text())
            if found:
                url = found.group(1)
            else:
                time.sleep(0.05)
        assert url, f"the hub did not start: {log.read_text()}"
        yield url, tokens
    finally:
        server.terminate()
        server.wait(timeout=10)


def project(name: str, url: str, tokens: dict[str, str]) -> tuple[Orchestrator, FakeClock,
                                                                    FlakyTool]:
    clock = FakeClock()
    orch = Orchestrator(store=":memory:", clock=clock, retry=RetryPolicy(jitter=0.0),
                        federation=FederationClient(url, token=tokens[name], project=name))
    broken = FlakyTool(always=504)  # Tool X fails with error Y
    orch.tool(broken, name="search_api", fallback="cached_search")
    orch.tool(lambda query: f"cached results for {query}", name="cached_search")
    return orch, clock, broken


async def test_pattern_learned_by_a_saves_b_at_the_first_failure(hub) -> None:
    url, tokens = hub
    a, a_clock, a_tool = project("project-a", url, tokens)
    b, b_clock, b_tool = project("project-b", url, tokens)
    c, _, _ = project("project-c", url, tokens)

    # PA->>IM: Tool X fails; IM analyses, creates a strategy: learned locally.
    assert await a.call_tool("search_api", query="q") == "cached results for q"
    assert len(a_tool.calls) == 3
    assert a_clock.slept == [2.0, 4.0]
    [learned] = a.immune.patterns()
    assert (learned.name, learned.known) == ("search_api_timeout", True)

    # PA->>FH: push; FH validates and stores.
    pushed = await a.federation.push()
    assert pushed["accepted"] == 1
    assert pushed["quarantined"] == []

    # par: sync to B and to C; each merges into its local store.
    synced = await asyncio.gather(b.federation.sync(), c.federation.sync())
    assert [s["merged"] for s in synced] == [1, 1]
    for orch in (b, c):
        [pattern] = orch.immune.patterns()
        assert pattern.signature == learned.signature
        assert (pattern.source, pattern.known, pattern.fallback) == (
            "federation", True, "cached_search")

    # Later: B encounters the same issue; known pattern, apply the fix: instant recovery.
    events: list = []
    b.subscribe(events.append)
    assert await b.call_tool("search_api", query="z") == "cached results for z"
    assert len(b_tool.calls) == 1  # one call to the failing tool
    assert b_clock.slept == []  # no backoff, no learning delay
    assert [e.type for e in events] == ["tool.failed", "pattern.applied", "tool.fallback",
                                        "tool.succeeded", "pattern.recovered"]
    for orch in (a, b, c):
        await orch.federation.aclose()
        orch.close()
