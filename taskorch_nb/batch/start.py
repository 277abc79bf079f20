"""`new_batch`: check a batch's options, choose its engine, and prepare its runs.

Everything a caller can get wrong is refused here, before any run starts or any
money is reserved: the task list, the budgets, the engine and its store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from taskorch_nb.batch.batch import Batch, check_concurrency, check_tasks
from taskorch_nb.batch.worker import Host
from taskorch_nb.core.money import parse_usd
from taskorch_nb.errors import ConfigurationError

ENGINES = ("local", "ray")


def new_batch(host: Host, tasks: Iterable[str], *, budget: Any, run_budget: Any = None,
              engine: str = "local", max_concurrency: int | None = None,
              workers: int | None = None, default_budget: Decimal, warn_below: float = 0.20,
              recipe: Callable[[], Any] | None = None, options: dict[str, Any]) -> Batch:
    """A batch, prepared and not started: `schedule()` or `wait()` starts it.

    `recipe` builds an equal Orchestrator in another process (engine="ray")."""
    items = check_tasks(tasks)
    total = default_budget if budget is None else parse_usd(budget, "budget")
    cap = None if run_budget is None else parse_usd(run_budget, "run_budget")
    if cap is not None and cap > total:
        raise ConfigurationError(f"run_budget {cap} is more than the batch's budget {total}: "
                                 "a run could never spend it")
    concurrency = check_concurrency(max_concurrency)
    if engine not in ENGINES:
        raise ConfigurationError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if engine == "local":
        if workers is not None:
            raise ConfigurationError("workers= is for engine='ray'; a local batch runs in this "
                                     "process (bound it with max_concurrency=)")
        from taskorch_nb.batch.local import LocalEngine

        chosen: Any = LocalEngine(host, budget=total, warn_below=warn_below)
    else:
        from taskorch_nb.batch.ray_engine import RayEngine

        if recipe is None:
            raise ConfigurationError("engine='ray' needs a way to build the workers' "
                                     "Orchestrator (call it through Orchestrator.map)")
        chosen = RayEngine(host, recipe=recipe, budget=total, workers=workers)
    batch = Batch(items, budget=total, run_budget=cap, options=options, engine=chosen,
                  max_concurrency=concurrency)
    chosen.prepare(batch)
    return batch


__all__ = ["ENGINES", "new_batch"]
