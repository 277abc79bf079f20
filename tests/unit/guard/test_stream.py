"""A metered stream settles once: at its end, or when it is closed early."""

from __future__ import annotations

import httpx
import pytest

from taskorch_nb.guard import wire
from taskorch_nb.guard.stream import meter_stream

DATA = [b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n',
        b'data: {"choices": [{"delta": {"content": "b"}}]}\n\n', b"data: [DONE]\n\n"]


class _Chunks(httpx.SyncByteStream):
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self):
        yield from DATA

    def close(self) -> None:
        self.closed = True


class _AsyncChunks(httpx.AsyncByteStream):
    async def __aiter__(self):
        for chunk in DATA:
            yield chunk


def _meter() -> wire.StreamMeter:
    return wire.StreamMeter(wire.OPENAI_CHAT, estimated_input=5)


def test_a_read_stream_settles_once_with_what_passed() -> None:
    seen: list[wire.Tokens] = []
    inner = _Chunks()
    response = meter_stream(httpx, httpx.Response(200, stream=inner), _meter(), seen.append)
    assert b"".join(response.iter_bytes()) == b"".join(DATA)
    response.close()
    assert inner.closed
    assert seen == [wire.Tokens(5, 2, estimated=True)]


def test_a_stream_closed_early_pays_for_what_it_read() -> None:
    seen: list[wire.Tokens] = []
    response = meter_stream(httpx, httpx.Response(200, stream=_Chunks()), _meter(), seen.append)
    response.close()
    assert seen == [wire.Tokens(5, 0, estimated=True)]


@pytest.mark.asyncio
async def test_an_async_stream_is_metered_too() -> None:
    seen: list[wire.Tokens] = []
    response = meter_stream(httpx, httpx.Response(200, stream=_AsyncChunks()), _meter(),
                            seen.append)
    assert [c async for c in response.aiter_bytes()] != []
    await response.aclose()
    assert seen == [wire.Tokens(5, 2, estimated=True)]
