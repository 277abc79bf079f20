"""The client side of federation: push this project's patterns, pull everyone's.

All HTTP goes through one private method, `_send`, so the product's retry and
circuit breaker can wrap the hub like any other flaky dependency. Pulled
patterns keep their `source` and `trust`; a `TrustPolicy` marks whether their
fallback may be taken automatically (`apply_fallback`). Their corrective prompt
never is: it waits for a person here (`ImmuneSystem.approve`), whatever the hub says.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import httpx

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.pattern_record import RECORD_FIELDS
from taskorch_nb.core.retry import parse_retry_after
from taskorch_nb.errors import ConfigurationError, HubError
from taskorch_nb.federation.schema import MAX_BODY_BYTES, MAX_PATTERNS_PER_PUSH


class HubUnavailableError(HubError, ConnectionError):
    """No HTTP answer: the hub is down or unreachable (transient; status 0)."""


class HubTimeoutError(HubError, TimeoutError):
    """The hub did not answer within the client's timeout (transient; status 0)."""


class HubRateLimitedError(HubError):
    """429 from the hub; `retry_after` is its Retry-After in seconds (None if absent)."""

    def __init__(self, status: int, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(status, reason)
        self.retry_after = retry_after


class PatternSource(Protocol):
    """What a client binds to (the immune system): export own records, merge federated ones.

    `export()` must return only this project's own totals (wire format): the hub
    keeps them per project, so exporting merged-in federated counts would count
    them twice.
    """

    def export(self) -> list[dict[str, Any]]: ...

    def merge_federated(self, records: list[dict[str, Any]]) -> int: ...


class TrustPolicy:
    """Which pulled strategies may be applied automatically, without a person deciding.

    Only structured ones: a fallback naming a locally registered tool. A pulled
    corrective prompt is other projects' words; no policy lets it reach a model
    before a person here approved it (`ImmuneSystem.approve`).
    """

    def __init__(self, *, fallbacks: bool = True) -> None:
        self.fallbacks = fallbacks
        """Whether a fallback to a locally registered tool may be taken automatically."""

    def allows_fallback(self, record: Mapping[str, Any], local_tools: Iterable[str]) -> bool:
        fallback = record.get("fallback")
        return self.fallbacks and fallback is not None and fallback in set(local_tools)

    def mark(self, records: list[dict[str, Any]],
             local_tools: Iterable[str]) -> list[dict[str, Any]]:
        """Set each record's `apply_fallback` as this policy allows."""
        local = set(local_tools)
        for record in records:
            record["apply_fallback"] = self.allows_fallback(record, local)
        return records

    def __repr__(self) -> str:
        return f"TrustPolicy(fallbacks={self.fallbacks})"


class FederationClient:
    """Talks to a federation hub for one project: `push`, `pull`, `sync`."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        project: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        policy: TrustPolicy | None = None,
        page_size: int = 500,
        max_body: int = MAX_BODY_BYTES,
        auto_push: bool = True,
        clock: Clock | None = None,
    ) -> None:
        if not token:
            raise ConfigurationError("FederationClient needs a token (taskorch-nb hub token ...)")
        self.url = url.rstrip("/")
        self.project = project
        self.policy = policy or TrustPolicy()
        self.page_size = page_size
        self.max_body = max_body
        self.auto_push = auto_push
        """Push new patterns when a run that learned some finishes (the run's learning step)."""
        self.cursor: str | None = None
        """Where the next pull starts; None pulls everything."""
        self._token = token
        self._transport = transport
        self._timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._source: PatternSource | None = None
        self._tools: Callable[[], Iterable[str]] | None = None
        self._pulling = asyncio.Lock()
        self._router: Callable[..., Awaitable[Any]] | None = None
        self.clock: Clock = clock or RealClock()
        """Dates the hub's Retry-After (pass the orchestrator's clock in tests)."""

    def __repr__(self) -> str:
        return f"FederationClient({self.url!r}, project={self.project!r}, cursor={self.cursor!r})"

    async def __aenter__(self) -> FederationClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # -- the one door to the network ------------------------------------------------
    def route_through(self, router: Callable[..., Awaitable[Any]] | None) -> None:
        """Send every exchange through `router(method=, path=, json_body=, params=)`: the
        orchestrator's breaker and retries (`Orchestrator(federation=...)` sets it)."""
        self._router = router

    async def _send(self, method: str, path: str, *, json_body: Any = None,
                    params: Mapping[str, str | int] | None = None) -> Any:
        if self._router is not None:
            return await self._router(method=method, path=path, json_body=json_body,
                                      params=params)
        return await self.exchange(method, path, json_body=json_body, params=params)

    async def exchange(self, method: str, path: str, *, json_body: Any = None,
                       params: Mapping[str, str | int] | None = None) -> Any:
        """One HTTP exchange with the hub; the JSON answer, or a `HubError`."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self.url, transport=self._transport, timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}",
                         "User-Agent": "taskorch-nb-federation"})
        try:
            response = await self._http.request(method, path, json=json_body, params=params)
        except httpx.TimeoutException as exc:
            raise HubTimeoutError(0, f"no answer from {self.url} within {self._timeout} s") from exc
        except httpx.TransportError as exc:
            raise HubUnavailableError(0, f"cannot reach {self.url}: {exc}") from exc
        if response.status_code >= 400:
            reason = _reason(response)
            if response.status_code == 429:
                wait = parse_retry_after(response.headers, wall=self.clock.wall())
                raise HubRateLimitedError(429, reason, retry_after=wait)
            raise HubError(response.status_code, reason)
        try:
            return response.json()
        except ValueError as exc:
            raise HubError(response.status_code, "the hub answered with invalid JSON") from exc

    # -- low level --------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        return await self._send("GET", "/v1/health")

    async def push_records(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Push `PatternRecord`s (as dicts; other keys dropped) in batches under the hub's
        limits."""
        total: dict[str, Any] = {"accepted": 0, "changed": 0, "quarantined": [], "rejected": []}
        offset = 0
        for batch in self._batches([{k: r[k] for k in RECORD_FIELDS if k in r} for r in records]):
            answer = await self._send("POST", "/v1/patterns", json_body={"patterns": batch})
            total["accepted"] += answer["accepted"]
            total["changed"] += answer["changed"]
            total["quarantined"].extend(answer["quarantined"])
            # Each refusal names its record's place in `records`, not in the batch.
            total["rejected"].extend({**r, "index": r["index"] + offset}
                                     for r in answer.get("rejected", []))
            offset += len(batch)
        return total

    def _batches(self, records: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
        budget = self.max_body - 64
        batch: list[dict[str, Any]] = []
        size = 0
        for record in records:
            n = len(json.dumps(record, ensure_ascii=False).encode()) + 2
            if batch and (len(batch) >= MAX_PATTERNS_PER_PUSH or size + n > budget):
                yield batch
                batch, size = [], 0
            batch.append(record)
            size += n
        if batch:
            yield batch

    async def pull_records(self) -> list[dict[str, Any]]:
        """Every pattern changed since the last pull (all pages); advances `cursor`."""
        async with self._pulling:
            records, cursor = await self._fetch_since(self.cursor)
            self.cursor = cursor
            return records

    async def _fetch_since(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        # The cursor is committed by the caller only once every page arrived (and was
        # merged), so a failure half-way re-fetches rather than skips.
        out: list[dict[str, Any]] = []
        while True:
            params: dict[str, str | int] = {"limit": self.page_size}
            if cursor is not None:
                params["since"] = cursor
            page = await self._send("GET", "/v1/patterns", params=params)
            out.extend(page["patterns"])
            cursor = page["cursor"]
            if not page["has_more"]:
                return out, cursor

    # -- bound to a pattern source --------------------------------------------------
    def bind(self, source: PatternSource, *,
             tools: Callable[[], Iterable[str]] | Iterable[str] | None = None) -> FederationClient:
        """Attach the pattern store to push from and merge into.

        `tools` (or `source.local_tools()` if it has one) names the locally
        registered tools, for `TrustPolicy.allows_fallback`.
        """
        self._source = source
        if tools is None:
            tools = getattr(source, "local_tools", None)
        if tools is None or callable(tools):
            self._tools = tools
        else:
            names = tuple(tools)
            self._tools = lambda: names
        return self

    def _bound(self) -> PatternSource:
        if self._source is None:
            raise ConfigurationError("FederationClient is not bound: call client.bind(source)")
        return self._source

    async def push(self) -> dict[str, Any]:
        """Push the bound source's own patterns."""
        return await self.push_records(self._bound().export())

    async def pull(self) -> int:
        """Pull what changed, mark what the policy allows, merge into the bound source."""
        source = self._bound()
        async with self._pulling:
            records, cursor = await self._fetch_since(self.cursor)
            self.policy.mark(records, self._tools() if self._tools is not None else ())
            merged = source.merge_federated(records) if records else 0
            self.cursor = cursor
        return merged

    async def sync(self) -> dict[str, Any]:
        """Push, then pull: {accepted, changed, quarantined, merged}."""
        pushed = await self.push()
        return {**pushed, "merged": await self.pull()}


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("reason", "detail"):
            if isinstance(body.get(key), str):
                return body[key]
    return response.reason_phrase
