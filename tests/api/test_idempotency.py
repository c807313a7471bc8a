"""Idempotency-Key on every state-changing call: replay, conflicts, release on failure, waiting, takeover."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.api import idempotency as idem
from taflow.api.app import create_app
from taflow.api.idempotency import fingerprint
from taflow.db.models import IdempotencyKeyRow
from taflow.settings import Settings
from tests.api.conftest import MAX_BODY, Api, assert_problem, draft

Auth = Callable[[str], dict[str, str]]
SM = async_sessionmaker[AsyncSession]
worker_module = pytest.importorskip("taflow.worker")


@pytest.fixture
async def worker(temporal_client: Client, sessionmaker: SM, task_queue: str) -> AsyncIterator[None]:
    async with worker_module.build_worker(temporal_client, sessionmaker, task_queue, Settings()):
        yield


async def _rows(sessionmaker: SM) -> int:
    async with sessionmaker() as s:
        return int((await s.execute(select(func.count()).select_from(IdempotencyKeyRow))).scalar_one())


@pytest.mark.usefixtures("worker")
async def test_a_decision_is_taken_once_and_its_answer_replayed(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post("/v1/requests", json=draft(), headers=auth("SG/requester"))
    rid = resp.json()["id"]
    asec = auth("ASEC/asec_reviewer") | {"Idempotency-Key": f"hold-{uuid.uuid4()}"}
    answers = await asyncio.gather(
        *[
            api.post(f"/v1/requests/{rid}/hold", json={"hold": True, "comment": "budget"}, headers=asec)
            for _ in range(20)
        ]
    )
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19
    # the replays did not reach the workflow: a fresh hold (no key) is refused as already held
    fresh = await api.post(
        f"/v1/requests/{rid}/hold", json={"hold": True}, headers=auth("ASEC/asec_reviewer")
    )
    assert "already on hold" in assert_problem(fresh, 409, "wrong-stage")["detail"]
    other = await api.post(f"/v1/requests/{rid}/hold", json={"hold": False}, headers=asec)
    assert_problem(other, 409, "idempotency-conflict")
    elsewhere = await api.post(f"/v1/requests/{rid}/cancellation", json={}, headers=asec)
    assert_problem(elsewhere, 409, "idempotency-conflict")  # a key names one call, not one body per path
    timeline = (await api.get(f"/v1/requests/{rid}", headers=auth("SG/requester"))).json()["timeline"]
    assert [e["kind"] for e in timeline].count("held") == 1


async def test_a_failed_call_releases_its_key(api: httpx.AsyncClient, auth: Auth, sessionmaker: SM) -> None:
    before = await _rows(sessionmaker)
    key = {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    headers = auth("ASEC/asec_reviewer") | key
    for body in ({"decision": "approve"}, {"decision": "approve"}, {"decision": "reject", "comment": "no"}):
        resp = await api.post("/v1/requests/TA-1999-000404/asec-review", json=body, headers=headers)
        assert_problem(resp, 404, "not-found")
        assert "idempotent-replayed" not in resp.headers
    hook = {"url": "https://partner.example.org/kh-fail", "event_types": ["request.*"]}
    kh = auth("KH/requester") | key
    assert_problem(await api.post("/v1/webhooks", json=hook | {"url": "not a url"}, headers=kh), 422)
    good = await api.post("/v1/webhooks", json=hook, headers=kh)
    assert good.status_code == 201  # the 422 did not keep the key
    assert await _rows(sessionmaker) == before + 1
    # a submission keeps its key with the submission itself (taflow.db.submissions), never a claim
    submission = auth("KH/requester") | {"Idempotency-Key": f"fail-{uuid.uuid4()}"}
    assert_problem(await api.post("/v1/requests", json=draft(title=""), headers=submission), 422)
    assert (await api.post("/v1/requests", json=draft(), headers=submission)).status_code == 201
    assert await _rows(sessionmaker) == before + 1


async def test_unauthenticated_calls_never_touch_keys(api: httpx.AsyncClient, sessionmaker: SM) -> None:
    before = await _rows(sessionmaker)
    for auth_header in ("Bearer tf_nope", "Basic Zm9vOmJhcg==", ""):
        headers = (
            {"Idempotency-Key": "k", "Authorization": auth_header}
            if auth_header
            else {"Idempotency-Key": "k"}
        )
        assert_problem(await api.post("/v1/requests", json=draft(), headers=headers), 401)
    assert await _rows(sessionmaker) == before


async def test_malformed_keys_are_refused(api: httpx.AsyncClient, auth: Auth) -> None:
    for key in ("x" * 201, "with space", "\xe9"):
        headers: dict[str, str | bytes] = {**auth("KH/requester"), "Idempotency-Key": key.encode("latin-1")}
        assert_problem(await api.post("/v1/requests/TA-1/withdrawal", json={}, headers=headers), 422)


async def test_creating_a_webhook_replays_the_same_secret(api: httpx.AsyncClient, auth: Auth) -> None:
    headers = auth("MM/requester") | {"Idempotency-Key": f"wh-{uuid.uuid4()}"}
    body = {"url": "https://partner.example.org/mm", "event_types": ["request.*"]}
    first = await api.post("/v1/webhooks", json=body, headers=headers)
    again = await api.post("/v1/webhooks", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 200)  # the replay created nothing
    assert first.content == again.content and again.headers["idempotent-replayed"] == "true"
    listed = (await api.get("/v1/webhooks", headers=auth("MM/requester"))).json()["items"]
    assert [w["id"] for w in listed].count(first.json()["id"]) == 1
    assert len([w for w in listed if w["url"] == body["url"]]) == 1
    taken = await api.delete(f"/v1/webhooks/{first.json()['id']}", headers=headers)
    assert_problem(taken, 409, "idempotency-conflict")  # another call needs another key
    fresh = auth("MM/requester") | {"Idempotency-Key": f"del-{uuid.uuid4()}"}
    gone = await api.delete(f"/v1/webhooks/{first.json()['id']}", headers=fresh)
    again = await api.delete(f"/v1/webhooks/{first.json()['id']}", headers=fresh)
    assert gone.status_code == again.status_code == 204 and again.headers["idempotent-replayed"] == "true"
    assert_problem(await api.delete(f"/v1/webhooks/{first.json()['id']}", headers=auth("MM/requester")), 404)


@pytest.fixture
async def impatient_api(
    database_url: str, engine: AsyncEngine, temporal_client: Client, task_queue: str
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        database_url=database_url,
        task_queue=task_queue,
        max_body_bytes=MAX_BODY,
        idempotency_wait_seconds=0.3,
    )
    async with Api(create_app(settings, client=temporal_client, engine=engine)) as client:
        yield client


async def _in_progress(
    sessionmaker: SM, scope: str, key: str, path: str, body: dict[str, object], locked: timedelta
) -> None:
    now = datetime.now(UTC)
    async with sessionmaker.begin() as s:
        await s.execute(
            insert(IdempotencyKeyRow).values(
                scope=scope,
                key=key,
                fingerprint=fingerprint("POST", path, json.dumps(body).encode()),
                state="in_progress",
                locked_until=now + locked,
                expires_at=now + timedelta(hours=1),
            )
        )


async def test_a_retry_waits_for_the_first_then_gives_up_or_takes_over(
    impatient_api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    body: dict[str, object] = {"url": "https://partner.example.org/kh-slow", "event_types": ["request.*"]}
    scope = "KH/requester/kh-coordinator"
    running, crashed = f"running-{uuid.uuid4()}", f"crashed-{uuid.uuid4()}"
    await _in_progress(sessionmaker, scope, running, "/v1/webhooks", body, timedelta(minutes=1))
    resp = await impatient_api.post(
        "/v1/webhooks", json=body, headers=auth("KH/requester") | {"Idempotency-Key": running}
    )
    assert_problem(resp, 409, "idempotency-in-progress")
    assert resp.headers["retry-after"] == "1"
    # a claim whose process died (its lock ran out) is taken over
    await _in_progress(sessionmaker, scope, crashed, "/v1/webhooks", body, timedelta(seconds=-1))
    resp = await impatient_api.post(
        "/v1/webhooks", json=body, headers=auth("KH/requester") | {"Idempotency-Key": crashed}
    )
    assert resp.status_code == 201, resp.text


async def test_a_slow_first_call_keeps_its_key_alive(
    app: FastAPI, auth: Auth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claims expire quickly when their process dies, so a live one must keep renewing its claim.

    The call lasts 2.5 claims; heartbeats come 5 per claim, so only a stall of most of a second (a
    loaded test machine) could let the retry take over."""
    monkeypatch.setattr(idem, "LOCK", timedelta(seconds=1.0))
    monkeypatch.setattr(idem, "HEARTBEAT_SECONDS", 0.2)
    runs: list[int] = []

    @app.post("/v1/slow-test")
    async def slow() -> dict[str, int]:
        runs.append(1)
        await asyncio.sleep(2.5)
        return {"runs": len(runs)}

    headers = auth("KH/requester") | {"Idempotency-Key": f"slow-{uuid.uuid4()}"}
    async with Api(app) as client:
        first, second = await asyncio.gather(
            client.post("/v1/slow-test", json={}, headers=headers),
            client.post("/v1/slow-test", json={}, headers=headers),
        )
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and len(runs) == 1
