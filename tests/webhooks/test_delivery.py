"""Webhooks end to end: the real outbox, a real worker and dispatcher, real HTTP receivers on loopback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from temporalio.client import Client
from typer.testing import CliRunner

from taflow.cli import app as cli_app
from taflow.db import webhooks as db
from taflow.db.models import OutboxRow
from taflow.db.projection import write_notifications
from taflow.domain.models import Notification
from tests.api.conftest import assert_problem, draft
from tests.webhooks.conftest import (
    Receiver,
    deliveries,
    drop_webhooks,
    fast_settings,
    running,
    wait_until,
)

Auth = Callable[[str], dict[str, str]]
SM = async_sessionmaker[AsyncSession]


async def _hook(
    api: httpx.AsyncClient, headers: dict[str, str], url: str, types: list[str]
) -> dict[str, str]:
    resp = await api.post("/v1/webhooks", json={"url": url, "event_types": types}, headers=headers)
    assert resp.status_code == 201, resp.text
    body: dict[str, str] = resp.json()
    assert body["secret"].startswith("whsec_")
    return body


async def _event(sessionmaker: SM, audience: list[str], request_id: str | None = None) -> str:
    """An outbox row as the projection writes it (here for a request ASEC may see)."""
    rid = request_id or f"TA-WH-{uuid.uuid4().hex[:10]}"
    note = Notification(
        request_id=rid,
        event_type="request.escalated",
        audience=audience,
        payload={"request_id": rid, "seq": 7, "kind": "escalated", "stage": "asec_review"},
        dedup_key=f"{rid}:7",
    )
    async with sessionmaker.begin() as s:
        await write_notifications(s, [note])
    return rid


async def test_signed_events_reach_only_the_organisations_that_may_see_them(
    api: httpx.AsyncClient,
    auth: Auth,
    sessionmaker: SM,
    temporal_client: Client,
    database_url: str,
    task_queue: str,
    receivers: Callable[[], Receiver],
) -> None:
    kh, th, kh_narrow, asec = receivers(), receivers(), receivers(), receivers()
    for r in (kh, th, kh_narrow, asec):
        await r.start()
    hooks = [
        await _hook(api, auth("KH/requester"), kh.url, ["request.*"]),
        await _hook(api, auth("TH/requester"), th.url, ["*"]),
        await _hook(api, auth("KH/requester"), kh_narrow.url, ["request.approved"]),
        await _hook(api, auth("ASEC/asec_head"), asec.url, ["request.submitted", "request.dedup_checked"]),
    ]
    try:
        async with running(temporal_client, sessionmaker, fast_settings(database_url, task_queue)):
            resp = await api.post("/v1/requests", json=draft(), headers=auth("KH/requester"))
            rid = resp.json()["id"]
            await wait_until(
                lambda: {"request.submitted", "request.dedup_checked"} <= {e["type"] for e in kh.events(rid)},
                what="KH's events",
            )
            await wait_until(lambda: len(asec.events(rid)) == 2, what="ASEC's events")
        # signatures verify with the library's own verifier and each subscription's secret
        for receiver, hook in ((kh, hooks[0]), (asec, hooks[3])):
            for got in receiver.received:
                if got.event["data"].get("request_id") != rid:
                    continue
                assert Webhook(hook["secret"]).verify(got.body, got.headers)["data"]["request_id"] == rid
                with pytest.raises(WebhookVerificationError):
                    Webhook(hooks[1]["secret"]).verify(got.body, got.headers)
                assert got.headers["webhook-id"].startswith("evt_")
        submitted = next(e for e in kh.events(rid) if e["type"] == "request.submitted")
        assert submitted["data"]["stage"] == "submitted" and submitted["id"].startswith("evt_")
        # no event of a KH request ever reaches TH; the narrow KH hook got nothing it did not ask for
        assert th.events(rid) == []
        assert not await deliveries(sessionmaker, hooks[1]["id"]) or all(
            o.request_id != rid for o in await _outbox_of(sessionmaker, hooks[1]["id"])
        )
        assert all(e["type"] == "request.approved" for e in kh_narrow.events())
    finally:
        await drop_webhooks(sessionmaker, [h["id"] for h in hooks])


async def _outbox_of(sessionmaker: SM, subscription_id: str) -> list[OutboxRow]:
    ids = [d.outbox_id for d in await deliveries(sessionmaker, subscription_id)]
    async with sessionmaker() as s:
        return list((await s.execute(select(OutboxRow).where(OutboxRow.id.in_(ids)))).scalars())


async def test_a_receiver_that_is_down_gets_the_event_when_it_is_back(
    api: httpx.AsyncClient,
    auth: Auth,
    sessionmaker: SM,
    temporal_client: Client,
    database_url: str,
    task_queue: str,
    receivers: Callable[[], Receiver],
) -> None:
    receiver = receivers()  # not started: connections are refused
    hook = await _hook(api, auth("ASEC/asec_head"), receiver.url, ["request.escalated"])
    try:
        async with running(temporal_client, sessionmaker, fast_settings(database_url, task_queue)):
            rid = await _event(sessionmaker, ["ASEC", "KH"])
            await wait_until(
                lambda: _attempts(sessionmaker, hook["id"], lambda d: d.attempts >= 3),
                what="three failed attempts",
            )
            receiver.status = 503  # up, but failing: still retried
            await receiver.start()
            await wait_until(lambda: len(receiver.received) >= 2, what="a 503 answer")
            receiver.status = 200
            [delivered] = await wait_until(
                lambda: _attempts(sessionmaker, hook["id"], lambda d: d.status == db.DELIVERED),
                what="delivery",
            )
        assert delivered.attempts >= 5 and delivered.last_status_code == 200
        event = receiver.received[-1]
        assert Webhook(hook["secret"]).verify(event.body, event.headers)["data"]["request_id"] == rid
        assert len({r.headers["webhook-id"] for r in receiver.received}) == 1  # one event, retried
        listed = await api.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=auth("ASEC/asec_head"))
        assert listed.json()["items"][0]["status"] == "delivered"
    finally:
        await drop_webhooks(sessionmaker, [hook["id"]])


async def _attempts(
    sessionmaker: SM, subscription_id: str, pred: Callable[[db.WebhookDeliveryRow], bool]
) -> list:
    rows = await deliveries(sessionmaker, subscription_id)
    return rows if rows and all(pred(d) for d in rows) else []


async def test_past_the_budget_a_delivery_is_dead_lettered_and_redelivered(
    api: httpx.AsyncClient,
    auth: Auth,
    sessionmaker: SM,
    temporal_client: Client,
    database_url: str,
    task_queue: str,
    receivers: Callable[[], Receiver],
) -> None:
    receiver = receivers()
    hook = await _hook(api, auth("ASEC/asec_head"), receiver.url, ["request.*"])
    settings = fast_settings(database_url, task_queue, webhook_max_attempts=3)
    try:
        async with running(temporal_client, sessionmaker, settings):
            first, second = await _event(sessionmaker, ["ASEC"]), await _event(sessionmaker, ["ASEC"])
            dead = await wait_until(
                lambda: _attempts(sessionmaker, hook["id"], lambda d: d.status == db.DEAD),
                what="dead letters",
            )
            assert len(dead) == 2 and all(
                d.attempts == 3 and "retry budget" in (d.last_error or "") for d in dead
            )
            head = auth("ASEC/asec_head")
            page = (await api.get(f"/v1/webhooks/{hook['id']}/deliveries?status=dead", headers=head)).json()
            assert {i["request_id"] for i in page["items"]} == {first, second}
            await receiver.start()
            # an admin redelivers one over the API (others may not)
            target = next(i for i in page["items"] if i["request_id"] == first)
            path = f"/v1/webhooks/{hook['id']}/deliveries/{target['id']}/redelivery"
            assert_problem(await api.post(path, headers=head), 403)
            resp = await api.post(path, headers=auth("ASEC/admin"))
            assert resp.status_code == 202, resp.text
            assert resp.json()["status"] == "pending"
            await wait_until(lambda: receiver.events(first), what="the redelivered event")
            # ... and ops redeliver the rest from the CLI
            out = await asyncio.to_thread(
                CliRunner().invoke,
                cli_app,
                ["webhooks", "redeliver", "--dead", "--webhook", hook["id"]],
                env={"TAFLOW_DATABASE_URL": database_url},
            )
            assert out.exit_code == 0, out.output
            assert "1 delivery queued" in out.stdout
            await wait_until(lambda: receiver.events(second), what="the CLI's redelivery")
        rows = await deliveries(sessionmaker, hook["id"])
        assert all(d.status == db.DELIVERED and d.generation == 1 for d in rows)
        for got in receiver.received:
            Webhook(hook["secret"]).verify(got.body, got.headers)
    finally:
        await drop_webhooks(sessionmaker, [hook["id"]])


async def test_fan_out_follows_the_audience_and_visibility(sessionmaker: SM) -> None:
    """Straight on the fan-out: a beneficiary state in the audience hears nothing of another's request."""
    subs = {}
    async with sessionmaker.begin() as s:
        for org in ("KH", "TH", "ASEC", "ROCB-AP"):
            row = await db.create_subscription(
                s,
                organisation=org,
                url="https://x.example.org/h",
                event_types=["*"],
                secret=db.generate_secret(),
                description="",
                created_by="t",
            )
            subs[org] = row.id
    try:
        from tests.api.conftest import put_request

        rid = await put_request(sessionmaker, member_state="TH")
        await _event(sessionmaker, ["TH", "KH", "ASEC"], request_id=rid)
        async with sessionmaker.begin() as s:
            while await db.fan_out(s, batch=500, now=datetime.now(UTC)):
                pass
        got = {org: [o.request_id for o in await _outbox_of(sessionmaker, sid)] for org, sid in subs.items()}
        assert rid in got["TH"] and rid in got["ASEC"]
        assert rid not in got["KH"]  # in the audience as a beneficiary, but may not see TH's request
        assert rid not in got["ROCB-AP"]  # not in the audience (ROCB A/P is not involved yet)
    finally:
        await drop_webhooks(sessionmaker, list(subs.values()))


