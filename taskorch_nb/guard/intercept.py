"""The seam: a scoped patch of `send` on httpx's clients, the HTTP layer the SDKs share.

The official `openai` and `anthropic` SDKs (and frameworks built on them, such as
langchain-openai) send every request through `Client.send` / `AsyncClient.send` of
httpx, or of its fork httpx2 (the SDKs' 2026 releases). While at least one guard is
open, both methods are replaced by wrappers that hand a model request to the guard of
the current context (a context variable) and pass everything else through untouched;
the last guard to close puts the originals back.

Context variables follow asyncio tasks by themselves, but not threads. While a guard
is open, `threading.Thread.start` and `ThreadPoolExecutor.submit` are wrapped too, so a
thread or pool job started inside the block runs in the block's context: its calls are
seen. A thread started before the block, another process, or another HTTP stack
(requests, aiohttp, urllib) is not.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: The guard that calls made in this context go through (None: no guard).
current: contextvars.ContextVar[Any] = contextvars.ContextVar("taskorch_guard", default=None)

#: The HTTP stacks intercepted, when installed.
STACKS = ("httpx", "httpx2")

_lock = threading.Lock()
_users = 0
_saved: list[tuple[Any, str, Any]] = []


def modules() -> list[Any]:
    """The installed HTTP stacks the guard intercepts (imported if needed)."""
    found = []
    for name in STACKS:
        if importlib.util.find_spec(name) is not None:
            found.append(importlib.import_module(name))
    return found


def install() -> None:
    """Put the wrappers in place (counted: each `install` needs its `uninstall`)."""
    global _users
    with _lock:
        _users += 1
        if _users > 1:
            return
        for module in modules():
            _replace(module.Client, "send", _sync_send(module.Client.send, module))
            _replace(module.AsyncClient, "send", _async_send(module.AsyncClient.send, module))
        _replace(threading.Thread, "start", _thread_start(threading.Thread.start))
        _replace(ThreadPoolExecutor, "submit", _submit(ThreadPoolExecutor.submit))


def uninstall() -> None:
    global _users
    with _lock:
        _users -= 1
        if _users > 0:
            return
        _users = 0
        while _saved:
            owner, name, original = _saved.pop()
            setattr(owner, name, original)


def installed() -> bool:
    return _users > 0


def _replace(owner: Any, name: str, wrapper: Any) -> None:
    _saved.append((owner, name, owner.__dict__[name]))
    setattr(owner, name, wrapper)


def _guard_for(client: Any) -> Any:
    guard = current.get()
    if guard is None or not guard.open or guard.exempt(client):
        return None
    return guard


def _sync_send(original: Callable[..., Any], module: Any) -> Callable[..., Any]:
    def send(self: Any, request: Any, **options: Any) -> Any:
        guard = _guard_for(self)
        if guard is None:
            return original(self, request, **options)
        return guard.handle(module, request,
                            lambda req: original(self, req, **options),
                            stream=options.get("stream", False))

    send.__wrapped__ = original  # type: ignore[attr-defined]
    return send


def _async_send(original: Callable[..., Any], module: Any) -> Callable[..., Any]:
    async def send(self: Any, request: Any, **options: Any) -> Any:
        guard = _guard_for(self)
        if guard is None:
            return await original(self, request, **options)
        return await guard.ahandle(module, request,
                                   lambda req: original(self, req, **options),
                                   stream=options.get("stream", False))

    send.__wrapped__ = original  # type: ignore[attr-defined]
    return send


def _thread_start(original: Callable[..., Any]) -> Callable[..., Any]:
    def start(self: threading.Thread) -> None:
        if current.get() is not None:
            context = contextvars.copy_context()
            run = self.run
            self.run = lambda: context.run(run)  # type: ignore[method-assign]
        original(self)

    return start


def _submit(original: Callable[..., Any]) -> Callable[..., Any]:
    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> Any:
        if current.get() is not None:
            context = contextvars.copy_context()
            return original(self, context.run, fn, *args, **kwargs)
        return original(self, fn, *args, **kwargs)

    return submit


__all__ = ["STACKS", "current", "install", "installed", "modules", "uninstall"]
