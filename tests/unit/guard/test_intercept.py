"""The scoped patch: counted, undone, and carried into threads and pools started inside."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import httpx2

from taskorch_nb.guard import intercept


def test_install_is_counted_and_undone_by_the_last_uninstall() -> None:
    originals = (httpx.Client.send, httpx2.AsyncClient.send, threading.Thread.start,
                 ThreadPoolExecutor.submit)
    intercept.install()
    intercept.install()
    assert httpx.Client.send is not originals[0]
    assert httpx2.AsyncClient.send.__wrapped__ is originals[1]
    intercept.uninstall()
    assert intercept.installed()
    intercept.uninstall()
    assert not intercept.installed()
    assert (httpx.Client.send, httpx2.AsyncClient.send, threading.Thread.start,
            ThreadPoolExecutor.submit) == originals


def test_both_http_stacks_are_intercepted() -> None:
    assert [m.__name__ for m in intercept.modules()] == ["httpx", "httpx2"]


def test_threads_and_pool_jobs_started_under_a_guard_see_it() -> None:
    marker = object()
    seen: dict[str, object] = {}
    intercept.install()
    token = intercept.current.set(marker)
    try:
        thread = threading.Thread(target=lambda: seen.update(thread=intercept.current.get()))
        thread.start()
        thread.join()
        with ThreadPoolExecutor(1) as pool:
            seen["pool"] = pool.submit(intercept.current.get).result()
    finally:
        intercept.current.reset(token)
        intercept.uninstall()
    assert seen == {"thread": marker, "pool": marker}


def test_without_a_guard_threads_see_none() -> None:
    intercept.install()
    try:
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(intercept.current.get).result() is None
    finally:
        intercept.uninstall()
