"""Pushing and pulling through FederationClient: cursors, trust marks, errors, convergence."""

from __future__ import annotations

import asyncio
import random
import socket
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskorch_nb.errors import ConfigurationError, HubError
from taskorch_nb.federation import FederationClient, HubRateLimitedError, HubUnavailableError
from taskorch_nb.federation.hub import RateLimit, create_app
from taskorch_nb.testing import FakeClock
from tests.hub_helpers import BACKENDS, MemorySource, RunningHub, fresh_db, record, signature

PROJECTS = ("alpha", "beta", "gamma")


def client_for(hub: RunningHub, project: str, **kw: Any) -> FederationClient:
    return FederationClient(hub.url, token=hub.token_for(project), project=project, **kw)


async def test_incremental_pull_returns_only_what_changed(hub: RunningHub) -> None:
    async with client_for(hub, "alpha", page_size=2) as a, client_for(hub, "beta") as b:
        assert (await a.push_records([record(n) for n in range(3)]))["changed"] == 3
        first = await b.pull_records()
        assert sorted(p["signature"] for p in first) == [signature(n) for n in range(3)]
        assert await b.pull_records() == []
        # A re-push of the same totals changes nothing, so nothing new is served.
        assert (await a.push_records([record(n) for n in range(3)]))["changed"] == 0
        assert await b.pull_records() == []
        await a.push_records([record(1, occurrences=9)])
        [changed] = await b.pull_records()
        assert (changed["signature"], changed["occurrences"]) == (signature(1), 9)
        # Paging (page_size=2) walks every page and ends on the newest cursor.
        assert len(await a.pull_records()) == 3
        assert a.cursor == b.cursor


async def test_pull_pages_report_has_more(hub: RunningHub) -> None:
    token = hub.token_for("alpha")
    async with httpx.AsyncClient(base_url=hub.url,
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        await http.post("/v1/patterns", json={"patterns": [record(n) for n in range(5)]})
        page = (await http.get("/v1/patterns", params={"limit": 3})).json()
        assert (len(page["patterns"]), page["has_more"]) == (3, True)
        rest = (await http.get("/v1/patterns", params={"since": page["cursor"]})).json()
        assert (len(rest["patterns"]), rest["has_more"]) == (2, False)
        again = (await http.get("/v1/patterns", params={"since": rest["cursor"]})).json()
        assert again == {"patterns": [], "cursor": rest["cursor"], "has_more": False}


async def test_bound_client_syncs_and_marks_what_policy_allows(hub: RunningHub) -> None:
    learned = record(1, fallback="cached_search", applied=1, recovered=1)
    foreign = record(2, fallback="their_tool", tool="their_api", name="their_api_timeout")
    prompt = record(3, fallback=None, corrective_prompt="Use cached_search with the same query.")
    alpha = MemorySource([learned, foreign, prompt])
    beta = MemorySource()
    async with client_for(hub, "alpha") as a, client_for(hub, "beta") as b:
        a.bind(alpha)
        b.bind(beta)
        assert await a.sync() == {"accepted": 3, "changed": 3, "quarantined": [], "rejected": [],
                                  "merged": 3}
        assert await b.pull() == 3
        # Only a fallback to a tool B has may apply by itself (a prompt never does).
        marks = {sig: r["apply_fallback"] for sig, r in beta.federated.items()}
        assert marks == {signature(1): True, signature(2): False, signature(3): False}
        assert beta.federated[signature(1)]["source"] == ["alpha"]
        assert await b.pull() == 0
        # B learns the same pattern itself; after both sync, both see the summed record.
        beta.learn(record(1, fallback="cached_search", occurrences=1, applied=1, recovered=1))
        await b.sync()
        await a.sync()
        assert alpha.view() == beta.view()
        assert alpha.federated[signature(1)]["source"] == ["alpha", "beta"]
        assert alpha.federated[signature(1)]["occurrences"] == 4


async def test_client_batches_under_the_hub_limits(hub: RunningHub) -> None:
    long_prompt = "Use cached_search; it answers the same query from a local copy. " * 30
    records = [record(n, corrective_prompt=long_prompt[:2000]) for n in range(150)]
    async with client_for(hub, "alpha") as a:
        result = await a.push_records(records)  # ~320 KB: split into bodies under 256 KiB
        assert (result["accepted"], result["changed"]) == (150, 150)
        assert len(await a.pull_records()) == 150


async def test_client_errors_are_hub_errors(hub: RunningHub) -> None:
    async with FederationClient(hub.url, token="tnb_wrong", project="x") as bad:
        with pytest.raises(HubError) as caught:
            await bad.pull_records()
    assert (caught.value.status, caught.value.reason) == (401, "invalid or revoked token")
    async with client_for(hub, "alpha") as a:
        answer = await a.push_records([record(1), record(2, name="Not Valid")])
        assert answer["accepted"] == 1
        assert [(r["index"], r["signature"]) for r in answer["rejected"]] == [(1, signature(2))]
        assert "name" in answer["rejected"][0]["reason"]
        with pytest.raises(ConfigurationError, match="bind"):
            await a.push()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with FederationClient(closed, token="t", project="x", timeout=2) as down:
        with pytest.raises(HubUnavailableError) as caught:
            await down.health()
    assert caught.value.status == 0
    assert isinstance(caught.value, ConnectionError)


async def test_client_sees_rate_limit_with_retry_after(tmp_path: Path) -> None:
    app = create_app(str(tmp_path / "hub.db"), rate_limit=RateLimit(per_second=0.25, burst=1),
                     clock=FakeClock())
    token = app.state.store.issue_token("alpha")
    client = FederationClient("http://hub", token=token, project="alpha",
                              transport=httpx.ASGITransport(app=app))
    async with client:
        await client.pull_records()
        with pytest.raises(HubRateLimitedError) as caught:
            await client.pull_records()
    assert (caught.value.status, caught.value.retry_after) == (429, 4.0)


async def test_client_reads_an_http_date_retry_after_on_its_clock() -> None:
    clock = FakeClock()
    date = formatdate(clock.wall() + 90, usegmt=True)  # 2026: the machine's clock would say 0 s

    def busy(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"reason": "slow down"}, headers={"Retry-After": date})

    async with FederationClient("http://hub", token="t", project="alpha", clock=clock,
                                transport=httpx.MockTransport(busy)) as client:
        with pytest.raises(HubRateLimitedError, match="slow down") as caught:
            await client.health()
    assert caught.value.retry_after == 90.0


