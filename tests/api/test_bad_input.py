"""Bad input never yields a 500: each case answers a 4xx problem+json and writes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.db.credentials import create_key, digest, ensure_organisations, revoke_key
from taflow.db.models import ApiKeyRow
from tests.api.conftest import MAX_BODY, Api, assert_problem, count, draft, make_app

Auth = Callable[[str], dict[str, str]]
TABLES = ("submissions", "requests", "request_events", "api_keys")


@pytest.fixture
async def unchanged(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> AsyncIterator[None]:
    """Every test in this module must leave the tables exactly as it found them."""
    before = {t: await count(sessionmaker, t) for t in TABLES}
    yield
    after = {t: await count(sessionmaker, t) for t in TABLES}
    assert after == before


pytestmark = pytest.mark.usefixtures("unchanged")


async def test_malformed_json(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post(
        "/v1/requests",
        content=b'{"title": "x",',
        headers=auth("KH/requester") | {"content-type": "application/json"},
    )
    assert_problem(resp, 400, "malformed-json")


async def test_json_that_is_not_an_object(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post("/v1/requests", json=["a", "list"], headers=auth("KH/requester"))
    body = assert_problem(resp, 422, "validation-error")
    assert body["errors"]


async def test_not_json_media_type(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post(
        "/v1/requests", content=b"title=x", headers=auth("KH/requester") | {"content-type": "text/plain"}
    )
    assert_problem(resp, 415, "unsupported-media-type")


async def test_empty_body(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post("/v1/requests", headers=auth("KH/requester"))
    assert_problem(resp, 422, "validation-error")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"topics": ["smuggling-of-unicorns"]}, "topics"),
        ({"topics": []}, "topics"),
        ({"modality": "carrier pigeon"}, "modality"),
        ({"beneficiaries": ["XX"]}, "beneficiaries"),
        ({"spcd_priorities": ["world-peace"]}, "spcd_priorities"),
        ({"desired_start": "2030-05-30", "desired_end": "2030-04-01"}, None),
        ({"desired_start": "2030-02-30"}, "desired_start"),
        ({"title": "x" * 201}, "title"),
        ({"title": "  "}, "title"),
        ({"description": "d" * 5001}, "description"),
        ({"client_reference": "r" * 101}, "client_reference"),
        ({"actor": {"subject": "me", "organisation": "ASEC", "role": "asec_head"}}, "actor"),
        ({"member_state": "TH"}, "member_state"),
    ],
)
async def test_invalid_drafts(
    api: httpx.AsyncClient, auth: Auth, override: dict[str, Any], field: str | None
) -> None:
    resp = await api.post("/v1/requests", json=draft(**override), headers=auth("KH/requester"))
    body = assert_problem(resp, 422, "validation-error")
    locs = [e["loc"] for e in body["errors"]]
    if field is not None:
        assert any(field in loc for loc in locs), locs
    assert all("input" not in e for e in body["errors"])


async def test_wrong_dates_say_why(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post(
        "/v1/requests",
        json=draft(desired_start="2030-05-30", desired_end="2030-04-01"),
        headers=auth("KH/requester"),
    )
    body = assert_problem(resp, 422)
    assert "desired_end must not be before desired_start" in json.dumps(body)


async def test_oversized_body_by_content_length(api: httpx.AsyncClient, auth: Auth) -> None:
    big = json.dumps(draft(description="d" * (MAX_BODY + 10))).encode()
    resp = await api.post(
        "/v1/requests", content=big, headers=auth("KH/requester") | {"content-type": "application/json"}
    )
    assert_problem(resp, 413, "payload-too-large")


async def test_oversized_body_streamed_without_length(api: httpx.AsyncClient, auth: Auth) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "streamed", "description": "'
        for _ in range(10):
            yield b"d" * 4096
        yield b'"}'

    resp = await api.post(
        "/v1/requests", content=chunks(), headers=auth("KH/requester") | {"content-type": "application/json"}
    )
    assert "content-length" not in resp.request.headers
    assert_problem(resp, 413, "payload-too-large")


async def test_bad_idempotency_key(api: httpx.AsyncClient, auth: Auth) -> None:
    for key in ("k" * 201, "has space"):
        resp = await api.post(
            "/v1/requests", json=draft(), headers=auth("KH/requester") | {"Idempotency-Key": key}
        )
        assert_problem(resp, 422, "validation-error")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tf_not-a-real-key"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "tf_without_scheme"},
        {"Authorization": "Bearer " + "x" * 5000},
    ],
)
async def test_missing_or_wrong_credentials(api: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in [("POST", "/v1/requests"), ("GET", "/v1/requests"), ("GET", "/v1/inbox")]:
        resp = await api.request(method, path, json=draft() if method == "POST" else None, headers=headers)
        assert_problem(resp, 401, "unauthorized")
        assert resp.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("cache_seconds", [0.0, 1.0])
async def test_a_revoked_key_stops_working_within_the_cache_time(
    cache_seconds: float,
    database_url: str,
    engine: AsyncEngine,
    temporal_client: Client,
    task_queue: str,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Keys are trusted for TAFLOW_AUTH_CACHE_SECONDS after a lookup; 0 looks every call up."""
    app = make_app(database_url, engine, temporal_client, task_queue, auth_cache_seconds=cache_seconds)
    async with sessionmaker() as s:
        await ensure_organisations(s, ["KH"])
        key = await create_key(s, "KH", "requester", "revoked-user", "to revoke")
        await s.commit()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with Api(app) as api:
            ok = await api.get("/v1/requests", headers=headers)
            assert ok.status_code == 200
            trusted_until = time.monotonic() + cache_seconds
            async with sessionmaker.begin() as s:
                key_id = (
                    await s.execute(select(ApiKeyRow.id).where(ApiKeyRow.digest == digest(key)))
                ).scalar_one()
                assert await revoke_key(s, key_id)
                assert not await revoke_key(s, key_id)
            if cache_seconds:
                cached = await api.get("/v1/requests", headers=headers)
                assert cached.status_code == 200  # still trusted: no lookup within the cache time
                await asyncio.sleep(max(0.0, trusted_until - time.monotonic()) + 0.05)
            resp = await api.get("/v1/requests", headers=headers)
            assert_problem(resp, 401, "unauthorized")
    finally:
        async with sessionmaker.begin() as s:
            await s.execute(delete(ApiKeyRow).where(ApiKeyRow.digest == digest(key)))


