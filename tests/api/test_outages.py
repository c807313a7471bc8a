"""Temporal unreachable: health says so, submissions answer 503 problem and stay retryable."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from temporalio.client import Client

from taflow.devstack import free_port
from taflow.temporal import DATA_CONVERTER
from tests.api.conftest import Api, assert_problem, draft, make_app

Auth = Callable[[str], dict[str, str]]


@pytest.fixture
async def api_without_temporal(
    database_url: str, engine: AsyncEngine, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    dead = await Client.connect(f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER)
    async with Api(make_app(database_url, engine, dead, task_queue)) as client:
        yield client


async def test_health_reports_temporal_down(api_without_temporal: httpx.AsyncClient) -> None:
    resp = await api_without_temporal.get("/healthz")
    assert resp.status_code == 503
    assert resp.json() == {"status": "degraded", "database": "ok", "temporal": "unreachable"}


async def test_submission_while_temporal_is_down(
    api_without_temporal: httpx.AsyncClient, auth: Auth, api: httpx.AsyncClient
) -> None:
    key = {"Idempotency-Key": f"outage-{uuid.uuid4()}"}
    resp = await api_without_temporal.post("/v1/requests", json=draft(), headers=auth("SG/requester") | key)
    body = assert_problem(resp, 503, "unavailable")
    assert "Idempotency-Key" in body["detail"]
    # once Temporal is back, the same retry creates the workflow under the reserved id
    retry = await api.post("/v1/requests", json=draft(), headers=auth("SG/requester") | key)
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"  # the id was recorded by the first call