# -- convergence ------------------------------------------------------------------------

def project_histories(rnd: random.Random, steps: int) -> dict[str, list[list[dict[str, Any]]]]:
    """Each project's successive local states (its current totals only ever grow)."""
    histories: dict[str, list[list[dict[str, Any]]]] = {}
    for p_index, project in enumerate(PROJECTS):
        state: dict[tuple[int, str | None], dict[str, Any]] = {}
        states = []
        for step in range(steps):
            sig = rnd.randrange(4)
            strategy = rnd.choice(["cached_search", "mirror_search", None])
            prompt = "Use the fallback tool." if strategy is None else None
            old = state.get((sig, strategy))
            applied = (old["applied"] if old else 0) + rnd.randrange(3)
            state[(sig, strategy)] = record(
                sig, fallback=strategy, corrective_prompt=prompt,
                occurrences=(old["occurrences"] if old else 0) + 1 + rnd.randrange(2),
                applied=applied,
                recovered=min(applied, (old["recovered"] if old else 0) + rnd.randrange(2)),
                first_seen=1000.0 + p_index, last_seen=1000.0 + 10 * step + p_index)
            states.append([dict(r) for r in state.values()])
        histories[project] = states
    return histories


async def converge(make_client: Any, reference_client: Any, seed: int, steps: int) -> None:
    """Random interleaving and repetition of learn/push/pull, then a final push+pull each."""
    rnd = random.Random(seed)
    histories = project_histories(rnd, steps)
    sources = {p: MemorySource() for p in PROJECTS}
    clients = {p: make_client(p).bind(sources[p]) for p in PROJECTS}
    position = dict.fromkeys(PROJECTS, -1)
    pushed: list[tuple[str, list[dict[str, Any]]]] = []
    for _ in range(steps * 4):
        project = rnd.choice(PROJECTS)
        action = rnd.choice(["learn", "learn", "push", "pull"])
        if action == "learn" and position[project] + 1 < steps:
            position[project] += 1
            sources[project].own.clear()
            for rec in histories[project][position[project]]:
                sources[project].learn(rec)
        elif action == "push":
            pushed.append((project, sources[project].export()))
            await clients[project].push()
        elif action == "pull":
            await clients[project].pull()
    for project in PROJECTS:
        pushed.append((project, sources[project].export()))
        await clients[project].push()
    for project in PROJECTS:
        await clients[project].pull()
    views = [sources[p].view() for p in PROJECTS]
    assert views[0] == views[1] == views[2]
    # The same pushes, shuffled and some repeated, into a fresh hub: the same store.
    replay = pushed + rnd.sample(pushed, k=len(pushed) // 2)
    rnd.shuffle(replay)
    refs = {p: reference_client(p) for p in PROJECTS}
    for project, records in replay:
        await refs[project].push_records(records)
    reference = MemorySource()
    refs["alpha"].bind(reference)
    await refs["alpha"].pull()
    assert reference.view() == views[0]
    for client in (*clients.values(), *refs.values()):
        await client.aclose()


def in_process_client(app: Any, project: str) -> FederationClient:
    store = app.state.store
    return FederationClient("http://hub", token=store.issue_token(project), project=project,
                            transport=httpx.ASGITransport(app=app), page_size=3)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), steps=st.integers(2, 6))
