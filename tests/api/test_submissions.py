"""Submission: id allocation, Location, Idempotency-Key replay and conflicts, concurrency.

These start workflows on the dev server; no worker is needed (the start is what is tested).
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Callable

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus

from taflow.db.credentials import create_key
from taflow.db.models import SubmissionRow
from taflow.domain.models import NewRequest
from taflow.temporal import workflow_id
from tests.api.conftest import assert_problem, count, draft, put_request

Auth = Callable[[str], dict[str, str]]


async def _second_key(sessionmaker: async_sessionmaker[AsyncSession], member_state: str) -> dict[str, str]:
    """Another requester credential of `member_state` (another person of the same administration)."""
    async with sessionmaker() as s:
        key = await create_key(s, member_state, "requester", f"second-{uuid.uuid4().hex[:6]}")
        await s.commit()
    return {"Authorization": f"Bearer {key}"}


ID = re.compile(r"^TA-\d{4}-\d{6}$")


async def test_submit_creates_request_and_starts_workflow(
    api: httpx.AsyncClient, auth: Auth, temporal_client: Client, task_queue: str
) -> None:
    resp = await api.post("/v1/requests", json=draft(), headers=auth("KH/requester"))
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert ID.match(body["id"])
    assert body["member_state"] == "KH"
    assert body["stage"] == "submitted"
    assert resp.headers["location"] == f"/v1/requests/{body['id']}"
    handle = temporal_client.get_workflow_handle(workflow_id(body["id"]))
    described = await handle.describe()
    assert described.status is WorkflowExecutionStatus.RUNNING
    assert described.task_queue == task_queue
    history = await handle.fetch_history()
    start = history.events[0].workflow_execution_started_event_attributes
    payload = json.loads(start.input.payloads[0].data)
    started = NewRequest.model_validate(payload)
    assert started.request_id == body["id"]
    assert started.submitted_by.organisation == "KH"
    await handle.terminate("test done")


async def test_member_state_comes_from_the_credential(api: httpx.AsyncClient, auth: Auth) -> None:
    resp = await api.post("/v1/requests", json=draft(), headers=auth("TL/requester"))
    assert resp.status_code == 201
    assert resp.json()["member_state"] == "TL"


async def test_same_key_same_body_replays(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = f"idem-{uuid.uuid4()}"
    headers = auth("TH/requester") | {"Idempotency-Key": key}
    first = await api.post("/v1/requests", json=draft(), headers=headers)
    assert first.status_code == 201
    before = await count(sessionmaker, "submissions")
    # same content, other key order and whitespace: the canonical digest matches
    reordered = json.dumps(dict(reversed(list(draft().items()))), indent=3)
    again = await api.post(
        "/v1/requests", content=reordered, headers=headers | {"content-type": "application/json"}
    )
    assert again.status_code == 200, again.text  # nothing created: DESIGN section 3
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert await count(sessionmaker, "submissions") == before
    # another credential of the same member state with the same key: the submission record replays
    # the first answer, also once the request has moved on (stage `submitted`, as first answered)
    await put_request(sessionmaker, request_id=first.json()["id"], member_state="TH")
    other = await _second_key(sessionmaker, "TH")
    third = await api.post("/v1/requests", json=draft(), headers=other | {"Idempotency-Key": key})
    assert third.status_code == 200, third.text
    assert third.content == first.content
    assert third.headers["idempotent-replayed"] == "true"
    assert third.headers["location"] == first.headers["location"]


async def test_same_key_other_body_conflicts(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = f"idem-{uuid.uuid4()}"
    headers = auth("VN/requester") | {"Idempotency-Key": key}
    first = await api.post("/v1/requests", json=draft(), headers=headers)
    assert first.status_code == 201
    before = await count(sessionmaker, "submissions")
    resp = await api.post("/v1/requests", json=draft(title="A different request entirely"), headers=headers)
    body = assert_problem(resp, 409, "idempotency-conflict")
    assert first.json()["id"] in body["detail"]
    assert await count(sessionmaker, "submissions") == before


async def test_keys_are_per_member_state(api: httpx.AsyncClient, auth: Auth) -> None:
    key = {"Idempotency-Key": f"shared-{uuid.uuid4()}"}
    a = await api.post("/v1/requests", json=draft(), headers=auth("MY/requester") | key)
    b = await api.post("/v1/requests", json=draft(), headers=auth("SG/requester") | key)
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_hundred_concurrent_submissions_with_one_key_make_one_request(
    api: httpx.AsyncClient,
    auth: Auth,
    sessionmaker: async_sessionmaker[AsyncSession],
    temporal_client: Client,
) -> None:
    key = f"burst-{uuid.uuid4()}"
    claims = await count(sessionmaker, "idempotency_keys")
    headers = auth("PH/requester") | {"Idempotency-Key": key}
    responses = await asyncio.gather(
        *[api.post("/v1/requests", json=draft(), headers=headers) for _ in range(100)]
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 99 + [201], {r.text for r in responses if r.status_code not in (200, 201)}
    assert len({r.content for r in responses}) == 1  # 100 identical answers, byte for byte
    assert len({r.headers["location"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 99
    async with sessionmaker() as s:
        rows = (
            (
                await s.execute(
                    select(SubmissionRow).where(
                        SubmissionRow.member_state == "PH", SubmissionRow.idempotency_key == key
                    )
                )
            )
            .scalars()
            .all()
        )
    assert len(rows) == 1
    assert await count(sessionmaker, "idempotency_keys") == claims  # the submission record alone did it
    rid = responses[0].json()["id"]
    started = await temporal_client.get_workflow_handle(workflow_id(rid)).describe()
    assert started.status is WorkflowExecutionStatus.RUNNING


async def test_replay_restarts_a_workflow_that_never_started(
    api: httpx.AsyncClient,
    auth: Auth,
    temporal_client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """A crash between the submission commit and the workflow start heals on the client's retry."""
    from datetime import UTC, datetime

    from taflow.db.submissions import record_submission
    from taflow.domain.models import RequestDraft

    key = f"crash-{uuid.uuid4()}"
    async with sessionmaker() as s:
        sub = await record_submission(
            s,
            member_state="BN",
            idempotency_key=key,
            draft=RequestDraft.model_validate(draft()),
            submitted_by="bn-first-person",
            now=datetime.now(UTC),
        )
    resp = await api.post(
        "/v1/requests", json=draft(), headers=auth("BN/requester") | {"Idempotency-Key": key}
    )
    assert resp.status_code == 200, resp.text  # a replay of the recorded submission
    assert resp.headers["idempotent-replayed"] == "true"
    assert resp.json()["id"] == sub.request_id
    assert resp.json()["stage"] == "submitted"
    handle = temporal_client.get_workflow_handle(workflow_id(sub.request_id))
    described = await handle.describe()
    assert described.status is WorkflowExecutionStatus.RUNNING
    history = await handle.fetch_history()
    start = history.events[0].workflow_execution_started_event_attributes
    started = NewRequest.model_validate(json.loads(start.input.payloads[0].data))
    assert started.submitted_by.subject == "bn-first-person"  # who recorded it, not who retried
    assert started.submitted_at == sub.submitted_at
