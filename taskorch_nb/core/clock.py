"""Injectable time: every wait, timeout, deadline, timer and timestamp in the core reads a clock.

A component never calls `time.*`, `asyncio.sleep`, `asyncio.timeout` or
`threading.Timer` itself: it asks its clock. `RealClock` hands the machine's
primitives out as they are (the tool call's hot path pays no wrapper), but for
`to_thread`, whose workers are daemon threads (a hung sync tool cannot block exit),
and `timeout`, whose long limits share one timer per loop (core/watchdog.py);
`taskorch_nb.testing.FakeClock` gives the same calls in fake time, so a test
full of 30 s timeouts runs in microseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from taskorch_nb.core import watchdog

T = TypeVar("T")


class Cancellable(Protocol):
    """A timer armed with `Clock.call_later`."""

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic time for durations, wall time for timestamps, and every way to wait.

    `timeout` and `to_thread` are here, not in asyncio, so that a fake clock can
    decide when a deadline passes and know when real work is going on in a thread.
    """

    def now(self) -> float:
        """Monotonic seconds (durations, deadlines)."""
        ...

    def wall(self) -> float:
        """Seconds since the Unix epoch (timestamps, HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` (<= 0: just yield to the loop)."""
        ...

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        """`async with clock.timeout(s):` cancels the block after `s` and raises TimeoutError
        (as `asyncio.timeout`); None never expires."""
        ...

    async def to_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a blocking `fn` in a worker thread (as `asyncio.to_thread`)."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        """Run `callback()` once, `seconds` from now, on a thread of the clock's choosing.

        For sync components (the store's batch writer) that have no loop to sleep on.
        """
        ...


class RealClock:
    """The machine's clocks; each method is the stdlib primitive itself, but `to_thread`."""

    def __init__(self) -> None:
        # Bound builtins: the hot path reads the clock and enters timeouts several
        # times per call, and an attribute holding the primitive costs no extra frame.
        self.now = time.monotonic
        self.wall = time.time
        self.sleep = asyncio.sleep  # (a delay <= 0 only yields, as `sleep` promises)
        self.timeout = watchdog.timeout

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def timeout(self, seconds: float | None) -> AbstractAsyncContextManager[Any]:
        return watchdog.timeout(seconds)  # long ones share one timer (core/watchdog.py)

    async def to_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        # Not asyncio.to_thread: its executor's threads are joined at exit, so one hung
        # sync tool that timed out would keep the process from ever exiting.
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        _POOL.submit(loop, future, contextvars.copy_context(), fn, args, kwargs)
        return await future

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Cancellable:
        timer = threading.Timer(max(0.0, seconds), callback)
        timer.daemon = True  # a pending flush must not keep the interpreter alive
        timer.name = "taskorch-timer"
        timer.start()
        return timer

    def __repr__(self) -> str:
        return "RealClock()"


class _DaemonPool:
    """Worker threads that never hold the interpreter open; one more per busy moment.

    Idle workers wait `IDLE_SECONDS` for work, then end, so a burst leaves no threads behind.
    """

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any],
               context: contextvars.Context, fn: Callable[..., Any], args: tuple[Any, ...],
               kwargs: dict[str, Any]) -> None:
        with self._lock:
            spawn = self._idle == 0
            if not spawn:
                self._idle -= 1  # claimed: the next submit will not count on this worker
        self._work.put((loop, future, context, fn, args, kwargs))
        if spawn:
            threading.Thread(target=self._worker, name="taskorch-worker", daemon=True).start()

    def _worker(self) -> None:
        while True:
            try:
                loop, future, context, fn, args, kwargs = self._work.get(
                    timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0 and self._work.empty():
                        self._idle -= 1
                        return
                continue  # a submit claimed this worker just now: its item is coming
            error: BaseException | None = None
            result: Any = None
            try:
                result = context.run(fn, *args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task, as asyncio.to_thread
                error = exc
            # the loop may close between the check and the call: then nobody waits
            with contextlib.suppress(RuntimeError):
                if not loop.is_closed():
                    loop.call_soon_threadsafe(settle_future, future, error, result)
            with self._lock:
                self._idle += 1


def settle_future(future: asyncio.Future[Any], error: BaseException | None,
                  result: Any) -> None:
    """Hand a worker thread's outcome to the task awaiting `future` (on the loop's thread)."""
    if future.done():
        return  # the caller stopped waiting (cancelled, timed out)
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_POOL = _DaemonPool()
