"""The provider seam: token estimates and how HTTP failures map to typed errors.

The failure tests run against both HTTP providers, in-process through
httpx.MockTransport; one test per provider (the client timeout) runs on a real
loopback server, where only a socket can be slow.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from email.utils import formatdate

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskorch_nb.core.tools import ToolSchema
from taskorch_nb.errors import (
    ProviderError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
)
from taskorch_nb.llm import (
    AnthropicProvider,
    OpenAIProvider,
    Provider,
    estimate_input_tokens,
)
from taskorch_nb.llm.base import HTTPProvider, unfence
from taskorch_nb.llm.simulated import count_input_tokens
from taskorch_nb.testing import FakeClock
from tests.unit.llm_servers import (
    Answer,
    LoopbackServer,
    MockServer,
    Recorded,
    Scripted,
    anthropic_body,
    openai_body,
)

USER = [{"role": "user", "content": "Say hello"}]

# --- estimate_input_tokens -----------------------------------------------------------------------


def test_estimate_follows_the_documented_rule() -> None:
    messages = [
        {"role": "system", "content": "x" * 30},  # 10 + 8
        {"role": "user", "content": "y" * 31},  # 11 + 8
    ]
    assert estimate_input_tokens(messages) == 37
    tools = [{"name": "t", "description": "", "parameters": {}}]
    extra = -(-len('[{"name": "t", "description": "", "parameters": {}}]') // 3)
    assert estimate_input_tokens(messages, tools) == 37 + extra


def test_estimate_counts_tool_calls_and_non_ascii_conservatively() -> None:
    plain = estimate_input_tokens([{"role": "assistant", "content": None}])
    with_call = estimate_input_tokens(
        [{"role": "assistant", "content": None,
          "tool_calls": [{"id": "c1", "name": "search", "arguments": {"q": "x"}}]}]
    )
    assert plain == 8
    assert with_call > plain
    # CJK text costs about a token per character; the estimate must not fall below that.
    assert estimate_input_tokens([{"role": "user", "content": "漢" * 90}]) >= 90


messages_strategy = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["system", "user", "assistant", "tool"]),
         "content": st.one_of(st.none(), st.text(max_size=200))}
    ),
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(messages=messages_strategy, tool_text=st.text(max_size=80))
def test_estimate_never_below_the_simulated_count(messages: list[dict], tool_text: str) -> None:
    tools = [{"name": "t", "description": tool_text, "parameters": {"type": "object"}}]
    assert estimate_input_tokens(messages, tools) >= count_input_tokens(messages, tools)


@settings(max_examples=60, deadline=None)
@given(messages=messages_strategy, texts=st.lists(st.text(max_size=40), min_size=1, max_size=4),
       plain_too=st.booleans())
def test_frozen_tool_schemas_count_as_their_json(messages: list[dict], texts: list[str],
                                                  plain_too: bool) -> None:
    """Sizes measured once per ToolSchema give the same counts as serialising the list."""
    plain = [{"name": f"t{i}", "description": text, "parameters": {"type": "object"}}
             for i, text in enumerate(texts)]
    frozen: list[dict] = [ToolSchema(t) for t in plain]
    if plain_too:
        frozen[0] = plain[0]  # a caller's own dict beside the engine's
    for _ in range(2):  # the second round reads the cached sizes
        assert estimate_input_tokens(messages, frozen) == estimate_input_tokens(messages, plain)
        assert count_input_tokens(messages, frozen) == count_input_tokens(messages, plain)


def test_a_tool_schema_is_frozen_but_copies_freely() -> None:
    schema = ToolSchema(name="t", description="d", parameters={})
    with pytest.raises(TypeError, match="frozen"):
        schema["name"] = "u"
    with pytest.raises(TypeError, match="frozen"):
        schema.update(name="u")
    assert copy.deepcopy(schema) == schema == dict(schema)
    assert type(copy.copy(schema)) is ToolSchema
    assert {**schema, "name": "u"}["name"] == "u"


# --- HTTP failures, both providers ---------------------------------------------------------------

OK_BODY = {"openai": openai_body(), "anthropic": anthropic_body()}


@pytest.fixture(params=["openai", "anthropic"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make(kind: str) -> Iterator[Callable[..., HTTPProvider]]:
    """Build the provider under test against a scripted server."""
    made: list[HTTPProvider] = []

    def build(server: Scripted, **kw: object) -> HTTPProvider:
        cls = OpenAIProvider if kind == "openai" else AnthropicProvider
        kw.setdefault("clock", FakeClock())
        provider = cls(api_key="sk-test", base_url=server.url,  # type: ignore[arg-type]
                       transport=server.transport, **kw)
        made.append(provider)
        return provider

    yield build
    # Clients open lazily, inside a loop; every test that calls closes its provider (`call`).
    assert all(p._client is None for p in made), "a test left a provider open"


async def call(provider: HTTPProvider, model: str = "m-1") -> object:
    try:
        return await provider.complete(USER, model=model, max_tokens=16)
    finally:
        await provider.aclose()


def test_http_providers_satisfy_the_protocol(make: Callable[..., HTTPProvider]) -> None:
    assert isinstance(make(MockServer(lambda _r: Answer())), Provider)


async def test_success_measures_latency_on_the_injected_clock(
    kind: str, make: Callable[..., HTTPProvider]
) -> None:
    class TickClock(FakeClock):
        def now(self) -> float:
            self.advance(0.25)
            return super().now()

    with MockServer(lambda _r: Answer(body=OK_BODY[kind])) as server:
        completion = await call(make(server, clock=TickClock()))
    assert completion.text == "Hello!"
    assert completion.provider == kind
    assert completion.latency == 0.25


async def test_429_is_a_rate_limit_with_retry_after(
    kind: str, make: Callable[..., HTTPProvider]
) -> None:
    body = {"error": {"type": "rate_limit_error", "message": "slow down"}}
    answer = Answer(status=429, body=body, headers={"retry-after": "7"})
    with MockServer(lambda _r: answer) as server, pytest.raises(RateLimitError) as info:
        await call(make(server), model="m-429")
    err = info.value
    assert (err.status, err.retry_after, err.provider, err.model) == (429, 7.0, kind, "m-429")
    assert "slow down" in str(err)


async def test_429_with_an_http_date(kind: str, make: Callable[..., HTTPProvider]) -> None:
    clock = FakeClock()
    date = formatdate(clock.wall() + 12, usegmt=True)
    answer = Answer(status=429, body={}, headers={"retry-after": date})
    with MockServer(lambda _r: answer) as server, pytest.raises(RateLimitError) as info:
        await call(make(server, clock=clock))
    assert info.value.retry_after == 12.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 529])
async def test_server_errors_carry_status_and_a_bounded_body(
    kind: str, make: Callable[..., HTTPProvider], status: int
) -> None:
    body = {"error": {"message": "upstream broke"}, "padding": "z" * 2000}
    with MockServer(lambda _r: Answer(status=status, body=body)) as server, \
            pytest.raises(ProviderError) as info:
        await call(make(server))
    err = info.value
    assert type(err) is ProviderError
    assert (err.status, err.provider, err.model) == (status, kind, "m-1")
    assert err.body is not None
    assert len(err.body) == 500
    assert "upstream broke" in str(err)


async def test_401_is_a_plain_provider_error(kind: str, make: Callable[..., HTTPProvider]) -> None:
    body = {"error": {"message": "invalid x-api-key"}}
    with MockServer(lambda _r: Answer(status=401, body=body)) as server, \
            pytest.raises(ProviderError) as info:
        await call(make(server))
    assert type(info.value) is ProviderError
    assert info.value.status == 401


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"unexpected": true}', b""],
    ids=["broken", "list", "missing-fields", "empty"],
)
async def test_unusable_answers_are_response_errors(
    make: Callable[..., HTTPProvider], body: bytes
) -> None:
    with MockServer(lambda _r: Answer(body=body)) as server, \
            pytest.raises(ProviderResponseError) as info:
        await call(make(server))
    assert info.value.status == 200
    assert info.value.model == "m-1"


async def test_slow_server_times_out(kind: str, make: Callable[..., HTTPProvider]) -> None:
    answer = Answer(body=OK_BODY[kind], delay=30.0)
    # The one real socket per provider: only a real transport enforces the timeout.
    with LoopbackServer(lambda _r: answer) as server, pytest.raises(ProviderTimeoutError) as info:
        await call(make(server, timeout=0.2))
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    assert (info.value.provider, info.value.model) == (kind, "m-1")


async def test_refused_connection_keeps_the_httpx_cause(
    kind: str, make: Callable[..., HTTPProvider]
) -> None:
    def refuse(_request: Recorded) -> Answer:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(ProviderError) as info:
        await call(make(MockServer(refuse)))
    assert type(info.value) is ProviderError
    assert info.value.status is None
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert info.value.provider == kind


def test_a_provider_survives_a_new_event_loop(kind: str, make: Callable[..., HTTPProvider]) -> None:
    """Notebooks call `asyncio.run` again and again; each loop gets its own client."""
    with MockServer(lambda _r: Answer(body=OK_BODY[kind])) as server:
        provider = make(server)
        first = asyncio.run(provider.complete(USER, model="m", max_tokens=4))
        second = asyncio.run(call(provider))
    assert first.text == second.text == "Hello!"
    assert len(server.requests) == 2


# -- code fences -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "inner"),
    [
        ('```json\n{"a": 1}\n```', '{"a": 1}'),
        ('  ```\n{"a": 1}\n```  \n', '{"a": 1}'),
        ('```JSON\n{"a": 1}```', '{"a": 1}'),
        ('```{"a": 1}```', '{"a": 1}'),
        ('```python\nprint("```")\n```', 'print("```")'),  # only the outer fence goes
        ('{"a": 1}', '{"a": 1}'),
        ('Here it is:\n```json\n{"a": 1}\n```', 'Here it is:\n```json\n{"a": 1}\n```'),
    ],
)
def test_unfence(text: str, inner: str) -> None:
    assert unfence(text) == inner


def test_agents_and_anthropic_unfence_alike() -> None:
    from pydantic import BaseModel

    from taskorch_nb.agents.loop import parse_output
    from taskorch_nb.llm.anthropic import parse_response

    class Answer(BaseModel):
        a: int

    fenced = '```json\n{"a": 1}\n```'
    body = {"content": [{"type": "text", "text": fenced}],
            "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert parse_response(body, model="m", latency=0.1, wants_json=True).text == '{"a": 1}'
    assert parse_response(body, model="m", latency=0.1).text == fenced  # asked for text
    assert parse_output(Answer, fenced) == Answer(a=1)
