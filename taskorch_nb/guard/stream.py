"""A streamed answer is settled when it ends: its bytes pass through a meter.

The response's byte stream is swapped for one that feeds every chunk to a
`StreamMeter` on its way to the SDK and settles once, when the stream is exhausted or
closed (an agent that stops reading early pays for what it read). The wrapper is made
as a subclass of the HTTP stack's own stream class, which httpx checks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from taskorch_nb.guard.wire import StreamMeter, Tokens


class _Once:
    def __init__(self, meter: StreamMeter, done: Callable[[Tokens], None]) -> None:
        self.meter = meter
        self._done: Callable[[Tokens], None] | None = done
        self._lock = threading.Lock()

    def finish(self) -> None:
        with self._lock:
            done, self._done = self._done, None
        if done is not None:
            done(self.meter.tokens())


@functools.cache
def _sync_class(base: type) -> type:
    class MeteredStream(base):  # type: ignore[misc, valid-type]
        def __init__(self, inner: Any, once: _Once) -> None:
            self._inner = inner
            self._once = once

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self._inner:
                    self._once.meter.feed(chunk)
                    yield chunk
            finally:
                self._once.finish()

        def close(self) -> None:
            try:
                self._inner.close()
            finally:
                self._once.finish()

    return MeteredStream


@functools.cache
def _async_class(base: type) -> type:
    class AsyncMeteredStream(base):  # type: ignore[misc, valid-type]
        def __init__(self, inner: Any, once: _Once) -> None:
            self._inner = inner
            self._once = once

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self._inner:
                    self._once.meter.feed(chunk)
                    yield chunk
            finally:
                self._once.finish()

        async def aclose(self) -> None:
            try:
                await self._inner.aclose()
            finally:
                self._once.finish()

    return AsyncMeteredStream


def meter_stream(module: Any, response: Any, meter: StreamMeter,
                 done: Callable[[Tokens], None]) -> Any:
    """Route the response's bytes through `meter`; `done(tokens)` runs once at the end."""
    once = _Once(meter, done)
    inner = response.stream
    if isinstance(inner, module.AsyncByteStream):
        response.stream = _async_class(module.AsyncByteStream)(inner, once)
    else:
        response.stream = _sync_class(module.SyncByteStream)(inner, once)
    return response


__all__ = ["meter_stream"]
