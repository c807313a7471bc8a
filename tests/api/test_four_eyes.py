"""Four-eyes: whoever submitted, amended or escalated a request may not also take its ASEC decision."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.db.submissions import record_submission
from taflow.domain.enums import Role, Stage
from taflow.domain.models import Actor, AuditEvent, RequestDraft
from taflow.temporal import workflow_id
from tests.api.conftest import assert_problem, closed_workflow, draft, new_key, put_request

SM = async_sessionmaker[AsyncSession]
APPROVE = {"decision": "approve", "comment": "fine"}


async def test_the_submitter_may_not_review_what_they_submitted(
    api: httpx.AsyncClient, sessionmaker: SM, temporal_client: Client
) -> None:
    person = f"seconded-{uuid.uuid4().hex[:6]}"  # a KH officer seconded to ASEC holds both credentials
    as_reviewer = await new_key(sessionmaker, "ASEC", "asec_reviewer", person)
    as_head = await new_key(sessionmaker, "ASEC", "asec_head", person)
    someone_else = await new_key(sessionmaker, "ASEC", "asec_reviewer", f"other-{uuid.uuid4().hex[:6]}")
    rid = await put_request(sessionmaker, member_state="KH", stage=Stage.asec_review, submitted_by=person)
    await closed_workflow(temporal_client, workflow_id(rid))
    for headers in (as_reviewer, as_head):
        body = assert_problem(
            await api.post(f"/v1/requests/{rid}/asec-review", json=APPROVE, headers=headers), 403
        )
        assert body["type"].endswith("/four-eyes") and person in body["detail"]
    # other decisions are not four-eyes bound; another reviewer passes the gate (the workflow is closed: 409)
    assert_problem(
        await api.post(f"/v1/requests/{rid}/hold", json={}, headers=as_reviewer), 409, "wrong-stage"
    )
    resp = await api.post(f"/v1/requests/{rid}/asec-review", json=APPROVE, headers=someone_else)
    assert_problem(resp, 409, "wrong-stage")


async def test_amending_or_escalating_by_hand_bars_the_decision_too(
    api: httpx.AsyncClient, sessionmaker: SM, temporal_client: Client
) -> None:
    person = f"p-{uuid.uuid4().hex[:6]}"
    reviewer = await new_key(sessionmaker, "ASEC", "asec_reviewer", person)
    for kind in ("amended", "escalated"):
        event = AuditEvent(
            seq=3,
            at=datetime.now(UTC),
            actor=Actor(subject=person, organisation="ASEC", role=Role.asec_reviewer),
            kind=kind,
        )
        rid = await put_request(sessionmaker, stage=Stage.asec_review, extra_events=[event])
        await closed_workflow(temporal_client, workflow_id(rid))
        resp = await api.post(f"/v1/requests/{rid}/asec-review", json=APPROVE, headers=reviewer)
        assert_problem(resp, 403, "four-eyes")
    # a system escalation (the SLA timer) bars nobody
    event = AuditEvent(
        seq=3,
        at=datetime.now(UTC),
        actor=Actor(subject="taflow", organisation="TAFLOW", role=Role.ops),
        kind="escalated",
    )
    rid = await put_request(sessionmaker, stage=Stage.asec_review, extra_events=[event])
    await closed_workflow(temporal_client, workflow_id(rid))
    assert_problem(await api.post(f"/v1/requests/{rid}/asec-review", json=APPROVE, headers=reviewer), 409)


async def test_four_eyes_holds_before_the_read_model_has_the_request(
    api: httpx.AsyncClient, sessionmaker: SM, temporal_client: Client
) -> None:
    person = f"early-{uuid.uuid4().hex[:6]}"
    async with sessionmaker() as s:
        sub = await record_submission(
            s,
            member_state="KH",
            idempotency_key=None,
            draft=RequestDraft.model_validate(draft()),
            submitted_by=person,
            now=datetime.now(UTC),
        )
    reviewer = await new_key(sessionmaker, "ASEC", "asec_reviewer", person)
    resp = await api.post(f"/v1/requests/{sub.request_id}/asec-review", json=APPROVE, headers=reviewer)
    assert_problem(resp, 403, "four-eyes")
