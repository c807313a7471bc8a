"""API test helpers: the app with its lifespan run over httpx's ASGITransport, real PostgreSQL and
the Temporal dev server; demo credentials; read-model rows written by the real projection writer."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.api.app import create_app
from taflow.db.credentials import ensure_dev_credentials
from taflow.db.projection import write_projection
from taflow.domain.enums import Role, Stage
from taflow.domain.models import Actor, AuditEvent, Projection, RequestDraft, RequestState
from taflow.settings import Settings

MAX_BODY = 16_384
PROBLEM_JSON = "application/problem+json"

DRAFT: dict[str, Any] = {
    "title": "Risk management diagnostic for the northern border posts",
    "description": "Assess the risk engine and targeting practice at three land border posts.",
    "topics": ["risk-management"],
    "modality": "diagnostic_mission",
    "desired_start": "2030-04-01",
    "desired_end": "2030-05-30",
}


def draft(**over: Any) -> dict[str, Any]:
    return DRAFT | over


@pytest.fixture(scope="session")
async def keys(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    path = tmp_path_factory.mktemp("creds") / "dev-credentials.json"
    return await ensure_dev_credentials(sessionmaker, path)


@pytest.fixture
def auth(keys: dict[str, str]) -> Callable[[str], dict[str, str]]:
    def headers(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {keys[name]}"}

    return headers


def make_app(
    database_url: str, engine: AsyncEngine, client: Client, task_queue: str, **settings: Any
) -> FastAPI:
    """The app on the test database and dev server; `settings` override the defaults."""
    config = Settings(database_url=database_url, task_queue=task_queue, max_body_bytes=MAX_BODY, **settings)
    return create_app(config, client=client, engine=engine)


class Api:
    """An httpx client over the ASGI app, with its lifespan entered (asgi-lifespan is not installed)."""

    def __init__(self, app: FastAPI, *, raise_app_exceptions: bool = True) -> None:
        self.app = app
        self.raise_app_exceptions = raise_app_exceptions

    async def __aenter__(self) -> httpx.AsyncClient:
        self._lifespan: AbstractAsyncContextManager[Any] = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=self.raise_app_exceptions)
        self._client = httpx.AsyncClient(transport=transport, base_url="http://taflow.test")
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(None, None, None)


@pytest.fixture
def app(database_url: str, engine: AsyncEngine, temporal_client: Client, task_queue: str) -> FastAPI:
    return make_app(database_url, engine, temporal_client, task_queue)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with Api(app) as client:
        yield client


def assert_problem(resp: httpx.Response, status: int, kind: str | None = None) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM_JSON), resp.headers["content-type"]
    body: dict[str, Any] = resp.json()
    assert body["status"] == status
    assert body["type"].startswith("https://taflow.dev/problems/")
    assert body["title"]
    if kind is not None:
        assert body["type"].endswith("/" + kind), body
    return body


async def count(sessionmaker: async_sessionmaker[AsyncSession], table: str) -> int:
    async with sessionmaker() as s:
        return int((await s.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one())


def new_id(prefix: str = "TA-T") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


SYSTEM = Actor(subject="taflow", organisation="TAFLOW", role=Role.ops)


async def put_request(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    request_id: str | None = None,
    member_state: str = "KH",
    stage: Stage = Stage.asec_review,
    title: str = "Risk management diagnostic",
    topics: list[str] | None = None,
    updated_at: datetime | None = None,
    sla_due_at: datetime | None = None,
    invitation: dict[str, Any] | None = None,
    version: int = 1,
    submitted_by: str = "x",
    extra_events: list[AuditEvent] | None = None,
) -> str:
    """A read-model row (and its audit events) written by the real projection writer."""
    rid = request_id or new_id()
    now = updated_at or datetime.now(UTC)
    d = RequestDraft.model_validate(draft(title=title, topics=topics or ["risk-management"]))
    state = RequestState(
        request_id=rid,
        member_state=member_state,
        draft=d,
        beneficiaries=[member_state],
        stage=stage,
        submitted_by=Actor(subject=submitted_by, organisation=member_state, role=Role.requester),
        submitted_at=now - timedelta(days=1),
        updated_at=now,
        sla_due_at=sla_due_at,
        invitation=invitation,
        events=[
            AuditEvent(
                seq=1, at=now - timedelta(days=1), actor=SYSTEM, kind="submitted", to_stage=Stage.submitted
            ),
            AuditEvent(seq=2, at=now, actor=SYSTEM, kind="moved", from_stage=Stage.submitted, to_stage=stage),
            *(extra_events or []),
        ],
        version=version,
    )
    async with sessionmaker.begin() as s:
        await write_projection(s, Projection(state=state, new_events=state.events), [])
    return rid


def today() -> date:
    return datetime.now(UTC).date()


async def closed_workflow(client: Client, wf_id: str, workflow: str = "TARequestWorkflow") -> None:
    """A workflow that ran and was terminated: updates to it answer 409 (closed), never 404."""
    handle = await client.start_workflow(workflow, {}, id=wf_id, task_queue=f"idle-{uuid.uuid4().hex[:8]}")
    await handle.terminate("test")


async def new_key(
    sessionmaker: async_sessionmaker[AsyncSession], organisation: str, role: str, subject: str
) -> dict[str, str]:
    """Authorization headers for a fresh API key."""
    from taflow.db.credentials import create_key, ensure_organisations

    async with sessionmaker() as s:
        await ensure_organisations(s, [organisation])
        key = await create_key(s, organisation, role, subject)
        await s.commit()
    return {"Authorization": f"Bearer {key}"}
