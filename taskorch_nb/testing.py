"""Test doubles for taskorch_nb users and for our own tests (public API).

`FakeClock` makes 30 s breaker timeouts pass in microseconds; `http_error`
and `FlakyTool` script the failures a real API produces, so you can test your
own agents without a network and without `unittest.mock`.
"""

from __future__ import annotations

import asyncio
import contextvars
import heapq
import itertools
import math
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from taskorch_nb.core.clock import settle_future
from taskorch_nb.core.pricing import PriceTable
from taskorch_nb.llm.faults import FaultPlan
from taskorch_nb.llm.simulated import ScriptedResponder, SimReply, SimRequest, SimulatedProvider

if TYPE_CHECKING:
    import httpx

__all__ = [
    "FakeClock",
    "FaultPlan",
    "FlakyTool",
    "NaiveOutcome",
    "ScriptedResponder",
    "SimReply",
    "SimRequest",
    "SimulatedProvider",
    "http_error",
    "naive_retry_agent",
]

T = TypeVar("T")


class _Entry:
    """A deadline on a `FakeClock`: a sleeper or timeout (bound to a loop) or a timer."""

    __slots__ = ("callback", "cancelled", "clock", "due", "loop", "when")

    def __init__(self, clock: FakeClock, when: float, loop: asyncio.AbstractEventLoop | None,
                 callback: Callable[[], Any]) -> None:
        self.clock = clock
        self.when = when
        self.loop = loop
        self.callback = callback
        self.cancelled = False
        self.due = False

    @property
    def drives(self) -> bool:
        """Tasks wait on it, so the clock may jump to it (timers and endless waits do not)."""
        return self.loop is not None and math.isfinite(self.when)

    def cancel(self) -> None:
        self.clock._cancel(self)

    def fire(self) -> None:
        loop = self.loop
        if loop is None or asyncio._get_running_loop() is loop:
            self.callback()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self.callback)


class _IdleHook:
    """Jumps the fake clocks waited on in one event loop when that loop is about to block.

    asyncio has no public "every task is blocked" signal; the selector's
    `select(timeout)` with a timeout other than 0 is exactly that moment (0 means
    callbacks are ready), so the hook wraps it. It first polls I/O without
    blocking, and only when nothing is ready does it schedule the jump.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, selector: Any) -> None:
        self.clocks: weakref.WeakSet[FakeClock] = weakref.WeakSet()
        self._loop = weakref.ref(loop)
        self._select = selector.select
        selector.select = self.select

    def select(self, timeout: float | None = None) -> Any:
        if timeout is None or timeout > 0:
            loop = self._loop()
            waiting = [clock for clock in self.clocks if clock._wants_jump(loop)]
            if waiting and loop is not None:
                events = self._select(0)
                if not events:
                    loop.call_soon(self._jump, loop, waiting)
                return events
        return self._select(timeout)

    @staticmethod
    def _jump(loop: asyncio.AbstractEventLoop, clocks: list[FakeClock]) -> None:
        for clock in clocks:
            clock._jump(loop)


_HOOKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _IdleHook] = (
    weakref.WeakKeyDictionary())


class _FakeTimeout:
    """`FakeClock.timeout`: asyncio's own `Timeout` (its cancel and uncancel bookkeeping),
    expired when the fake clock reaches the deadline instead of the loop's clock."""

    __slots__ = ("_clock", "_entry", "_inner", "_seconds")

    def __init__(self, clock: FakeClock, seconds: float | None) -> None:
        self._clock = clock
        self._seconds = seconds
        self._inner = asyncio.timeout(None)
        self._entry: _Entry | None = None

    async def __aenter__(self) -> _FakeTimeout:
        await self._inner.__aenter__()
        seconds = self._seconds
        if seconds is not None:
            loop = asyncio.get_running_loop()
            if seconds <= 0:
                self._inner.reschedule(loop.time())
            else:
                self._entry = self._clock._wait_entry(loop, seconds, self._expire)
        return self

    async def __aexit__(self, *exc_info: Any) -> bool | None:
        entry, self._entry = self._entry, None
        if entry is not None:
            entry.cancel()
        return await self._inner.__aexit__(*exc_info)

    def _expire(self) -> None:
        if self._entry is not None:  # still inside the block (a cross-thread wake may lag)
            self._inner.reschedule(asyncio.get_running_loop().time())

    def expired(self) -> bool:
        """The deadline passed and the block was cancelled."""
        return self._inner.expired()


