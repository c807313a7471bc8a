"""What the API installs: a request id on every line, HTTP metrics and `/metrics`, server spans."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from taflow.db.models import RequestRow
from taflow.observability.logs import configure_logging
from taflow.observability.metrics import observe_http, route_template, served_registry, set_requests_by_stage
from taflow.observability.tracing import instrument_app, setup_tracing
from taflow.settings import Settings

REQUEST_ID_HEADER = "X-Request-ID"
VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
QUIET_PATHS = frozenset({"/healthz", "/metrics"})
"""Probes and scrapes are logged at debug level only."""
STAGE_COUNT_TIMEOUT_S = 2.0

log = structlog.get_logger("taflow.api")


def request_id_of(scope: Scope) -> str:
    """The caller's `X-Request-ID` when it is a sane token, else a new one."""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if VALID_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


@dataclass
class RequestContextMiddleware:
    """Binds `request_id` on every line logged while serving a request, answers it in
    `X-Request-ID`, writes one access line (method, route template, status, duration) and counts and
    times the request in the HTTP metrics. One layer for all three: each ASGI layer and `send` wrapper
    costs every call."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                path, method, route = scope.get("path", ""), scope.get("method", ""), route_template(scope)
                observe_http(method, route, status, seconds)
                emit = log.debug if path in QUIET_PATHS else log.info
                emit(
                    "http request",
                    method=method,
                    path=path,
                    route=route,
                    status=status,
                    duration_ms=round(seconds * 1000, 1),
                )


async def stage_counts(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[str, int]:
    async with sessionmaker() as session:
        rows = await session.execute(select(RequestRow.stage, func.count()).group_by(RequestRow.stage))
        return {stage: int(n) for stage, n in rows.all()}


router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format: HTTP metrics (of every API process when there are several) and the
    requests by stage (read model, read now)."""
    try:
        counts = await asyncio.wait_for(stage_counts(request.app.state.sessionmaker), STAGE_COUNT_TIMEOUT_S)
        set_requests_by_stage(counts)
    except Exception as exc:  # the database is down: still serve the HTTP metrics
        log.warning("requests by stage unavailable", error=str(exc))
    return Response(generate_latest(served_registry()), media_type=CONTENT_TYPE_LATEST)


def install_observability(app: FastAPI, settings: Settings) -> None:
    """Logs, metrics and (when TAFLOW_OTEL_EXPORTER is set) traces; call before the app starts."""
    configure_logging(settings)
    app.include_router(router)
    app.add_middleware(RequestContextMiddleware)
    if setup_tracing(settings, "api") is not None:
        instrument_app(app)  # outermost: the server span covers everything, log lines carry its id
