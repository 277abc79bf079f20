"""wait_for: the one door from sync code into a coroutine, with or without a running loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taskorch_nb.engine.sync import wait_for


async def where() -> tuple[str, asyncio.AbstractEventLoop]:
    await asyncio.sleep(0)
    return threading.current_thread().name, asyncio.get_running_loop()


async def fail() -> None:
    await asyncio.sleep(0)
    raise KeyError("lost")


def test_without_a_loop_it_runs_here_and_closes_its_loop() -> None:
    thread, loop = wait_for(where())
    assert thread == threading.current_thread().name
    assert loop.is_closed()


async def test_inside_a_running_loop_it_runs_on_a_worker_threads_own_loop() -> None:
    mine = asyncio.get_running_loop()
    thread, loop = wait_for(where())  # blocking here would deadlock on `mine`
    assert thread.startswith("taskorch")
    assert loop is not mine
    assert loop.is_closed()
    assert not mine.is_closed()


@pytest.mark.parametrize("inside_a_loop", [False, True])
def test_the_coroutines_exception_reaches_the_caller(inside_a_loop: bool) -> None:
    if not inside_a_loop:
        with pytest.raises(KeyError, match="lost"):
            wait_for(fail())
        return

    async def caller() -> None:
        with pytest.raises(KeyError, match="lost"):
            wait_for(fail())

    asyncio.run(caller())
