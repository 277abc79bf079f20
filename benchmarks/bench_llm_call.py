"""Overhead of one guarded model call against LiteLLM's Router with `mock_response`.

Ours: estimate, reserve, breaker, simulated provider at zero latency, price, settle,
events (persisted to SQLite). Baseline in the same run: a bare simulated provider
call, and LiteLLM `Router.acompletion(mock_response=...)` when litellm is installed
(`pip install -e ".[bench]"`). Run: .venv/bin/python benchmarks/bench_llm_call.py [N]
"""

from __future__ import annotations

import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from taskorch_nb import Orchestrator
from taskorch_nb.llm.simulated import SimulatedProvider

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello in one word."}]


async def bare_provider(n: int) -> float:
    provider = SimulatedProvider()
    start = time.perf_counter()
    for _ in range(n):
        await provider.complete(MESSAGES, model="sim-small", max_tokens=64)
    return (time.perf_counter() - start) / n


async def guarded(n: int, store: Path) -> float:
    orch = Orchestrator(budget=1_000_000, store=store)
    await orch.complete(MESSAGES, max_tokens=64)  # warm: price lookup, breaker, tool
    start = time.perf_counter()
    for _ in range(n):
        await orch.complete(MESSAGES, max_tokens=64)
    elapsed = (time.perf_counter() - start) / n
    orch.close()
    return elapsed


async def litellm_router(n: int) -> float | None:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch
    try:
        import litellm
        from litellm import Router
    except ImportError:
        return None
    litellm.suppress_debug_info = True
    logging.getLogger("LiteLLM").setLevel(logging.ERROR)
    router = Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_key": "sk-bench", "mock_response": "hello"}}])
    await router.acompletion(model="m", messages=MESSAGES)
    start = time.perf_counter()
    for _ in range(n):
        await router.acompletion(model="m", messages=MESSAGES)
    return (time.perf_counter() - start) / n


async def main(n: int) -> None:
    rows: dict[str, list[float]] = {"simulated provider alone": [], "orch.complete (guarded)": [],
                                    "litellm Router mock_response": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3):
            rows["simulated provider alone"].append(await bare_provider(n))
            rows["orch.complete (guarded)"].append(await guarded(n, Path(tmp) / f"{i}.db"))
            lite = await litellm_router(max(50, n // 10))
            if lite is not None:
                rows["litellm Router mock_response"].append(lite)
    base = statistics.median(rows["litellm Router mock_response"] or [float("nan")])
    print(f"{'path':<32} {'median us/call':>15} {'vs LiteLLM':>11}")
    for name, values in rows.items():
        if not values:
            print(f"{name:<32} {'(not installed)':>15}")
            continue
        med = statistics.median(values)
        print(f"{name:<32} {med * 1e6:>15.1f} {med / base:>10.3f}x")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))
