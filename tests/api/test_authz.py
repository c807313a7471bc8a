"""The authorisation table, called: every route x every role x an own and a foreign organisation's resource.

Generated from `taflow.authz.RULES` (what docs/security.md prints): a role the table does not list
gets 403; one that reaches `any` succeeds on both; one that reaches `own`/`invited` succeeds on its
own resource and gets 404 on the foreign one (403 when it names another organisation in a body).
"Succeeds" for a decision means it passed every gate and reached the workflow, which is closed here:
409 wrong-stage, without any state changing.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow import authz
from taflow.api.app import create_app
from taflow.authz import RULES, Action, Reach, Target
from taflow.db import webhooks as wh
from taflow.db.models import OutboxRow, WebhookDeliveryRow
from taflow.domain.enums import Role, Stage
from taflow.temporal import invitation_workflow_id, workflow_id
from tests.api.conftest import Api, assert_problem, closed_workflow, draft, make_app, put_request, today

SM = async_sessionmaker[AsyncSession]
DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"

CREDENTIAL: dict[Role, str] = {
    Role.requester: "KH/requester",
    Role.asec_reviewer: "ASEC/asec_reviewer",
    Role.asec_head: "ASEC/asec_head",
    Role.rocb_officer: "ROCB-AP/rocb_officer",
    Role.expert: "WCO/expert",
    Role.ops: "ASEC/ops",
    Role.admin: "ASEC/admin",
}
FOREIGN_ORG = {"KH": "TH", "ASEC": "KH", "ROCB-AP": "KH", "WCO": "KH"}
BODIES: dict[Action, dict[str, Any]] = {
    Action.submit_request: draft(),
    Action.asec_review: {"decision": "approve"},
    Action.amend: {"draft": draft()},
    Action.rocb_match: {"decision": "no_match"},
    Action.complete: {"report": "done", "delivered_on": str(today())},
    Action.withdraw: {"reason": "x"},
    Action.cancel: {"reason": "x"},
    Action.resume: {},
    Action.hold: {"hold": True},
    Action.retime: {},
    Action.respond_invitation: {"accept": True},
    Action.create_webhook: {"url": "https://partner.example.org/hook", "event_types": ["request.*"]},
}
SUCCESS: dict[Action, int] = {
    Action.submit_request: 201,
    Action.create_webhook: 201,
    Action.delete_webhook: 204,
    Action.redeliver: 202,
    **{a: 200 for a in (Action.list_requests, Action.read_request, Action.read_inbox)},
    **{a: 200 for a in (Action.list_webhooks, Action.list_deliveries)},
}
"""Anything else targets a request or an invitation whose workflow is closed: 409 once authorised."""


def expected(action: Action, role: Role, own: bool) -> int:
    rule = authz.POLICY[action]
    reach = rule.roles.get(role)
    ok = SUCCESS.get(action, 409)
    if reach is None:
        return 403
    if reach is Reach.any or own or rule.target is Target.none:
        return ok
    return 403 if rule.target is Target.organisation else 404


CASES = [
    pytest.param(r.action, role, own, id=f"{r.action.value}-{role.value}-{'own' if own else 'foreign'}")
    for r in RULES
    for role in Role
    for own in (True, False)
]


@dataclass(frozen=True)
class World:
    own_request: str
    foreign_request: str
    own_invitation: str
    foreign_invitation: str


@pytest.fixture(scope="module")
async def world(sessionmaker: SM, temporal_client: Client) -> World:
    ids: dict[str, tuple[str, str]] = {}
    for org, expert in (("KH", "EXP-001"), ("TH", "EXP-OTHER")):
        rid = f"TA-AZ-{uuid.uuid4().hex[:10]}"
        invitation = {
            "id": f"{rid}-1",
            "expert_id": expert,
            "status": "accepted",
            "respond_by": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        }
        await put_request(
            sessionmaker, request_id=rid, member_state=org, stage=Stage.withdrawn, invitation=invitation
        )
        await closed_workflow(temporal_client, workflow_id(rid))
        await closed_workflow(temporal_client, invitation_workflow_id(f"{rid}-1"), "ExpertInvitationWorkflow")
        ids[org] = (rid, f"{rid}-1")
    return World(ids["KH"][0], ids["TH"][0], ids["KH"][1], ids["TH"][1])


CREATED: list[str] = []


@pytest.fixture(scope="module", autouse=True)
async def _drop_webhooks(sessionmaker: SM) -> AsyncIterator[None]:
    """The webhooks made here point nowhere: delete them so no dispatcher ever tries them."""
    yield
    async with sessionmaker.begin() as s:
        for webhook_id in CREATED:
            await wh.delete_subscription(s, webhook_id, datetime.now(UTC))
        for sub in await wh.list_subscriptions(s, None):
            if sub.url == BODIES[Action.create_webhook]["url"]:
                await wh.delete_subscription(s, sub.id, datetime.now(UTC))


async def _webhook(sessionmaker: SM, organisation: str) -> tuple[str, int]:
    """A webhook of `organisation` with one dead delivery (for listing, deleting and redelivering)."""
    async with sessionmaker.begin() as s:
        sub = await wh.create_subscription(
            s,
            organisation=organisation,
            url="https://partner.example.org/hook",
            event_types=["request.*"],
            secret=wh.generate_secret(),
            description="authz test",
            created_by="authz-test",
        )
        CREATED.append(sub.id)
        event = OutboxRow(
            dedup_key=f"authz:{uuid.uuid4().hex}",
            request_id="TA-AZ-none",
            event_type="request.approved",
            audience=[organisation],
            payload={},
            delivered_at=datetime.now(UTC),
        )
        s.add(event)
        await s.flush()
        delivery = WebhookDeliveryRow(
            outbox_id=event.id, subscription_id=sub.id, status=wh.DEAD, generation=0, attempts=3
        )
        s.add(delivery)
        await s.flush()
        return sub.id, delivery.id


async def _call(
    api: httpx.AsyncClient, sessionmaker: SM, world: World, action: Action, role: Role, own: bool
) -> httpx.Response:
    rule = authz.POLICY[action]
    headers = {"Authorization": f"Bearer {KEYS[CREDENTIAL[role]]}"}
    org = CREDENTIAL[role].split("/")[0]
    path, body = rule.path, BODIES.get(action)
    if rule.target is Target.request:
        path = path.replace("{request_id}", world.own_request if own else world.foreign_request)
    elif rule.target is Target.invitation:
        path = path.replace("{invitation_id}", world.own_invitation if own else world.foreign_invitation)
    elif rule.target is Target.webhook:
        webhook_id, delivery_id = await _webhook(sessionmaker, org if own else FOREIGN_ORG[org])
        path = path.replace("{webhook_id}", webhook_id).replace("{delivery_id}", str(delivery_id))
    elif rule.target is Target.organisation and not own:
        body = (body or {}) | {"organisation": FOREIGN_ORG[org]}
    return await api.request(rule.method, path, json=body, headers=headers)


KEYS: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _keys(keys: dict[str, str]) -> None:
    KEYS.update(keys)


@pytest.fixture(scope="module")
async def shared_api(
    database_url: str, engine: AsyncEngine, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """One app for all cases (an app per case would triple the time)."""
    async with Api(
        make_app(database_url, engine, temporal_client, f"authz-{uuid.uuid4().hex[:8]}")
    ) as client:
        yield client


@pytest.mark.parametrize(("action", "role", "own"), CASES)
async def test_table(
    shared_api: httpx.AsyncClient, sessionmaker: SM, world: World, action: Action, role: Role, own: bool
) -> None:
    resp = await _call(shared_api, sessionmaker, world, action, role, own)
    want = expected(action, role, own)
    if want >= 400:
        assert_problem(resp, want)
    else:
        assert resp.status_code == want, (resp.status_code, resp.text)
    if want == 409:
        assert_problem(resp, 409, "wrong-stage")  # authorised, and refused by the (closed) workflow


def test_every_route_is_in_the_table() -> None:
    paths = create_app().openapi()["paths"]
    routes = {
        (method.upper(), path) for path, item in paths.items() if path.startswith("/v1/") for method in item
    }
    table = {(r.method, r.path) for r in RULES}
    assert routes == table


def test_docs_print_the_table() -> None:
    """docs/security.md carries the generated table; regenerate with `python -m taflow.authz --write ...`."""
    text = DOC.read_text(encoding="utf-8")
    assert authz.render_into(text) == text, (
        "docs/security.md is stale: run python -m taflow.authz --write docs/security.md"
    )
    assert "| `request.asec_review` |" in text
