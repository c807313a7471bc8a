"""PostgreSQL away: every call answers a 503 problem with Retry-After, never a 500.

The API's engine does not ping connections before use (TAFLOW_API_DB_PRE_PING): a connection that a
restart dropped fails one call with 503, SQLAlchemy renews the pool, and the next call works.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from temporalio.client import Client

from taflow.api.problems import unavailable
from taflow.db.session import make_engine
from taflow.devstack import free_port
from tests.api.conftest import Api, assert_problem, draft, make_app

Auth = Callable[[str], dict[str, str]]


def assert_unavailable(resp: httpx.Response) -> None:
    body = assert_problem(resp, 503, "unavailable")
    assert "retry" in body["detail"]
    assert int(resp.headers["retry-after"]) >= 1


@pytest.fixture
async def api_without_database(temporal_client: Client, task_queue: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API on a PostgreSQL URL whose port refuses connections (nothing listens there)."""
    url = f"postgresql+asyncpg://taflow:taflow@127.0.0.1:{free_port()}/taflow"
    engine = make_engine(url, pre_ping=False)
    try:
        async with Api(make_app(url, engine, temporal_client, task_queue)) as client:
            yield client
    finally:
        await engine.dispose()


async def test_every_kind_of_call_answers_503_while_the_database_refuses(
    api_without_database: httpx.AsyncClient, auth: Auth
) -> None:
    api = api_without_database
    key = {"Idempotency-Key": f"down-{uuid.uuid4()}"}
    calls = [
        ("POST", "/v1/requests", draft(), auth("KH/requester") | key),  # the submission's own replay
        ("POST", "/v1/requests", draft(), auth("KH/requester")),
        ("GET", "/v1/requests", None, auth("KH/requester")),
        ("GET", "/v1/inbox", None, auth("ASEC/asec_reviewer")),
        ("POST", "/v1/requests/TA-2026-000001/hold", {"hold": True}, auth("ASEC/asec_reviewer") | key),
        (
            "POST",
            "/v1/webhooks",
            {"url": "https://x.example.org/", "event_types": ["request.*"]},
            auth("KH/requester") | key,
        ),
    ]
    for method, path, body, headers in calls:
        resp = await api.request(method, path, json=body, headers=headers)
        assert_unavailable(resp)
    health = await api.get("/healthz")
    assert health.status_code == 503 and health.json()["database"] == "unreachable"


@pytest.fixture
async def unpinged_engine(database_url: str) -> AsyncIterator[tuple[AsyncEngine, str]]:
    """An engine like the API's (no pre-ping) whose connections can be told apart in pg_stat_activity."""
    name = f"taflow-drop-{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(
        database_url, pool_pre_ping=False, connect_args={"server_settings": {"application_name": name}}
    )
    yield engine, name
    await engine.dispose()


async def drop_connections(engine: AsyncEngine, application_name: str) -> int:
    """What a PostgreSQL restart does to a pool, done by the server itself: pg_terminate_backend."""
    async with engine.connect() as admin:
        dropped: int = (
            await admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE application_name = :n"
                ),
                {"n": application_name},
            )
        ).scalar_one()
        await admin.commit()
    return dropped


async def test_connections_dropped_by_postgres_fail_one_call_then_heal(
    unpinged_engine: tuple[AsyncEngine, str],
    engine: AsyncEngine,
    database_url: str,
    temporal_client: Client,
    task_queue: str,
    auth: Auth,
) -> None:
    """What a PostgreSQL restart does to the pool, done by the server itself: pg_terminate_backend."""
    api_engine, name = unpinged_engine
    app = make_app(database_url, api_engine, temporal_client, task_queue, auth_cache_seconds=0)
    async with Api(app) as api:
        for _ in range(3):
            assert (await api.get("/v1/requests", headers=auth("KH/requester"))).status_code == 200
        assert await drop_connections(engine, name) >= 1
        assert_unavailable(await api.get("/v1/requests", headers=auth("KH/requester")))
        for _ in range(3):  # the pool was renewed: no further failure
            assert (await api.get("/v1/requests", headers=auth("KH/requester"))).status_code == 200


async def test_a_submission_on_a_dropped_connection_fails_once_then_heals(
    unpinged_engine: tuple[AsyncEngine, str],
    engine: AsyncEngine,
    database_url: str,
    temporal_client: Client,
    task_queue: str,
    auth: Auth,
) -> None:
    """The submission runs its INSERT on the driver (taflow.db.prepared), not through SQLAlchemy: the
    dropped connection must still be left out and the pool renewed. The key stays cached, so the
    INSERT is the first statement to meet the dead connection."""
    api_engine, name = unpinged_engine
    app = make_app(database_url, api_engine, temporal_client, task_queue, auth_cache_seconds=600)
    async with Api(app) as api:
        for _ in range(3):
            assert (
                await api.post("/v1/requests", json=draft(), headers=auth("KH/requester"))
            ).status_code == 201
        assert await drop_connections(engine, name) >= 1
        key = {"Idempotency-Key": f"heal-{uuid.uuid4()}"}
        assert_unavailable(await api.post("/v1/requests", json=draft(), headers=auth("KH/requester") | key))
        retried = await api.post("/v1/requests", json=draft(), headers=auth("KH/requester") | key)
        assert retried.status_code == 201, retried.text  # the retry the 503 asked for: nothing was recorded
        assert "idempotent-replayed" not in retried.headers
        for _ in range(3):  # the pool was renewed: no further failure
            assert (
                await api.post("/v1/requests", json=draft(), headers=auth("KH/requester"))
            ).status_code == 201


def test_statement_errors_stay_500_and_outages_are_503() -> None:
    """Which database errors mean "retry later" (503) and which a bug (500, logged)."""
    cause = Exception("from the driver")
    assert unavailable(sa_exc.IntegrityError("INSERT", {}, cause)) is None
    assert unavailable(sa_exc.ProgrammingError("SELECT", {}, cause)) is None
    assert unavailable(ValueError("not ours")) is None
    assert unavailable(FileNotFoundError(2, "No such file", "/etc/taflow/policy.toml")) is None
    # a PostgreSQL that is down, reached through its unix socket (as the embedded one is): an outage
    socket_gone = unavailable(FileNotFoundError(2, "No such file or directory"))
    assert socket_gone is not None and socket_gone.status == 503
    dropped = sa_exc.ProgrammingError("SELECT", {}, cause, connection_invalidated=True)
    for outage in (
        dropped,
        sa_exc.OperationalError("SELECT", {}, cause),
        sa_exc.InterfaceError("SELECT", {}, cause),
        sa_exc.DBAPIError("SELECT", {}, cause),
        sa_exc.TimeoutError("QueuePool limit reached"),
        ConnectionRefusedError(111, "Connection refused"),
    ):
        problem = unavailable(outage)
        assert problem is not None and problem.status == 503, outage
        assert problem.headers["Retry-After"]