class FakeClock:
    """A clock in fake time: when every task waits, it jumps to the next deadline.

    Starts at `start` (0.0), at wall time `epoch` (default `EPOCH`). `sleep(s)`
    and `timeout(s)` wait for deadlines in fake time; when the event loop has
    nothing left to run, the clock jumps to the earliest deadline a task waits
    for, as trio's `MockClock(autojump_threshold=0)` does. So a lone `sleep(s)`
    returns at once after advancing the clock by `s`, and concurrent sleeps of
    2 s and 4 s end at t=4. `advance(s)` moves time by
    hand; `slept` records every sleep asked for.

    Real work under fake time:
    - While a function started with `clock.to_thread` runs, the clock does not
      jump: fake time does not pass during real work, so a sync tool under a
      timeout is not cut short because the loop looked idle (`advance` still can).
    - Other real waits (a socket, a subprocess, a thread the clock did not start)
      count as blocked, as in trio: a fake deadline beside them may pass at once.
    - `call_later` timers fire as time passes them (in the thread that moves the
      clock) but never make it jump.
    - Jumps hook the selector of a stdlib event loop; on another loop (uvloop)
      `sleep(s)` advances the clock by `s` at once and timeouts need `advance`.
    """

    #: Wall time at `now() == 0.0` (2026-01-01 UTC), so timestamps look like dates.
    EPOCH = 1_767_225_600.0

    def __init__(self, start: float = 0.0, *, epoch: float | None = None) -> None:
        if epoch is not None:  # e.g. time.time(): fake time that starts today, real dates
            # whole seconds: a fake run's durations (wall differences) are exact and the
            # same whatever day it runs on
            self.EPOCH = float(round(epoch))
        self._now = float(start)
        self._lock = threading.RLock()  # the deadlines and the time
        self._moving = threading.RLock()  # one mover at a time; held while callbacks run
        self._heap: list[tuple[float, int, _Entry]] = []
        self._order = itertools.count()
        self._dead = 0  # cancelled entries still in the heap
        self._waits: dict[asyncio.AbstractEventLoop, int] = {}  # entries that drive jumps
        self._threads = 0  # clock.to_thread work still running
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self.EPOCH + self._now

    def advance(self, seconds: float) -> None:
        """Move time forward at once; what falls due fires in order (sleepers wake, timeouts
        expire, timers run here and see their own time)."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._moving:
            self._run_to(self._now + seconds)

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, float(seconds))
        self.slept.append(seconds)
        if seconds == 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        if not self._attach(loop):
            self.advance(seconds)
            await asyncio.sleep(0)
            return
        future = loop.create_future()
        entry = self._wait_entry(loop, seconds, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            entry.cancel()

    def timeout(self, seconds: float | None) -> _FakeTimeout:
        """`async with clock.timeout(s):` raises TimeoutError once fake time passes `s`."""
        return _FakeTimeout(self, seconds)

    async def to_thread(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run `fn` in a worker thread; the clock does not jump until it returns."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        context = contextvars.copy_context()

        def work() -> None:
            error, result = None, None
            try:
                result = context.run(fn, *args, **kwargs)
            except BaseException as exc:  # handed to the awaiting task, as asyncio.to_thread does
                error = exc
            finally:
                with self._lock:
                    self._threads -= 1
            if not loop.is_closed():  # the wake-up also lets the idle hook look again
                loop.call_soon_threadsafe(settle_future, future, error, result)

        with self._lock:
            self._threads += 1
        try:
            threading.Thread(target=work, name="taskorch-fakeclock-worker", daemon=True).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise
        self._attach(loop)
        return await future

    def call_later(self, seconds: float, callback: Callable[[], None]) -> _Entry:
        """Run `callback()` once fake time has moved `seconds` on (see the class notes)."""
        with self._lock:
            return self._push(_Entry(self, self._now + max(0.0, seconds), None, callback))

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"

    # -- the deadlines -------------------------------------------------------------------

    def _attach(self, loop: asyncio.AbstractEventLoop) -> bool:
        hook = _HOOKS.get(loop)
        if hook is None:
            selector = getattr(loop, "_selector", None)
            if selector is None or not callable(getattr(selector, "select", None)):
                return False
            hook = _HOOKS[loop] = _IdleHook(loop, selector)
        hook.clocks.add(self)
        return True

    def _wait_entry(self, loop: asyncio.AbstractEventLoop, seconds: float,
                    callback: Callable[[], Any]) -> _Entry:
        self._attach(loop)
        with self._lock:
            return self._push(_Entry(self, self._now + seconds, loop, callback))

    def _push(self, entry: _Entry) -> _Entry:  # lock held
        heapq.heappush(self._heap, (entry.when, next(self._order), entry))
        if entry.drives:
            self._waits[entry.loop] = self._waits.get(entry.loop, 0) + 1  # type: ignore[index]
        return entry

    def _cancel(self, entry: _Entry) -> None:
        with self._lock:
            if entry.cancelled or entry.due:
                return
            entry.cancelled = True
            self._forget(entry)
            self._dead += 1
            if self._dead > 64 and self._dead * 2 > len(self._heap):
                # Timeouts that never fire (every successful call) would pile up.
                self._heap[:] = [item for item in self._heap if not item[2].cancelled]
                heapq.heapify(self._heap)  # in place: a mover may hold the list
                self._dead = 0

    def _forget(self, entry: _Entry) -> None:  # lock held
        if entry.drives:
            loop = entry.loop
            left = self._waits[loop] - 1  # type: ignore[index]
            if left:
                self._waits[loop] = left  # type: ignore[index]
            else:
                del self._waits[loop]  # type: ignore[arg-type]

    def _run_to(self, target: float) -> None:  # `_moving` held, `_lock` not
        # Callbacks run outside `_lock`: a timer may take its owner's lock, and that owner
        # may be arming another timer on this clock right now.
        errors: list[Exception] = []
        heap = self._heap
        while True:
            with self._lock:
                while heap and heap[0][2].cancelled:
                    heapq.heappop(heap)
                    self._dead -= 1
                if not heap or heap[0][0] > target:
                    self._now = max(self._now, target)
                    break
                entry = heapq.heappop(heap)[2]
                entry.due = True
                self._forget(entry)
                self._now = max(self._now, entry.when)
            try:
                entry.fire()
            except Exception as exc:  # the other entries still fire; all errors are raised
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("FakeClock callbacks failed", errors)

    def _wants_jump(self, loop: asyncio.AbstractEventLoop | None) -> bool:
        return not self._threads and loop in self._waits

    def _jump(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop is idle: move to the earliest deadline a task of `loop` waits for."""
        with self._moving:
            with self._lock:
                if self._threads or loop not in self._waits:
                    return  # something changed since the hook looked
                target = min(when for when, _, entry in self._heap
                             if entry.loop is loop and entry.drives and not entry.cancelled)
            self._run_to(target)


