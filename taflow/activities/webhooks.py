"""Webhook delivery: claim work from the outbox, POST one signed event, dead-letter after the budget.

Every event is signed with the Standard Webhooks scheme (`standardwebhooks`): headers `webhook-id`
(`evt_<outbox id>`, the same on every attempt), `webhook-timestamp` (this attempt) and
`webhook-signature` (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` with the subscription's
secret). Any 2xx is a delivery; anything else, or no answer within the timeout, fails the attempt
and Temporal retries it with backoff (the delivery workflow's RetryPolicy).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from taflow.db import webhooks as db
from taflow.settings import Settings

USER_AGENT = "TAflow-Webhooks/1"
FAN_OUT_ROUNDS = 10
"""Outbox batches fanned out per claim before deliveries are handed over (keeps one claim short)."""


class DispatchPolicy(BaseModel):
    """The dispatcher's knobs, from settings when the worker starts it (carried across continue-as-new)."""

    batch_size: int = 100
    idle_wait_seconds: float = 60.0
    poll_seconds: float = 1.0
    lease_seconds: float = 600.0
    max_attempts: int = 12
    initial_interval_seconds: float = 5.0
    max_interval_seconds: float = 3600.0
    timeout_seconds: float = 10.0

    @classmethod
    def of(cls, settings: Settings) -> DispatchPolicy:
        return cls(
            batch_size=settings.webhook_batch_size,
            idle_wait_seconds=settings.webhook_idle_wait_seconds,
            poll_seconds=settings.webhook_poll_seconds,
            max_attempts=settings.webhook_max_attempts,
            initial_interval_seconds=settings.webhook_initial_interval_seconds,
            max_interval_seconds=settings.webhook_max_interval_seconds,
            timeout_seconds=settings.webhook_timeout_seconds,
        )


class ClaimRequest(BaseModel):
    batch_size: int
    wait_seconds: float
    poll_seconds: float
    lease_seconds: float


class DeliveryRef(BaseModel):
    delivery_id: int
    generation: int


class ClaimResult(BaseModel):
    deliveries: list[DeliveryRef] = []


class DeliveryInput(BaseModel):
    ref: DeliveryRef
    policy: DispatchPolicy


class DeliveryOutcome(BaseModel):
    status: str
    """delivered, cancelled (webhook deleted) or superseded (redelivered meanwhile)"""
    status_code: int | None = None


class DeadLetter(BaseModel):
    ref: DeliveryRef
    reason: str


def dispatcher_id(task_queue: str) -> str:
    return f"outbox-dispatcher-{task_queue}"


def delivery_workflow_id(ref: DeliveryRef) -> str:
    return f"webhook-delivery-{ref.delivery_id}-{ref.generation}"


def body_of(event_type: str, event_id: str, created_at: datetime, payload: dict[str, Any]) -> str:
    """The JSON a receiver gets: Standard Webhooks' `type`, `timestamp`, `data` (plus our event id)."""
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "timestamp": created_at.astimezone(UTC).isoformat(),
            "data": db.webhook_payload(payload),
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def signed_headers(secret: str, event_id: str, body: str, at: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(msg_id=event_id, timestamp=at, data=body)
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class WebhookActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
        self._sessions = sessionmaker
        self._timeout = settings.webhook_timeout_seconds

    @activity.defn
    async def claim_webhook_work(self, req: ClaimRequest) -> ClaimResult:
        """Fan new outbox rows out to deliveries and claim pending ones; wait (heartbeating) while idle."""
        deadline = time.monotonic() + req.wait_seconds
        lease = timedelta(seconds=req.lease_seconds)
        while True:
            async with self._sessions.begin() as session:
                now = datetime.now(UTC)
                for _ in range(FAN_OUT_ROUNDS):
                    if await db.fan_out(session, batch=req.batch_size, now=now) < req.batch_size:
                        break
                claimed = await db.claim_deliveries(session, batch=req.batch_size, now=now, lease=lease)
            if claimed or time.monotonic() >= deadline:
                return ClaimResult(deliveries=[DeliveryRef(delivery_id=i, generation=g) for i, g in claimed])
            activity.heartbeat()
            await asyncio.sleep(req.poll_seconds)

    @activity.defn
    async def deliver_webhook(self, ref: DeliveryRef) -> DeliveryOutcome:
        """One attempt: POST the signed event; raise (retryable) on anything but a 2xx."""
        async with self._sessions() as session:
            found = await db.get_delivery(session, ref.delivery_id)
        if found is None:
            return DeliveryOutcome(status="cancelled")
        delivery, subscription, event = found
        if delivery.generation != ref.generation or delivery.status != db.PENDING:
            return DeliveryOutcome(status="superseded")
        if subscription.deleted_at is not None:
            async with self._sessions.begin() as session:
                await db.mark_cancelled(session, ref.delivery_id, ref.generation, now=datetime.now(UTC))
            return DeliveryOutcome(status="cancelled")
        event_id = db.event_id(event.id)
        body = body_of(event.event_type, event_id, event.created_at, event.payload)
        now = datetime.now(UTC)
        headers = signed_headers(subscription.secret, event_id, body, now)
        status_code: int | None = None
        error: str | None = None
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=False) as http:
                resp = await http.post(subscription.url, content=body.encode(), headers=headers)
            status_code = resp.status_code
            if not 200 <= resp.status_code < 300:
                error = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__
        async with self._sessions.begin() as session:
            await db.record_attempt(
                session,
                ref.delivery_id,
                ref.generation,
                now=datetime.now(UTC),
                delivered=error is None,
                status_code=status_code,
                error=error,
            )
        if error is not None:
            raise ApplicationError(
                f"attempt {activity.info().attempt} to {subscription.id} failed: {error}",
                type="WebhookFailed",
            )
        return DeliveryOutcome(status="delivered", status_code=status_code)

    @activity.defn
    async def dead_letter_webhook(self, dead: DeadLetter) -> None:
        async with self._sessions.begin() as session:
            await db.dead_letter(
                session, dead.ref.delivery_id, dead.ref.generation, now=datetime.now(UTC), reason=dead.reason
            )


async def start_dispatcher(client: Client, task_queue: str, settings: Settings) -> None:
    """Start the task queue's outbox dispatcher unless it runs already (one per task queue)."""
    await client.start_workflow(
        "OutboxDispatcherWorkflow",
        DispatchPolicy.of(settings),
        id=dispatcher_id(task_queue),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="Delivers outbox events to webhooks (Standard Webhooks signatures)",
    )