@pytest.mark.parametrize("who", ["ASEC/asec_reviewer", "ROCB-AP/rocb_officer", "WCO/expert", "ASEC/admin"])
async def test_only_requesters_submit(api: httpx.AsyncClient, auth: Auth, who: str) -> None:
    resp = await api.post("/v1/requests", json=draft(), headers=auth(who))
    assert_problem(resp, 403, "forbidden")


@pytest.mark.parametrize(
    ("path", "body", "who"),
    [
        ("asec-review", {"decision": "approve"}, "KH/requester"),
        ("asec-review", {"decision": "approve"}, "ROCB-AP/rocb_officer"),
        ("amendment", {"draft": draft()}, "ASEC/asec_reviewer"),
        ("rocb-match", {"decision": "no_match"}, "ASEC/asec_head"),
        ("completion", {"report": "done", "delivered_on": "2026-01-01"}, "KH/requester"),
        ("withdrawal", {"reason": "x"}, "ASEC/asec_reviewer"),
        ("cancellation", {"reason": "x"}, "ROCB-AP/rocb_officer"),
        ("resumption", {}, "WCO/expert"),
        ("resumption", {}, "ASEC/ops"),
    ],
)
async def test_wrong_role_on_decisions(
    api: httpx.AsyncClient, auth: Auth, path: str, body: dict[str, Any], who: str
) -> None:
    resp = await api.post(f"/v1/requests/TA-2030-000001/{path}", json=body, headers=auth(who))
    assert_problem(resp, 403, "forbidden")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("asec-review", {"decision": "maybe"}),
        ("asec-review", {"decision": "duplicate"}),
        ("asec-review", {"decision": "consolidate", "comment": "x"}),
        ("asec-review", {"decision": "reject"}),
        ("asec-review", {"decision": "approve", "spcd_priorities": ["nope"]}),
        (
            "asec-review",
            {"decision": "approve", "actor": {"subject": "x", "organisation": "ASEC", "role": "admin"}},
        ),
        ("asec-review", {"decision": "approve", "comment": "c" * 2001}),
    ],
)
async def test_invalid_decisions(api: httpx.AsyncClient, auth: Auth, path: str, body: dict[str, Any]) -> None:
    resp = await api.post(
        f"/v1/requests/TA-2030-000001/{path}", json=body, headers=auth("ASEC/asec_reviewer")
    )
    assert_problem(resp, 422, "validation-error")


async def test_invalid_completion(api: httpx.AsyncClient, auth: Auth) -> None:
    for body in (
        {"report": "   ", "delivered_on": "2026-01-01"},
        {"report": "ok", "delivered_on": "2999-01-01"},
        {"report": "ok"},
    ):
        resp = await api.post(
            "/v1/requests/TA-2030-000001/completion", json=body, headers=auth("ROCB-AP/rocb_officer")
        )
        assert_problem(resp, 422, "validation-error")


@pytest.mark.parametrize(
    "query",
    [
        "stage=nowhere",
        "member_state=XX",
        "topic=unicorns",
        "limit=0",
        "limit=101",
        "limit=ten",
        "q=" + "q" * 201,
    ],
)
async def test_bad_list_filters(api: httpx.AsyncClient, auth: Auth, query: str) -> None:
    resp = await api.get(f"/v1/requests?{query}", headers=auth("ASEC/asec_reviewer"))
    assert_problem(resp, 422, "validation-error")


@pytest.mark.parametrize("cursor", ["not-base64!!", "WyJub3QtYS1kYXRlIiwgMV0", "e30", "W10"])
async def test_bad_cursor(api: httpx.AsyncClient, auth: Auth, cursor: str) -> None:
    resp = await api.get("/v1/requests", params={"cursor": cursor}, headers=auth("ASEC/asec_reviewer"))
    assert_problem(resp, 400, "invalid-cursor")


async def test_unknown_request_is_404(api: httpx.AsyncClient, auth: Auth) -> None:
    for who in ("KH/requester", "ASEC/asec_reviewer"):
        resp = await api.get("/v1/requests/TA-1999-999999", headers=auth(who))
        assert_problem(resp, 404, "not-found")
    resp = await api.post(
        "/v1/requests/TA-1999-999999/withdrawal", json={"reason": "x"}, headers=auth("KH/requester")
    )
    assert_problem(resp, 404, "not-found")
    resp = await api.get("/v1/requests/" + "x" * 300, headers=auth("ASEC/asec_reviewer"))
    assert_problem(resp, 404, "not-found")


async def test_unknown_route_and_method(api: httpx.AsyncClient, auth: Auth) -> None:
    assert_problem(await api.get("/v1/nothing-here", headers=auth("KH/requester")), 404, "not-found")
    assert_problem(await api.delete("/v1/requests", headers=auth("KH/requester")), 405, "method-not-allowed")


async def test_unexpected_errors_are_problems(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("kaboom")

    async with Api(app, raise_app_exceptions=False) as client:
        resp = await client.get("/boom")
    body = assert_problem(resp, 500, "internal-error")
    assert "kaboom" not in resp.text
    assert body["instance"] == "/boom"