def http_error(status: int, *, url: str = "https://api.example/search",
               retry_after: float | None = None, text: str | None = None) -> httpx.HTTPStatusError:
    """The exception httpx raises for an HTTP error answer (`raise_for_status`)."""
    import httpx  # ~0.3 s: only for tests that script HTTP failures, not `import taskorch_nb`

    request = httpx.Request("GET", url)
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    response = httpx.Response(status, request=request, headers=headers, text=text or "")
    phrase = response.reason_phrase
    return httpx.HTTPStatusError(f"{status} {phrase}", request=request, response=response)


class FlakyTool:
    """An async tool that fails as scripted, then answers: `FlakyTool([504, 504], "ok")`.

    Each item of `failures` is an HTTP status (raised as `http_error`) or an
    exception instance; after them every call returns `result(**kwargs)` (or
    `result` itself when it is not callable). `calls` records the arguments.
    """

    def __init__(self, failures: Iterable[int | BaseException] = (),
                 result: Any = "ok", *, always: int | BaseException | None = None) -> None:
        self.failures = list(failures)
        self.always = always
        self.result = result
        self.calls: list[dict[str, Any]] = []

    def _next_error(self) -> BaseException | None:
        if self.failures:
            item = self.failures.pop(0)
        elif self.always is not None:
            item = self.always
        else:
            return None
        return http_error(item) if isinstance(item, int) else item

    async def __call__(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        error = self._next_error()
        if error is not None:
            raise error
        result = self.result
        return result(**kwargs) if callable(result) else result


@dataclass
class NaiveOutcome:
    """What the naive agent cost before it gave up (or succeeded)."""

    iterations: int
    model_calls: int
    tool_calls: int
    cost: Decimal
    succeeded: bool


async def naive_retry_agent(
    provider: Any,
    tool: Callable[..., Awaitable[Any]],
    *,
    task: str,
    model: str = "sim-small",
    tool_cost: Decimal = Decimal("0"),
    max_iterations: int = 100,
    prices: Any = None,
    **arguments: Any,
) -> NaiveOutcome:
    """The agent without taskorch_nb (seed flow 7's "old agent"): ask the model, call the
    tool, and on failure retry at once, with no backoff, no breaker and no budget.

    Bounded by `max_iterations` only so that tests end; the real thing is not. Model
    calls are priced as an Orchestrator prices them (`prices`: an `orch.prices`, or the
    same overrides `Orchestrator(prices=...)` takes).
    """
    if not isinstance(prices, PriceTable):
        prices = PriceTable(prices, clock=getattr(provider, "clock", None))
    cost = Decimal("0")
    messages = [{"role": "user", "content": f"{task}: call the search tool"}]
    for iteration in range(1, max_iterations + 1):
        completion = await provider.complete(messages, model=model, max_tokens=256)
        usage = completion.usage
        cost += prices.cost(provider.price_provider, model, input_tokens=usage.input_tokens,
                            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
                            cache_write_tokens=usage.cache_write_tokens)
        cost += tool_cost
        try:
            await tool(**arguments)
        except Exception:  # the naive agent's whole strategy: try again, immediately
            continue
        return NaiveOutcome(iteration, iteration, iteration, cost, True)
    return NaiveOutcome(max_iterations, max_iterations, max_iterations, cost, False)
