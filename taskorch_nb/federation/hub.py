"""The federation hub: a FastAPI app sharing learned failure patterns between projects.

Security is part of the feature: bearer tokens per project (stored hashed),
strict schemas (422 with a reason), a body cap (413) checked before parsing, a
per-token rate limit (429 with Retry-After), quarantine for suspicious
corrective prompts, and an audit row for every write. Errors are always
`{"detail", "reason"}` so a client can show why.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from taskorch_nb.core.clock import Clock, RealClock
from taskorch_nb.core.pattern_record import PatternRecord
from taskorch_nb.errors import ConfigurationError
from taskorch_nb.federation.hubstore import HubStore, token_digest
from taskorch_nb.federation.schema import (
    DEFAULT_PULL_LIMIT,
    MAX_BODY_BYTES,
    MAX_PULL_LIMIT,
    Health,
    Problem,
    PullResult,
    PushBody,
    PushEnvelope,
    PushResult,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket per bearer token: `burst` requests at once, refilled at `per_second`."""

    per_second: float = 20.0
    burst: int = 60

    def __post_init__(self) -> None:
        if self.per_second < 0 or self.burst < 1:
            raise ConfigurationError("RateLimit needs per_second >= 0 and burst >= 1")


class TokenBuckets:
    """Per-key token buckets on an injected clock; `take` returns the wait, 0.0 when allowed."""

    def __init__(self, limit: RateLimit, clock: Clock) -> None:
        self.limit = limit
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        now = self.clock.now()
        with self._lock:
            level, last = self._buckets.get(key, (float(self.limit.burst), now))
            level = min(float(self.limit.burst), level + (now - last) * self.limit.per_second)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            if self.limit.per_second == 0:
                return math.inf
            return (1.0 - level) / self.limit.per_second


def _problem(status: int, detail: str, reason: str, *, errors: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(detail=detail, reason=reason, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _validation_problem(errors: list[Any]) -> JSONResponse:
    items = [{"loc": [str(p) if not isinstance(p, int) else p for p in e.get("loc", ())],
              "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors]
    reason = "; ".join(
        f"{'.'.join(str(p) for p in item['loc']) or 'body'}: {item['msg']}" for item in items[:5])
    if len(items) > 5:
        reason += f"; and {len(items) - 5} more"
    return _problem(422, "validation failed", reason or "invalid request", errors=items)


class BodyLimit:
    """Refuse bodies past `max_body` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _problem(400, "bad request", "Content-Length is not a number")(
                    scope, receive, send)
                return
            if int(declared) > self.max_body:
                await self._refuse(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise HTTPException(413, f"body larger than {self.max_body} bytes")
            return message

        await self.app(scope, limited, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = _problem(413, "payload too large",
                            f"body larger than {self.max_body} bytes",
                            headers={"Connection": "close"})
        await response(scope, receive, send)


def _judge(items: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The valid records of a push, and a rejection (index, signature, reason) per other."""
    records: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:  # through JSON again, so the strict rules are those of a whole-body parse
            records.append(PatternRecord.model_validate_json(json.dumps(item)).model_dump())
        except ValidationError as exc:
            errors = exc.errors(include_input=False, include_url=False)
            reason = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'pattern'}: {e['msg']}"
                for e in errors[:3])
            signature = item.get("signature") if isinstance(item, dict) else None
            rejected.append({"index": index, "reason": reason,
                             "signature": signature if isinstance(signature, str) else None})
    return records, rejected


@functools.cache
def _version() -> str:
    try:
        return metadata.version("taskorch_nb")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def create_app(
    db_url: str,
    *,
    max_body: int = MAX_BODY_BYTES,
    rate_limit: RateLimit | None = RateLimit(),
    confirm_threshold: int = 2,
    clock: Clock | None = None,
) -> FastAPI:
    """The hub app on a database (`path` = SQLite file, `postgresql://...` = PostgreSQL).

    `app.state.store` is the `HubStore` (tokens, approvals, audit) behind it.
    """
    clock = clock or RealClock()
    store = HubStore(db_url, confirm_threshold=confirm_threshold, clock=clock)
    buckets = TokenBuckets(rate_limit, clock) if rate_limit is not None else None
    bearer = HTTPBearer(auto_error=False, description="A project token from `hub token`")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if not store.in_memory:  # closing would drop an in-memory hub's only copy
            store.close()

    app = FastAPI(title="taskorch_nb federation hub", version=_version(), lifespan=lifespan)
    app.state.store = store
    app.add_middleware(BodyLimit, max_body=max_body)  # type: ignore[arg-type]

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_problem(list(exc.errors()))

    @app.exception_handler(HTTPException)
    async def _on_http(_request: Request, exc: HTTPException) -> JSONResponse:
        detail = {401: "unauthorized", 413: "payload too large", 429: "too many requests"}
        return _problem(exc.status_code, detail.get(exc.status_code, "error"), str(exc.detail),
                        headers=exc.headers)

    async def project_of(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> str:
        """The project behind the bearer token, after its rate limit."""
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise HTTPException(401, "missing bearer token", headers=challenge)
        project = await run_in_threadpool(store.authenticate, credentials.credentials)
        if project is None:
            raise HTTPException(401, "invalid or revoked token", headers=challenge)
        if buckets is not None:
            wait = buckets.take(token_digest(credentials.credentials))
            if wait > 0:
                retry = "3600" if math.isinf(wait) else str(max(1, math.ceil(wait)))
                raise HTTPException(429, f"rate limit exceeded; retry in {retry} s",
                                    headers={"Retry-After": retry})
        return project

    errors: dict[int | str, dict[str, Any]] = {
        code: {"model": Problem, "description": text} for code, text in
        ((401, "missing, invalid or revoked token"), (413, "body too large"),
         (422, "malformed JSON or schema violation"), (429, "rate limit; see Retry-After"))}

    @app.post("/v1/patterns", response_model=PushResult, responses=errors,
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": {"$ref": "#/components/schemas/PushBody"}}}}})
    async def push_patterns(request: Request, project: str = Depends(project_of)) -> Any:
        """Push a project's current totals; only the caller's own rows change.

        Each pattern is judged alone: a bad one is listed in `rejected` with its reason
        and the rest are shared (422 only when the body itself is malformed)."""
        raw = await request.body()
        try:
            body = PushEnvelope.model_validate_json(raw)
        except ValidationError as exc:
            return _validation_problem(list(exc.errors(include_input=False, include_url=False)))
        records, rejected = _judge(body.patterns)
        answer = await run_in_threadpool(store.push, project, records) if records else {
            "accepted": 0, "changed": 0, "quarantined": []}
        return {**answer, "rejected": rejected}

    @app.get("/v1/patterns", response_model=PullResult, responses=errors)
    async def pull_patterns(
        since: str | None = Query(None, pattern=r"^[0-9]{1,18}$",
                                  description="the cursor of the previous pull"),
        limit: int = Query(DEFAULT_PULL_LIMIT, ge=1, le=MAX_PULL_LIMIT),
        _project: str = Depends(project_of),
    ) -> Any:
        """Patterns changed since the cursor (quarantined strategies are never served)."""
        patterns, cursor, more = await run_in_threadpool(store.pull, int(since or 0), limit)
        return {"patterns": patterns, "cursor": str(cursor), "has_more": more}

    @app.get("/v1/health", response_model=Health)
    async def health() -> Any:
        """Liveness, without a token (cheap: it touches no table)."""
        return {"status": "ok", "version": _version()}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            body = PushBody.model_json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components.update(body.pop("$defs", {}))
            components["PushBody"] = body
            app.openapi_schema = jsonable_encoder(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
