"""GET, lists, the inbox and the database checks of decisions, against read-model rows written by the
real projection writer (no worker needed)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.api.routes.requests import TIMELINE
from taflow.db.models import CatalogueActivityRow
from taflow.db.read_queries import get_request_document
from taflow.domain.enums import Stage
from taflow.temporal import workflow_id
from tests.api.conftest import assert_problem, draft, new_id, put_request

Auth = Callable[[str], dict[str, str]]
SM = async_sessionmaker[AsyncSession]


async def test_own_request_is_visible_with_its_timeline(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await put_request(sessionmaker, member_state="KH", stage=Stage.asec_review)
    for who in ("KH/requester", "ASEC/asec_reviewer", "ASEC/asec_head", "ROCB-AP/rocb_officer", "ASEC/ops"):
        resp = await api.get(f"/v1/requests/{rid}", headers=auth(who))
        assert resp.status_code == 200, (who, resp.text)
        body = resp.json()
        assert body["id"] == rid
        assert body["stage"] == "asec_review"
        assert body["waiting_on"] == "asec_reviewer"
        assert [e["seq"] for e in body["timeline"]] == [1, 2]
        assert body["timeline"][1]["to_stage"] == "asec_review"
        assert body["match"] is None and body["invitation"] is None
        assert body["duplicate_candidates"] == []


async def test_timeline_times_are_utc_whatever_the_session_time_zone(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    """The GET's timeline is rendered to JSON by PostgreSQL, which writes times in the session's
    TimeZone unless told otherwise: the answer must not depend on the server's setting."""
    at = datetime(2026, 11, 29, 23, 30, 15, 123456, tzinfo=UTC)
    rid = await put_request(sessionmaker, updated_at=at)
    answer = await api.get(f"/v1/requests/{rid}", headers=auth("ASEC/ops"))
    assert [e["at"] for e in answer.json()["timeline"]] == [
        "2026-11-28T23:30:15.123456Z",
        "2026-11-29T23:30:15.123456Z",
    ]
    async with sessionmaker() as session:
        connection = await session.connection()
        await connection.exec_driver_sql("SET TIME ZONE 'Asia/Bangkok'")
        document = await get_request_document(connection, rid)
        await session.rollback()
    assert document is not None
    times = [e.at for e in TIMELINE.validate_json(document.timeline_json)]
    assert times == [at - timedelta(days=1), at]
    assert all(t.utcoffset() == timedelta(0) for t in times)


