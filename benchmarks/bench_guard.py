"""Cost of one guarded SDK call: `orch.guard()` against the bare SDK and shekel's `budget()`.

The same `openai.OpenAI` client calls a loopback server that answers at once (the
test suite's `LoopbackServer`), N times per path, three rounds in alternating order:

- bare: the SDK alone;
- orch.guard: inside one `with orch.guard(budget=...)` (estimate, reserve, breaker,
  price, settle, events written to a SQLite store in a temp folder);
- shekel: inside one `with shekel.budget(max_usd=...)` (its SDK patch), when installed
  (`pip install -e ".[dev]"`).

Also the cost of opening and closing a guard around a single call. Run from the repo
root: .venv/bin/python benchmarks/bench_guard.py [N]
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taskorch_nb import Orchestrator
from tests.unit.llm_servers import Answer, LoopbackServer, openai_body

MESSAGES = [{"role": "user", "content": "Say hello in one word."}]


def _calls(client: openai.OpenAI, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=8)
    return (time.perf_counter() - start) / n


def bare(client: openai.OpenAI, n: int, _store: Path) -> float:
    return _calls(client, n)


def guarded(client: openai.OpenAI, n: int, store: Path) -> float:
    with Orchestrator(store=store, prices={"gpt-4o-mini": {"input": 0.15, "output": 0.6}}) \
            as orch, orch.guard(budget=1_000_000, name="bench"):
        _calls(client, 5)  # warm: price lookup, breaker
        return _calls(client, n)


def guard_per_call(client: openai.OpenAI, n: int, store: Path) -> float:
    with Orchestrator(store=store) as orch:
        start = time.perf_counter()
        for _ in range(n):
            with orch.guard(budget=1.0):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                               max_tokens=8)
        return (time.perf_counter() - start) / n


def shekel_budget(client: openai.OpenAI, n: int, _store: Path) -> float | None:
    try:
        import shekel
    except ImportError:
        return None
    with contextlib.redirect_stdout(io.StringIO()), shekel.budget(max_usd=1_000_000):
        _calls(client, 5)
        return _calls(client, n)


def _mock_client() -> httpx.Client:
    body = json.dumps(openai_body(model="gpt-4o-mini")).encode()
    headers = {"content-type": "application/json"}
    return httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, content=body, headers=headers)))


def _posts(client: httpx.Client, n: int) -> float:
    payload = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 8}
    start = time.perf_counter()
    for _ in range(n):
        client.post("http://127.0.0.1:9/v1/chat/completions", json=payload)
    return (time.perf_counter() - start) / n


def guard_alone(n: int, store: Path) -> tuple[float, float]:
    """The guard's own cost, without a network: httpx on a MockTransport, bare and guarded."""
    with _mock_client() as client:
        _posts(client, 50)
        bare_s = _posts(client, n)
        with Orchestrator(store=store) as orch, orch.guard(budget=1_000_000):
            _posts(client, 50)
            guarded_s = _posts(client, n)
    return bare_s, guarded_s


def main(n: int) -> None:
    paths: dict[str, Callable[..., float | None]] = {
        "bare SDK": bare, "orch.guard (one block)": guarded,
        "shekel budget() (one block)": shekel_budget,
        "orch.guard per call": guard_per_call,
    }
    rows: dict[str, list[float]] = {name: [] for name in paths}
    body = openai_body(model="gpt-4o-mini")
    with LoopbackServer(lambda r: Answer(body=body)) as server, \
            tempfile.TemporaryDirectory() as tmp:
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="bench")
        _calls(client, 20)  # warm the SDK and the server
        for round_ in range(3):
            order = list(paths.items())
            if round_ % 2:
                order.reverse()
            for name, fn in order:
                value = fn(client, n, Path(tmp) / f"{round_}-{len(rows[name])}.db")
                if value is not None:
                    rows[name].append(value)
        client.close()
        alone = [guard_alone(n * 4, Path(tmp) / f"alone-{i}.db") for i in range(3)]
    bare_mock = statistics.median(a for a, _ in alone)
    guarded_mock = statistics.median(g for _, g in alone)
    base = statistics.median(rows["bare SDK"])
    print(f"{n} calls per path, 3 rounds, loopback server answering at once")
    print(f"{'path':<30} {'median us/call':>15} {'overhead us':>12} {'x bare':>7}")
    for name, values in rows.items():
        if not values:
            print(f"{name:<30} {'(not installed)':>15}")
            continue
        med = statistics.median(values)
        print(f"{name:<30} {med * 1e6:>15.0f} {(med - base) * 1e6:>12.0f} {med / base:>7.2f}")
    print(f"without a network ({n * 4} httpx posts on a MockTransport): bare "
          f"{bare_mock * 1e6:.0f} us, guarded {guarded_mock * 1e6:.0f} us: the guard's own "
          f"cost {(guarded_mock - bare_mock) * 1e6:.0f} us per call")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
