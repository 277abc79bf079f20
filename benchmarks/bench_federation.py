"""Federation hub benchmarks: a 100,000-pattern sync across three projects, and pushes/s.

    .venv/bin/python benchmarks/bench_federation.py [--patterns 100000] [--seconds 5]
        [--db postgresql://...]

1. Sync: three projects each push their third of N distinct patterns (batches of
   500, in-process through httpx.ASGITransport), then each pulls all N. Baseline
   in the same run: the pure merge rules (`merge.aggregate`) over the same records
   in memory, i.e. what the hub costs on top of the arithmetic.
2. Loopback: a real `taskorch-nb hub` subprocess (uvicorn, SQLite) on 127.0.0.1;
   pushes per second (1 and 100 patterns per push, 4 concurrent clients) against a
   baseline of GET /v1/health per second in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from taskorch_nb.federation import FederationClient, merge
from taskorch_nb.federation.hub import create_app
from taskorch_nb.federation.hubstore import HubStore

PROJECTS = ("alpha", "beta", "gamma")


def make_record(n: int) -> dict[str, Any]:
    return {
        "signature": f"{n:032x}", "name": f"tool_{n % 97}_timeout", "tool": f"tool_{n % 97}",
        "category": "timeout", "status": 504, "message": "gateway timeout after <num> s",
        "fallback": f"cached_{n % 13}", "corrective_prompt": None, "occurrences": 1 + n % 5,
        "applied": 1 + n % 3, "recovered": 1, "first_seen": 1.7e9 + n, "last_seen": 1.7e9 + n + 60,
    }


async def sync_bench(n: int, db: str) -> dict[str, float]:
    owned = {p: [make_record(i) for i in range(n) if i % 3 == k] for k, p in enumerate(PROJECTS)}

    started = time.perf_counter()
    for project, records in owned.items():
        rows = [{**r, "project": project} for r in records]
        for row in rows:
            merge.aggregate(row["signature"], [row], lambda *_: "approved")
    baseline = time.perf_counter() - started

    app = create_app(db, rate_limit=None)
    store: HubStore = app.state.store
    transport = httpx.ASGITransport(app=app)
    clients = {p: FederationClient("http://hub", token=store.issue_token(p), project=p,
                                   transport=transport, timeout=120) for p in PROJECTS}
    started = time.perf_counter()
    for project, records in owned.items():
        await clients[project].push_records(records)
    pushed = time.perf_counter()
    counts = [len(await clients[p].pull_records()) for p in PROJECTS]
    pulled = time.perf_counter()
    assert counts == [n] * 3, counts
    resync = time.perf_counter()
    assert [len(await clients[p].pull_records()) for p in PROJECTS] == [0, 0, 0]
    resync = time.perf_counter() - resync
    for client in clients.values():
        await client.aclose()
    store.close()
    return {"baseline": baseline, "push": pushed - started, "pull": pulled - pushed,
            "total": pulled - started, "resync": resync}


async def rate(url: str, seconds: float, concurrency: int, request: Any) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker(http: httpx.AsyncClient, w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < deadline:
            response = await request(http, w, i)
            response.raise_for_status()
            done += 1
            i += 1

    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for w in range(concurrency):
                group.create_task(worker(http, w))
        elapsed = time.perf_counter() - started
    return done / elapsed


async def loopback_bench(tmp: Path, seconds: float) -> dict[str, float]:
    db = str(tmp / "loopback.db")
    cli = [sys.executable, "-m", "taskorch_nb.federation.hubcli"]
    token = subprocess.run([*cli, "token", "alpha", "--db", db], check=True, text=True,
                           capture_output=True).stdout.strip()
    proc = subprocess.Popen([*cli, "--db", db, "--port", "0", "--rate", "1e9",
                             "--burst", "1000000000"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().rsplit(" ", 1)[1].strip()
        auth = {"Authorization": f"Bearer {token}"}

        async def health(http: httpx.AsyncClient, _w: int, _i: int) -> httpx.Response:
            return await http.get("/v1/health")

        def pusher(size: int) -> Any:
            async def push(http: httpx.AsyncClient, w: int, i: int) -> httpx.Response:
                base = (w * 10_000_000 + i * size)
                body = {"patterns": [make_record(base + k) for k in range(size)]}
                return await http.post("/v1/patterns", json=body, headers=auth)
            return push

        return {
            "health": await rate(url, seconds, 4, health),
            "push1": await rate(url, seconds, 4, pusher(1)),
            "push100": await rate(url, seconds, 4, pusher(100)),
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--db", default=None, help="hub database for the sync (default: SQLite)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmpdir:
        tmp = Path(tmpdir)
        sync = asyncio.run(sync_bench(args.patterns, args.db or str(tmp / "sync.db")))
        loop = asyncio.run(loopback_bench(tmp, args.seconds))
    n = args.patterns
    print(f"federation sync: {n:,} patterns, 3 projects ({'given db' if args.db else 'SQLite'})")
    print(f"{'measure':<44}{'seconds':>10}{'patterns/s':>14}")
    rows = [("baseline: merge rules in memory", sync["baseline"], n),
            ("push (each project its third, 500/push)", sync["push"], n),
            ("pull (each project all patterns)", sync["pull"], 3 * n),
            ("sync total (push + pull)", sync["total"], 4 * n),
            ("re-pull with cursor (nothing new)", sync["resync"], 0)]
    for label, seconds, count in rows:
        per = f"{count / seconds:,.0f}" if count else "-"
        print(f"{label:<44}{seconds:>10.2f}{per:>14}")
    print()
    print("loopback uvicorn hub (SQLite), 4 concurrent clients")
    print(f"{'request':<44}{'req/s':>10}{'vs health':>14}")
    for label, key in (("baseline: GET /v1/health", "health"),
                       ("POST /v1/patterns, 1 pattern", "push1"),
                       ("POST /v1/patterns, 100 patterns", "push100")):
        print(f"{label:<44}{loop[key]:>10,.0f}{loop[key] / loop['health']:>13.2f}x")
    print(f"{'  = patterns/s at 100 per push':<44}{loop['push100'] * 100:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