def test_any_interleaving_of_pushes_and_pulls_converges(seed: int, steps: int) -> None:
    app = create_app(":memory:", rate_limit=None)
    reference = create_app(":memory:", rate_limit=None)
    asyncio.run(converge(lambda p: in_process_client(app, p),
                         lambda p: in_process_client(reference, p), seed, steps))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [7])
async def test_interleavings_converge_on_a_real_server(tmp_path: Path, backend: str,
                                                       seed: int) -> None:
    with fresh_db(backend, tmp_path) as db, RunningHub(create_app(db, rate_limit=None)) as hub:
        reference = create_app(":memory:", rate_limit=None)
        await converge(lambda p: client_for(hub, p, page_size=2),
                       lambda p: in_process_client(reference, p), seed, steps=5)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_parallel_syncs_give_the_sequential_store(tmp_path: Path, backend: str) -> None:
    owned = {p: [record(n, occurrences=1 + k, applied=k, recovered=k // 2,
                        fallback=("cached_search", "mirror_search")[n % 2])
                 for n in range(40)] for k, p in enumerate(PROJECTS)}
    with fresh_db(backend, tmp_path) as db, RunningHub(create_app(db, rate_limit=None)) as hub:
        sources = {p: MemorySource(owned[p]) for p in PROJECTS}
        clients = [client_for(hub, p, page_size=7).bind(sources[p]) for p in PROJECTS]
        await asyncio.gather(*(c.sync() for c in clients for _ in range(3)))
        await asyncio.gather(*(c.pull() for c in clients))
        for client in clients:
            await client.aclose()
        reference = create_app(":memory:", rate_limit=None)
        for project in reversed(PROJECTS):
            async with in_process_client(reference, project) as c:
                await c.push_records(owned[project])
        assert hub.app.state.store.snapshot() == reference.state.store.snapshot()
        assert (sources["alpha"].view() == sources["beta"].view() == sources["gamma"].view()
                == reference.state.store.snapshot())


class FlakyTransport(httpx.AsyncBaseTransport):
    """The in-process hub, but the connection drops on chosen request numbers."""

    def __init__(self, app: Any, fail_on: set[int]) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.fail_on = fail_on
        self.count = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.count += 1
        if self.count in self.fail_on:
            raise httpx.ConnectError("connection dropped", request=request)
        return await self.inner.handle_async_request(request)


async def test_a_pull_that_fails_half_way_does_not_skip_anything() -> None:
    app = create_app(":memory:", rate_limit=None)
    await in_process_client(app, "alpha").push_records([record(n) for n in range(5)])
    transport = FlakyTransport(app, fail_on={2})  # the second page of the first pull
    source = MemorySource()
    client = FederationClient("http://hub", token=app.state.store.issue_token("beta"),
                              project="beta", transport=transport, page_size=3).bind(source)
    async with client:
        with pytest.raises(HubUnavailableError):
            await client.pull()
        assert (client.cursor, source.federated) == (None, {})
        assert await client.pull() == 5
        assert len(source.federated) == 5