async def test_foreign_request_is_404_as_if_it_did_not_exist(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await put_request(sessionmaker, member_state="KH")
    foreign = await api.get(f"/v1/requests/{rid}", headers=auth("TH/requester"))
    missing = await api.get("/v1/requests/TA-1999-000000", headers=auth("TH/requester"))
    a, b = assert_problem(foreign, 404, "not-found"), assert_problem(missing, 404, "not-found")
    assert a["title"] == b["title"]
    for path, body in [("withdrawal", {"reason": "mine now"}), ("amendment", {"draft": draft()})]:
        resp = await api.post(f"/v1/requests/{rid}/{path}", json=body, headers=auth("TH/requester"))
        assert_problem(resp, 404, "not-found")


async def test_expert_sees_only_what_they_are_invited_to(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    marker = uuid.uuid4().hex[:8]
    invitation = {
        "id": f"INV-{marker}",
        "expert_id": "EXP-001",
        "status": "pending",
        "respond_by": (datetime.now(UTC) + timedelta(days=7)).isoformat(),
    }
    mine = await put_request(
        sessionmaker, stage=Stage.expert_invitation, invitation=invitation, title=f"Invited {marker}"
    )
    other = await put_request(sessionmaker, stage=Stage.asec_review, title=f"Not invited {marker}")
    assert (await api.get(f"/v1/requests/{mine}", headers=auth("WCO/expert"))).status_code == 200
    assert_problem(await api.get(f"/v1/requests/{other}", headers=auth("WCO/expert")), 404)
    listed = await api.get("/v1/requests", params={"q": marker}, headers=auth("WCO/expert"))
    assert [i["id"] for i in listed.json()["items"]] == [mine]
    inbox = await api.get("/v1/inbox", headers=auth("WCO/expert"))
    item = next(i for i in inbox.json()["items"] if i["request_id"] == mine)
    assert item["href"] == f"/v1/invitations/INV-{marker}/response"
    assert item["invitation_id"] == f"INV-{marker}"


async def test_list_filters_and_visibility(api: httpx.AsyncClient, auth: Auth, sessionmaker: SM) -> None:
    marker = uuid.uuid4().hex[:8]
    kh = await put_request(
        sessionmaker, member_state="KH", title=f"Green customs {marker}", topics=["green-customs"]
    )
    la = await put_request(
        sessionmaker,
        member_state="LA",
        stage=Stage.rocb_matching,
        title=f"Risk {marker}",
        topics=["risk-management"],
    )

    async def ids(who: str, **params: str) -> list[str]:
        resp = await api.get("/v1/requests", params={"q": marker, **params}, headers=auth(who))
        assert resp.status_code == 200, resp.text
        return [i["id"] for i in resp.json()["items"]]

    assert set(await ids("ASEC/asec_reviewer")) == {kh, la}
    assert await ids("KH/requester") == [kh]
    assert await ids("KH/requester", member_state="LA") == []
    assert await ids("ROCB-AP/rocb_officer", stage="rocb_matching") == [la]
    assert await ids("ASEC/ops", topic="green-customs") == [kh]
    assert await ids("ASEC/admin", member_state="LA") == [la]
    assert await ids("ASEC/asec_head", q=f"GREEN CUSTOMS {marker}") == [kh]
    assert await ids("ASEC/asec_head", q=f"%{marker}_") == []  # wildcards are literal


async def test_cursor_pages_never_skip_or_repeat(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    marker = uuid.uuid4().hex[:8]
    same_time = datetime.now(UTC).replace(microsecond=0)
    made = []
    for n in range(7):
        at = same_time if n < 4 else same_time - timedelta(minutes=n)  # ties on updated_at too
        made.append(
            await put_request(sessionmaker, member_state="MM", title=f"Page {marker} {n}", updated_at=at)
        )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"q": marker, "limit": "3"} | ({"cursor": cursor} if cursor else {})
        resp = await api.get("/v1/requests", params=params, headers=auth("MM/requester"))
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert len(page["items"]) <= 3
        seen += [i["id"] for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(made) and len(seen) == len(set(seen))
    stamps = [
        (i["updated_at"], i["id"])
        for i in [(await api.get(f"/v1/requests/{r}", headers=auth("MM/requester"))).json() for r in seen]
    ]
    assert stamps == sorted(stamps, reverse=True)


async def test_inbox_by_role_and_urgency(api: httpx.AsyncClient, auth: Auth, sessionmaker: SM) -> None:
    now = datetime.now(UTC)
    later = await put_request(sessionmaker, member_state="ID", sla_due_at=now + timedelta(days=9))
    sooner = await put_request(sessionmaker, member_state="ID", sla_due_at=now + timedelta(days=1))
    no_sla = await put_request(sessionmaker, member_state="ID")
    changes = await put_request(sessionmaker, member_state="ID", stage=Stage.changes_requested)
    matching = await put_request(sessionmaker, member_state="SG", stage=Stage.rocb_matching)
    closed = await put_request(sessionmaker, member_state="ID", stage=Stage.rejected)

    async def inbox(who: str) -> list[str]:
        resp = await api.get("/v1/inbox", headers=auth(who))
        assert resp.status_code == 200
        return [i["request_id"] for i in resp.json()["items"]]

    asec = await inbox("ASEC/asec_reviewer")
    assert asec.index(sooner) < asec.index(later) < asec.index(no_sla)
    assert changes not in asec and matching not in asec and closed not in asec
    assert sooner in await inbox("ASEC/asec_head")
    assert matching in await inbox("ROCB-AP/rocb_officer")
    assert changes in await inbox("ID/requester")
    assert changes not in await inbox("KH/requester")
    assert await inbox("ASEC/ops") == []
    item = next(
        i
        for i in (await api.get("/v1/inbox", headers=auth("ID/requester"))).json()["items"]
        if i["request_id"] == changes
    )
    assert item["action"] == "amendment" and item["href"] == f"/v1/requests/{changes}/amendment"


async def test_duplicate_and_consolidate_targets_are_checked(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    rid = await put_request(sessionmaker, member_state="KH")
    same_state = await put_request(sessionmaker, member_state="KH")
    closed_other = await put_request(sessionmaker, member_state="LA", stage=Stage.withdrawn)
    headers = auth("ASEC/asec_reviewer")
    cases = [
        {"decision": "duplicate", "duplicate_of": "TA-1999-000000"},
        {"decision": "duplicate", "duplicate_of": rid},
        {"decision": "consolidate", "consolidate_into": "TA-1999-000000"},
        {"decision": "consolidate", "consolidate_into": rid},
        {"decision": "consolidate", "consolidate_into": same_state},
        {"decision": "consolidate", "consolidate_into": closed_other},
    ]
    for body in cases:
        resp = await api.post(f"/v1/requests/{rid}/asec-review", json=body, headers=headers)
        assert_problem(resp, 422, "invalid-decision")


async def test_duplicate_of_a_catalogue_activity_passes_the_check(
    api: httpx.AsyncClient, auth: Auth, sessionmaker: SM
) -> None:
    """The DB check passes; the request has no workflow, so the answer is the workflow's 404."""
    activity = f"XM-DAC-TEST-{uuid.uuid4().hex[:6]}"
    async with sessionmaker.begin() as s:
        await s.execute(
            insert(CatalogueActivityRow).values(
                id=activity,
                provider="WCO",
                title="PCA workshop",
                topics=["post-clearance-audit"],
                beneficiaries=["KH"],
            )
        )
    rid = await put_request(sessionmaker, member_state="KH")
    resp = await api.post(
        f"/v1/requests/{rid}/asec-review",
        json={"decision": "duplicate", "duplicate_of": activity},
        headers=auth("ASEC/asec_reviewer"),
    )
    assert_problem(resp, 404, "not-found")


async def test_decision_on_a_closed_workflow_is_409(
    api: httpx.AsyncClient, auth: Auth, temporal_client: Client
) -> None:
    resp = await api.post("/v1/requests", json=draft(), headers=auth("KH/requester"))
    rid = resp.json()["id"]
    await temporal_client.get_workflow_handle(workflow_id(rid)).terminate("closed for the test")
    resp = await api.post(
        f"/v1/requests/{rid}/withdrawal", json={"reason": "x"}, headers=auth("KH/requester")
    )
    assert_problem(resp, 409, "wrong-stage")
    resp = await api.post(f"/v1/requests/{rid}/cancellation", json={}, headers=auth("ASEC/asec_head"))
    assert_problem(resp, 409, "wrong-stage")
    # before the projection has a row, a foreign member state still cannot see it
    resp = await api.post(
        f"/v1/requests/{rid}/withdrawal", json={"reason": "x"}, headers=auth("TH/requester")
    )
    assert_problem(resp, 404, "not-found")
    assert_problem(await api.get(f"/v1/requests/{rid}", headers=auth("TH/requester")), 404)


async def test_invitation_auth(api: httpx.AsyncClient, auth: Auth) -> None:
    inv = new_id("INV")
    body = {"accept": True}
    assert_problem(await api.post(f"/v1/invitations/{inv}/response", json=body), 401, "unauthorized")
    resp = await api.post(f"/v1/invitations/{inv}/response", params={"token": "nope"}, json=body)
    assert_problem(resp, 404, "not-found")
    resp = await api.post(
        f"/v1/invitations/{inv}/response", headers={"X-Invitation-Token": "nope"}, json=body
    )
    assert_problem(resp, 404, "not-found")
    for who in ("KH/requester", "ASEC/asec_reviewer"):
        resp = await api.post(f"/v1/invitations/{inv}/response", json=body, headers=auth(who))
        assert_problem(resp, 403, "forbidden")
    resp = await api.post(f"/v1/invitations/{inv}/response", json=body, headers=auth("WCO/expert"))
    assert_problem(resp, 404, "not-found")
    resp = await api.post(f"/v1/invitations/{inv}/response", json=body, headers=auth("ROCB-AP/rocb_officer"))
    assert_problem(resp, 404, "not-found")
    resp = await api.post(
        f"/v1/invitations/{inv}/response", json={"accept": "perhaps"}, headers=auth("WCO/expert")
    )
    assert_problem(resp, 422, "validation-error")


async def test_invitation_token_states(api: httpx.AsyncClient, sessionmaker: SM) -> None:
    from taflow.db.invitations import issue_token

    now = datetime.now(UTC)
    tokens = {}
    async with sessionmaker.begin() as s:
        for name, expires, used in [
            ("expired", now - timedelta(hours=1), None),
            ("used", now + timedelta(days=1), now),
        ]:
            inv = new_id("INV")
            token = await issue_token(
                s, invitation_id=inv, request_id="TA-X", expert_id="EXP-9", expires_at=expires
            )
            assert token
            tokens[name] = (inv, token)
            if used:
                from sqlalchemy import update

                from taflow.db.models import InvitationTokenRow

                await s.execute(
                    update(InvitationTokenRow)
                    .where(InvitationTokenRow.invitation_id == inv)
                    .values(used_at=used)
                )
    inv, token = tokens["expired"]
    resp = await api.post(f"/v1/invitations/{inv}/response", params={"token": token}, json={"accept": True})
    assert_problem(resp, 410, "token-expired")
    inv, token = tokens["used"]
    resp = await api.post(f"/v1/invitations/{inv}/response", params={"token": token}, json={"accept": True})
    assert_problem(resp, 409, "token-used")
    resp = await api.post(
        "/v1/invitations/INV-other/response", params={"token": token}, json={"accept": True}
    )
    assert_problem(resp, 404, "not-found")


async def test_health_and_openapi(api: httpx.AsyncClient) -> None:
    health = await api.get("/healthz")
    assert health.json() == {"status": "ok", "database": "ok", "temporal": "ok"}
    schema = (await api.get("/openapi.json")).json()
    enums = schema["components"]["schemas"]
    assert "asec_review" in enums["Stage"]["enum"]
    assert "timor-leste-accession" in enums["Topic"]["enum"]
    assert "TL" in enums["MemberState"]["enum"]
    assert "study_visit" in enums["Modality"]["enum"]
    assert "combating-illicit-trade" in enums["SpcdPriority"]["enum"]
    for path, ops in schema["paths"].items():
        for op in ops.values():
            assert op.get("summary"), path
            for code, response in op["responses"].items():
                if code.startswith(("4", "5")) and path != "/healthz":
                    assert list(response["content"]) == ["application/problem+json"], (path, code)
    post = schema["paths"]["/v1/requests"]["post"]
    assert post["requestBody"]["content"]["application/json"]["examples"]
    assert {"201", "409", "422", "401", "403", "503"} <= set(post["responses"])
    assert "Idempotency-Key" in post["responses"]["200"]["description"]  # a replay: 200, nothing created
    schemas = {
        code: post["responses"][code]["content"]["application/json"]["schema"] for code in ("200", "201")
    }
    assert schemas["200"] == schemas["201"]
    assert (await api.get("/docs")).status_code == 200
