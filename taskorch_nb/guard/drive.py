"""The two drivers of a guarded request, sync and async: send, wait, try again, answer.

Both ask the `Call` what to do at each step, so they share one policy; they differ only
in how they send, sleep and read (a fake clock moves on the sync path).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from taskorch_nb.core.retry import Failure
from taskorch_nb.guard import wire
from taskorch_nb.guard.call import Call, blocking_sleep
from taskorch_nb.guard.refusal import no_retry
from taskorch_nb.guard.stream import meter_stream
from taskorch_nb.llm.registry import is_local


def handle(guard: Any, module: Any, request: Any, send: Callable[[Any], Any], *,
       stream: bool) -> Any:
    """One request sent through a sync client inside `guard`."""
    call = _call(guard, module, request)
    if not isinstance(call, Call):
        return send(request) if call is None else call
    with guard.scope():
        refusal = call.admit()
        if refusal is not None:
            return refusal.response(module, request)
        while True:
            response = None
            try:
                response = send(call.outgoing())
            except module.TransportError as exc:
                failure = call.failure_of(error=exc)
            except BaseException as exc:
                call.give_up(call.failure_of(error=exc) if isinstance(exc, Exception)
                             else _cancelled())
                raise
            else:
                failure = call.failure_of(response)
                if failure is None:
                    return _answer(guard, call, module, response, stream)
                if call.without_usage_option(failure):
                    response.close()
                    continue
            wait = call.next_wait(failure, guard.retry)
            if wait is None:
                call.give_up(failure)
                return call.transport_answer(failure) if response is None \
                    else no_retry(response)
            if response is not None:
                response.close()
            blocking_sleep(guard.clock, wait)
            refusal = call.acquire()
            if refusal is not None:
                return refusal.response(module, request)


async def ahandle(guard: Any, module: Any, request: Any,
              send: Callable[[Any], Awaitable[Any]], *, stream: bool) -> Any:
    """One request sent through an async client inside `guard`."""
    call = _call(guard, module, request)
    if not isinstance(call, Call):
        return await send(request) if call is None else call
    with guard.scope():
        refusal = call.admit()
        if refusal is not None:
            return refusal.response(module, request)
        while True:
            response = None
            try:
                response = await send(call.outgoing())
            except module.TransportError as exc:
                failure = call.failure_of(error=exc)
            except BaseException as exc:
                call.give_up(call.failure_of(error=exc) if isinstance(exc, Exception)
                             else _cancelled())
                raise
            else:
                failure = call.failure_of(response)
                if failure is None:
                    if not stream or _is_sse(response):
                        return _answer(guard, call, module, response, stream)
                    await response.aread()
                    return _answer(guard, call, module, response, False)
                if call.without_usage_option(failure):
                    await response.aclose()
                    continue
            wait = call.next_wait(failure, guard.retry)
            if wait is None:
                call.give_up(failure)
                return call.transport_answer(failure) if response is None \
                    else no_retry(response)
            if response is not None:
                await response.aclose()
            await guard.clock.sleep(wait)
            refusal = call.acquire()
            if refusal is not None:
                return refusal.response(module, request)


def _call(guard: Any, module: Any, request: Any) -> Call | Any:
    """The request's `Call`, None for a request that is not a model call, or the
    answer to a model request the guard cannot read."""
    kind = wire.kind_of(request.method, request.url.path)
    if kind is None:
        return None
    try:
        if not request.content and hasattr(request, "read"):
            request.read()
        ask = wire.read_ask(kind, request.content, guard.default_max_tokens)
    except ValueError as exc:
        return guard.refuse(wire.Ask(kind, "", "", False, 0, 0, {}), "unreadable", 400,
                           f"the guard cannot read this model request: {exc}"
                           ).response(module, request)
    return Call(guard, ask, request, module, local=_local(request.url.host))


def _answer(guard: Any, call: Call, module: Any, response: Any, stream: bool) -> Any:
    call.succeeded()
    sse = _is_sse(response)
    if stream and sse:
        meter = wire.StreamMeter(call.ask.kind, call.ask.input_tokens)

        def done(tokens: wire.Tokens) -> None:
            with guard.scope():  # the SDK reads the stream outside the request's scope
                call.settle(tokens)
            guard.track(finish, done=True)

        def finish() -> None:
            done(meter.tokens())

        guard.track(finish)
        return meter_stream(module, response, meter, done)
    if stream:
        response.read()
    if sse:
        meter = wire.StreamMeter(call.ask.kind, call.ask.input_tokens)
        meter.feed(response.content)
        call.settle(meter.tokens())
    else:
        call.settle(call.read_whole(response))
    return response


@functools.lru_cache(maxsize=256)
def _local(host: str) -> bool:
    """A loopback or private host (free models), asked once per host."""
    return is_local(f"http://[{host}]/" if ":" in host else f"http://{host}/")


def _is_sse(response: Any) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _cancelled() -> Failure:
    return Failure("cancelled", False, message="the call was cancelled")


__all__ = ["ahandle", "handle"]
