"""The FastAPI application: one Temporal client and one engine per process, made in the lifespan.

Served by taflow.api.serve (`taflow api`): `uvicorn --factory taflow.api.app:create_app` in
`api_workers` processes, each with its own client, engine and caches. Tests inject the dev server's
client and the test engine, which the lifespan then leaves open for their owner.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from taflow import temporal
from taflow.api.auth import Authenticator
from taflow.api.changes import RequestChanges
from taflow.api.idempotency import IdempotencyMiddleware
from taflow.api.problems import BodyLimitMiddleware, install_problem_handlers, problems_to_media_type
from taflow.api.routes import health, inbox, invitations, requests, webhooks
from taflow.db.session import (
    autocommit,
    make_autocommit_sessionmaker,
    make_server_engine,
    make_sessionmaker,
)
from taflow.observability.api import install_observability
from taflow.process import freeze_startup_heap
from taflow.settings import Settings, get_settings, resolve_database_url

TAGS = [
    {"name": "requests", "description": "Submit TA requests, read them and take decisions on them."},
    {"name": "invitations", "description": "Experts' answers to invitations."},
    {"name": "inbox", "description": "What waits on the caller."},
    {"name": "webhooks", "description": "Signed event delivery to partner systems (Standard Webhooks)."},
    {"name": "health", "description": "Readiness of this process."},
]


def api_pool_share(settings: Settings) -> int:
    """This process's share of the API's connection budget.

    The API as a whole keeps at most `api_db_pool_size` connections (default 40), opened as calls need
    them and then kept (taflow.db.session.make_server_engine), however many processes serve it: each
    of its `api_workers` processes takes its part (rounded up), plus one connection of its own that
    LISTENs for request changes. At one process (the default) that is 40 + 1; at two, 20 + 1 each, 42
    in all. With the worker's 30 the stack needs at most 72 of the embedded PostgreSQL's
    `max_connections` of 100, which leaves 28 for migrations, the CLI, psql and tests. Each further
    process adds only its LISTEN connection (and the rounding up).
    """
    return -(-settings.api_db_pool_size // settings.api_workers)


def create_app(
    settings: Settings | None = None, *, client: Client | None = None, engine: AsyncEngine | None = None
) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        eng = (
            engine
            if engine is not None
            else make_server_engine(
                resolve_database_url(settings),
                connections=api_pool_share(settings),
                pre_ping=settings.api_db_pre_ping,
            )
        )
        try:
            app.state.settings = settings
            app.state.engine = eng
            app.state.sessionmaker = make_sessionmaker(eng)
            app.state.autocommit_engine = autocommit(eng)
            app.state.autocommit_sessionmaker = make_autocommit_sessionmaker(eng)
            app.state.authenticator = Authenticator(
                settings, app.state.autocommit_engine, settings.auth_cache_seconds
            )
            app.state.temporal_client = client if client is not None else await temporal.connect(settings)
            app.state.changes = RequestChanges.for_url(eng.url)  # wakes `GET` calls waiting for a change
            app.state.changes.start()
            if own_engine:  # a server process of its own (tests inject their engine and keep their heap)
                freeze_startup_heap()
            yield
        finally:
            changes = getattr(app.state, "changes", None)
            if changes is not None:
                await changes.close()
            if own_engine:
                await eng.dispose()

    app = FastAPI(
        title="TAflow",
        version="1.0.0",
        summary="Customs technical-assistance requests between ASEAN member states, ASEC and WCO ROCB A/P",
        description="All calls under `/v1` take `Authorization: Bearer <api key>`; errors are RFC 9457 "
        "`application/problem+json` with stable `type` URIs under https://taflow.dev/problems/.",
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    # inside the body limit: sees the buffered body. A submission replays by its own record instead.
    app.add_middleware(IdempotencyMiddleware, own_replay=requests.OWN_REPLAY)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    install_problem_handlers(app)
    install_observability(app, settings)  # request ids in JSON logs, /metrics, traces when configured
    for module in (requests, invitations, inbox, webhooks, health):
        app.include_router(module.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            app.openapi_schema = problems_to_media_type(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
