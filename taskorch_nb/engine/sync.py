"""Blocking twins of coroutines: `run_sync`, `resume_sync` and friends share this one door."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to the end from sync code, even where a loop already runs.

    Inside a running loop (a notebook cell) the coroutine gets a worker thread's own
    loop, because blocking the caller's loop on itself would deadlock.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="taskorch") as pool:
        return pool.submit(asyncio.run, coro).result()
