"""Schemathesis against our own /openapi.json: bounded, seeded, every credential, real Temporal and DB.

Cases are generated from the schema (positive and negative data, a fixed seed), each sent with one of
the demo credentials (or none, or a wrong one) through the ASGI app with its lifespan, and every
answer is checked: never a 5xx, the status declared for the operation, the declared content type,
and a body that matches its own schema.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.api.app import create_app
from taflow.db.webhooks import delete_subscription, list_subscriptions
from taflow.settings import Settings
from tests.api.conftest import MAX_BODY, Api

SEED = 20260601
POSITIVE_PER_OPERATION = 12
NEGATIVE_PER_OPERATION = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _fuzzable(openapi: dict[str, Any]) -> dict[str, Any]:
    """Our schema minus the examples of path ids: those name real requests in a shared test database,
    whose workflows belong to other tests' (stopped) workers; random ids exercise the same code."""
    schema = copy.deepcopy(openapi)
    for item in schema["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param.get("in") == "path":
                    param.pop("examples", None)
                    param.pop("example", None)
                    param.get("schema", {}).pop("examples", None)
    return schema


def _draw(operation: Any, mode: GenerationMode, count: int) -> list[tuple[Case, int]]:
    drawn: list[tuple[Case, int]] = []

    @seed(SEED)
    @settings(max_examples=count, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode), who=st.integers(min_value=0, max_value=10_000))
    def draw(case: Case, who: int) -> None:
        drawn.append((case, who))

    try:
        draw()
    except Unsatisfiable:  # nothing negative to say about an operation without inputs (GET /healthz)
        return []
    return drawn[:count]


def _cases(
    schema: schemathesis.BaseSchema, mode: GenerationMode, per_operation: int
) -> list[tuple[Case, int]]:
    """Draw cases (with a credential index) deterministically: hypothesis only generates here, no I/O."""
    out: list[tuple[Case, int]] = []
    for result in schema.get_all_operations():
        out += _draw(result.ok(), mode, per_operation)
    return out


@pytest.fixture
async def fuzz_api(
    database_url: str, engine: AsyncEngine, temporal_client: Client, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(database_url=database_url, task_queue=task_queue, max_body_bytes=MAX_BODY)
    async with Api(
        create_app(settings, client=temporal_client, engine=engine), raise_app_exceptions=False
    ) as c:
        yield c


async def _drop_webhooks_since(sessionmaker: async_sessionmaker[AsyncSession], since: datetime) -> None:
    """Fuzzed webhooks point at made-up hosts: delete them so no dispatcher ever tries one."""
    async with sessionmaker.begin() as s:
        for sub in await list_subscriptions(s, None):
            if sub.created_at >= since:
                await delete_subscription(s, sub.id, datetime.now(UTC))


async def test_schemathesis_finds_no_server_error_and_no_off_schema_answer(
    fuzz_api: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with sessionmaker() as s:
        started: datetime = (await s.execute(text("SELECT now()"))).scalar_one()
    openapi = (await fuzz_api.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(_fuzzable(openapi))
    # by credential name, not by the (random) key: the same case meets the same caller on every run
    credentials: list[str | None] = [*(keys[name] for name in sorted(keys)), None, "tf_not-a-key"]
    cases = _cases(schema, GenerationMode.POSITIVE, POSITIVE_PER_OPERATION)
    cases += _cases(schema, GenerationMode.NEGATIVE, NEGATIVE_PER_OPERATION)
    assert len(cases) >= 300
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for case, who in cases:
        credential = credentials[who % len(credentials)]
        headers = dict(case.headers or {})
        headers.pop("Authorization", None)
        if credential is not None:
            headers["Authorization"] = f"Bearer {credential}"
        kwargs = case.as_transport_kwargs(base_url="http://taflow.test", headers=headers)
        kwargs.pop("base_url", None)
        request = fuzz_api.build_request(
            kwargs.pop("method"),
            kwargs.pop("url"),
            params=kwargs.pop("params", None),
            headers=kwargs.pop("headers", None),
            content=kwargs.pop("content", None) or kwargs.pop("data", None),
            json=kwargs.pop("json", None),
        )
        try:
            response = await fuzz_api.send(request)
        except httpx.HTTPError as exc:  # pragma: no cover - the transport never fails in-process
            failures.append(f"{case.operation.label}: transport error {exc}")
            continue
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            kinds = "; ".join(f"{type(e).__name__}: {str(e)[:300]}" for e in group.exceptions)
            failures.append(f"{request.method} {case.operation.path} -> {response.status_code}: {kinds}")
    await _drop_webhooks_since(sessionmaker, started)
    assert not failures, f"{len(failures)} of {len(cases)} cases failed:\n" + "\n\n".join(failures[:10])
    assert statuses[201] > 0 and statuses[200] > 0 and statuses[422] > 0, statuses
