"""Whole paths over HTTP with a real worker: decisions reach the workflow, refusals map to 4xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.db.models import InvitationTokenRow, OutboxRow, RequestRow
from taflow.settings import Settings
from tests.api.conftest import assert_problem, draft

pytest.importorskip("taflow.workflows.request")
worker_module = pytest.importorskip("taflow.worker")

Auth = Callable[[str], dict[str, str]]
SM = async_sessionmaker[AsyncSession]


@pytest.fixture
async def worker(temporal_client: Client, sessionmaker: SM, task_queue: str) -> AsyncIterator[None]:
    w = worker_module.build_worker(temporal_client, sessionmaker, task_queue, Settings())
    async with w:
        yield


pytestmark = pytest.mark.usefixtures("worker")


async def wait_for(
    api: httpx.AsyncClient, rid: str, headers: dict[str, str], pred: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(600):
        resp = await api.get(f"/v1/requests/{rid}", headers=headers)
        if resp.status_code == 200:
            body = resp.json()
            if pred(body):
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid} never got there: {body.get('stage')}")


async def at_stage(api: httpx.AsyncClient, rid: str, headers: dict[str, str], stage: str) -> dict[str, Any]:
    return await wait_for(api, rid, headers, lambda b: b["stage"] == stage)


async def submit(api: httpx.AsyncClient, auth: Auth, who: str = "KH/requester", **over: Any) -> str:
    resp = await api.post("/v1/requests", json=draft(**over), headers=auth(who))
    assert resp.status_code == 201, resp.text
    rid: str = resp.json()["id"]
    return rid


async def approve(api: httpx.AsyncClient, rid: str, headers: dict[str, str], **extra: Any) -> httpx.Response:
    """ASEC approval; suspected duplicates (other tests submit similar drafts) are dismissed first."""
    body = (await api.get(f"/v1/requests/{rid}", headers=headers)).json()
    suspected = [c["id"] for c in body["duplicate_candidates"] if c["relation"] == "duplicate_suspected"]
    if suspected:
        resp = await api.post(
            f"/v1/requests/{rid}/asec-review",
            json={"decision": "dismiss", "dismissed": suspected, "comment": "different need"},
            headers=headers,
        )
        assert resp.status_code == 200, resp.text
    return await api.post(
        f"/v1/requests/{rid}/asec-review",
        json={"decision": "approve", "comment": "aligned", **extra},
        headers=headers,
    )


async def link_token(sessionmaker: SM, invitation_id: str) -> str:
    for _ in range(100):
        async with sessionmaker() as s:
            payload = (
                await s.execute(
                    select(OutboxRow.payload).where(OutboxRow.dedup_key == f"invitation:{invitation_id}")
                )
            ).scalar_one_or_none()
        if payload:
            token: str = parse_qs(urlparse(payload["response_link"]).query)["token"][0]
            return token
        await asyncio.sleep(0.1)
    raise AssertionError("no invitation link was issued")


async def test_get_right_after_submit_and_from_the_workflow(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await submit(api, auth)
    first = await api.get(f"/v1/requests/{rid}", headers=auth("KH/requester"))
    assert first.status_code == 200, first.text
    assert first.json()["id"] == rid
    body = await at_stage(api, rid, auth("ASEC/asec_reviewer"), "asec_review")
    assert body["timeline"][0]["kind"] == "submitted"
    # with no read-model row the answer comes from the workflow's `status` query
    async with sessionmaker.begin() as s:
        await s.execute(delete(RequestRow).where(RequestRow.id == rid))
    fresh = await api.get(f"/v1/requests/{rid}", headers=auth("KH/requester"))
    assert fresh.status_code == 200
    assert fresh.json()["stage"] == "asec_review"
    assert_problem(await api.get(f"/v1/requests/{rid}", headers=auth("LA/requester")), 404)
    assert_problem(await api.get(f"/v1/requests/{rid}", headers=auth("WCO/expert")), 404)


async def test_approve_match_accept_by_link_complete(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await submit(api, auth)
    asec, rocb, kh = auth("ASEC/asec_reviewer"), auth("ROCB-AP/rocb_officer"), auth("KH/requester")
    # settled: at asec_review with its SLA clock started
    before = await wait_for(api, rid, asec, lambda b: b["stage"] == "asec_review" and b["sla_due_at"])

    wrong = await api.post(f"/v1/requests/{rid}/rocb-match", json={"decision": "no_match"}, headers=rocb)
    assert "asec_review" in assert_problem(wrong, 409, "wrong-stage")["detail"]
    amend = await api.post(f"/v1/requests/{rid}/amendment", json={"draft": draft()}, headers=kh)
    assert_problem(amend, 409, "wrong-stage")
    foreign = await api.post(
        f"/v1/requests/{rid}/withdrawal", json={"reason": "x"}, headers=auth("TH/requester")
    )
    assert_problem(foreign, 404, "not-found")
    unchanged = (await api.get(f"/v1/requests/{rid}", headers=asec)).json()
    assert unchanged["version"] == before["version"] and unchanged["stage"] == "asec_review"

    resp = await approve(api, rid, auth("ASEC/asec_head"), spcd_priorities=["digitalization"])
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "rocb_matching"
    assert resp.json()["id"] == rid

    resp = await api.post(
        f"/v1/requests/{rid}/rocb-match",
        json={"decision": "match", "expert_ids": ["EXP-001"], "comment": "speaks Khmer"},
        headers=rocb,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "expert_invitation"
    body = await wait_for(
        api, rid, rocb, lambda b: b["invitation"] is not None and b["stage"] == "expert_invitation"
    )
    invitation = body["invitation"]
    assert invitation["expert_id"] == "EXP-001" and invitation["status"] == "pending"
    assert body["match"]["expert_ids"] == ["EXP-001"]
    inbox = (await api.get("/v1/inbox", headers=auth("WCO/expert"))).json()["items"]
    assert any(i["invitation_id"] == invitation["id"] for i in inbox)

    token = await link_token(sessionmaker, invitation["id"])
    resp = await api.post(
        f"/v1/invitations/{invitation['id']}/response",
        params={"token": token},
        json={"accept": True, "comment": "yes"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "accepted"
    again = await api.post(
        f"/v1/invitations/{invitation['id']}/response",
        headers={"X-Invitation-Token": token},
        json={"accept": False},
    )
    assert_problem(again, 409, "token-used")
    async with sessionmaker() as s:
        used = (
            await s.execute(
                select(InvitationTokenRow.used_at).where(InvitationTokenRow.invitation_id == invitation["id"])
            )
        ).scalar_one()
    assert used is not None
    # the invitation has closed: answering with a key is a 409 too
    late = await api.post(
        f"/v1/invitations/{invitation['id']}/response", json={"accept": False}, headers=rocb
    )
    assert_problem(late, 409, "wrong-stage")

    await at_stage(api, rid, kh, "scheduled")
    assert_problem(
        await api.post(
            f"/v1/requests/{rid}/completion", json={"report": "r", "delivered_on": "2030-01-01"}, headers=kh
        ),
        403,
    )
    resp = await api.post(
        f"/v1/requests/{rid}/completion",
        json={
            "report": "Delivered to 24 officers.",
            "delivered_on": str(datetime.now(UTC).date()),
        },
        headers=rocb,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "completed"
    final = await at_stage(api, rid, kh, "completed")
    assert final["completion"]["report"] == "Delivered to 24 officers."
    kinds = [e["kind"] for e in final["timeline"]]
    assert {"submitted", "approved", "match_confirmed", "expert_accepted", "completed"} <= set(kinds)
    closed = await api.post(f"/v1/requests/{rid}/withdrawal", json={"reason": "late"}, headers=kh)
    assert_problem(closed, 409, "wrong-stage")


async def test_changes_amendment_and_withdrawal(api: httpx.AsyncClient, auth: Auth) -> None:
    rid = await submit(api, auth, "LA/requester")
    asec, la = auth("ASEC/asec_reviewer"), auth("LA/requester")
    await at_stage(api, rid, asec, "asec_review")
    resp = await api.post(
        f"/v1/requests/{rid}/asec-review",
        json={"decision": "request_changes", "comment": "How many participants?"},
        headers=asec,
    )
    assert resp.json()["stage"] == "changes_requested"
    inbox = (await api.get("/v1/inbox", headers=la)).json()["items"]
    assert any(i["request_id"] == rid and i["action"] == "amendment" for i in inbox)
    assert_problem(
        await api.post(
            f"/v1/requests/{rid}/amendment", json={"draft": draft()}, headers=auth("KH/requester")
        ),
        404,
    )
    bad = await api.post(
        f"/v1/requests/{rid}/amendment",
        json={"draft": draft(desired_start="2030-06-01", desired_end="2030-05-01")},
        headers=la,
    )
    assert_problem(bad, 422, "validation-error")
    resp = await api.post(
        f"/v1/requests/{rid}/amendment",
        json={"draft": draft(title="Risk diagnostic for 25 officers"), "comment": "25 officers"},
        headers=la,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] in ("dedup_check", "asec_review")  # the dedup check may be done already
    body = await at_stage(api, rid, la, "asec_review")
    assert body["title"] == "Risk diagnostic for 25 officers"
    resp = await api.post(f"/v1/requests/{rid}/withdrawal", json={"reason": "funded bilaterally"}, headers=la)
    assert resp.status_code == 200 and resp.json()["stage"] == "withdrawn"


async def test_hold_resume_decline_and_cancel(api: httpx.AsyncClient, auth: Auth) -> None:
    rid = await submit(api, auth, "MY/requester")
    asec, rocb, expert = auth("ASEC/asec_reviewer"), auth("ROCB-AP/rocb_officer"), auth("WCO/expert")
    await at_stage(api, rid, asec, "asec_review")
    assert (await approve(api, rid, asec)).status_code == 200
    resp = await api.post(
        f"/v1/requests/{rid}/rocb-match", json={"decision": "no_match", "comment": "no funds"}, headers=rocb
    )
    assert resp.json()["stage"] == "on_hold"
    resp = await api.post(f"/v1/requests/{rid}/resumption", json={"comment": "new round"}, headers=asec)
    assert resp.status_code == 200 and resp.json()["stage"] == "rocb_matching"
    resp = await api.post(
        f"/v1/requests/{rid}/rocb-match",
        json={"decision": "match", "expert_ids": ["EXP-001"], "comment": "speaks Malay"},
        headers=rocb,
    )
    assert resp.json()["stage"] == "expert_invitation", resp.text
    body = await wait_for(api, rid, rocb, lambda b: b["invitation"] is not None)
    inv = body["invitation"]["id"]
    other_expert = await api.post(
        f"/v1/invitations/{inv}/response", json={"accept": True}, headers=auth("KH/requester")
    )
    assert_problem(other_expert, 403)
    resp = await api.post(
        f"/v1/invitations/{inv}/response", json={"accept": False, "comment": "busy"}, headers=expert
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "declined"
    await at_stage(api, rid, rocb, "rocb_matching")  # nobody left to invite
    resp = await api.post(f"/v1/requests/{rid}/cancellation", json={"reason": "superseded"}, headers=asec)
    assert resp.json()["stage"] == "cancelled"


async def test_duplicate_and_consolidate(api: httpx.AsyncClient, auth: Auth) -> None:
    asec = auth("ASEC/asec_head")
    original = await submit(api, auth, "PH/requester", title="Advance rulings on valuation for PH")
    repeat = await submit(api, auth, "PH/requester", title="Advance rulings on valuation, again")
    survivor = await submit(api, auth, "VN/requester", title="AEO mutual recognition roadmap")
    joining = await submit(api, auth, "BN/requester", title="AEO mutual recognition roadmap for BN")
    for rid in (original, repeat, survivor, joining):
        await at_stage(api, rid, asec, "asec_review")
    resp = await api.post(
        f"/v1/requests/{repeat}/asec-review",
        json={"decision": "duplicate", "duplicate_of": original, "comment": "same ask"},
        headers=asec,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "duplicate"
    resp = await api.post(
        f"/v1/requests/{joining}/asec-review",
        json={"decision": "consolidate", "consolidate_into": survivor, "comment": "one regional activity"},
        headers=asec,
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["stage"] == "consolidated"
    body = await wait_for(api, survivor, asec, lambda b: "BN" in b["beneficiaries"])
    assert body["member_state"] == "VN"