async def test_webhook_urls_and_secrets_are_checked(api: httpx.AsyncClient, auth: Auth) -> None:
    head = auth("ASEC/asec_head")
    for body in (
        {"url": "ftp://partner.example.org/x", "event_types": ["*"]},
        {"url": "https://user:pw@partner.example.org/x", "event_types": ["*"]},
        {"url": "https://partner.example.org/x", "event_types": ["Request Approved"]},
        {"url": "https://partner.example.org/x", "event_types": []},
        {"url": "https://partner.example.org/x", "event_types": ["*"], "secret": "hunter2"},
        {"url": "https://partner.example.org/x", "event_types": ["*"], "secret": "whsec_c2hvcnQ="},
        {"url": "https://partner.example.org/x", "event_types": ["*"], "organisation": "XX"},
    ):
        assert_problem(await api.post("/v1/webhooks", json=body, headers=head), 422)
    mine = {"url": "https://partner.example.org/x", "event_types": ["*"], "secret": db.generate_secret()}
    made = await api.post("/v1/webhooks", json=mine, headers=head)
    assert made.status_code == 201 and made.json()["secret"] == mine["secret"]
    listed = (await api.get("/v1/webhooks", headers=head)).json()["items"]
    assert made.json()["id"] in [w["id"] for w in listed] and all("secret" not in w for w in listed)
    assert (await api.delete(f"/v1/webhooks/{made.json()['id']}", headers=head)).status_code == 204
