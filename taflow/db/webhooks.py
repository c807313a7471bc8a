"""Webhook subscriptions and deliveries: fan-out from the outbox, claims, attempts, dead letters.

The projection writes `outbox` rows in the same transaction as the read-model change. The dispatcher
(taflow.workflows.outbox) repeatedly calls `fan_out` (outbox rows -> one `webhook_deliveries` row per
matching subscription, then the outbox row is marked `delivered_at`, meaning "handed to delivery")
and `claim_deliveries` (pending deliveries nobody holds), and runs one delivery per claimed row.

An organisation's subscription receives an event when the organisation is in the event's audience,
the event type matches one of its patterns, the event is newer than the subscription, and the
organisation may see the request (taflow.authz.organisation_hears_of: a member state hears only of
its own requests).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow import authz
from taflow.db.models import (
    OutboxRow,
    RequestRow,
    SubmissionRow,
    WebhookDeliveryRow,
    WebhookSubscriptionRow,
)

PENDING, DELIVERED, DEAD, CANCELLED = "pending", "delivered", "dead", "cancelled"
STATUSES = (PENDING, DELIVERED, DEAD, CANCELLED)
SECRET_PREFIX = "whsec_"
EVENT_PATTERN = re.compile(r"^(\*|[a-z]+\.\*|[a-z]+\.[a-z_]+)$")
REDACTED = frozenset({"response_link"})
"""Payload fields never sent by webhook (the expert's single-use link is a credential)."""
EVENT_TYPES: dict[str, str] = {
    "request.submitted": "a member state submitted a request",
    "request.dedup_started": "the duplicate check started",
    "request.dedup_checked": "the duplicate check finished (verdict and candidates)",
    "request.duplicate_dismissed": "ASEC dismissed the suspected duplicates",
    "request.approved": "ASEC approved the request",
    "request.rejected": "ASEC rejected the request",
    "request.changes_requested": "ASEC asked the requester for changes",
    "request.amended": "the requester amended the request",
    "request.duplicate_confirmed": "ASEC confirmed the request duplicates another",
    "request.consolidated": "ASEC consolidated the request into another",
    "request.beneficiary_added": "a consolidated request's member state joined this one",
    "request.consolidation_signal_failed": "the surviving request could not be told of a consolidation",
    "request.match_proposed": "ROCB A/P's ranked expert proposal is ready",
    "request.match_confirmed": "ROCB A/P confirmed whom to invite",
    "request.no_match": "no match this round: the request is on hold",
    "request.resumed": "the request left on_hold",
    "request.donor_round_opened": "a new donor round opened: the request left on_hold",
    "request.invitation_sent": "an expert was invited",
    "request.invitation_declined": "the invited expert declined",
    "request.invitation_expired": "the invited expert did not answer in time",
    "request.expert_accepted": "an expert accepted: the request is scheduled",
    "request.no_expert_left": "every invited expert declined: back to matching",
    "request.meeting_rolled_over": "the agenda cut-off was missed: moved to the next meeting",
    "request.meeting_held": "the meeting was held: a completion report is due",
    "request.completed": "delivery was reported",
    "request.withdrawn": "the requester withdrew the request",
    "request.cancelled": "ASEC cancelled the request",
    "request.held": "ASEC put the request on hold (its clock stopped)",
    "request.released": "ASEC released the hold",
    "request.reminder": "an SLA reminder: the waiting stage is due soon",
    "request.escalated": "an SLA deadline passed: escalated",
    "request.expired": "an SLA deadline passed: the request expired",
    "request.retimed": "ops re-timed the waiting stage's clock",
    "request.refused": "a decision sent from the Temporal UI/CLI was refused (audited)",
    "invitation.sent": "an invitation was issued (ROCB A/P; without the expert's link)",
}
"""Known event types (`request.<audit event kind>` and `invitation.sent`); patterns may also use `*`."""


def event_id(outbox_id: int) -> str:
    """The `webhook-id` of an event: the same on every attempt and redelivery, so receivers can dedupe."""
    return f"evt_{outbox_id}"


def new_subscription_id() -> str:
    return "wh_" + secrets.token_hex(8)


def generate_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_is_valid(secret: str) -> bool:
    """`whsec_` + base64 of 24 to 64 bytes (what standardwebhooks accepts, with enough entropy)."""
    if not secret.startswith(SECRET_PREFIX):
        return False
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return False
    return 24 <= len(raw) <= 64


def matches(patterns: Sequence[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def webhook_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in REDACTED}


# ---------------------------------------------------------------------------- subscriptions


async def create_subscription(
    session: AsyncSession,
    *,
    organisation: str,
    url: str,
    event_types: list[str],
    secret: str,
    description: str,
    created_by: str,
) -> WebhookSubscriptionRow:
    row = WebhookSubscriptionRow(
        id=new_subscription_id(),
        organisation_id=organisation,
        url=url,
        event_types=list(dict.fromkeys(event_types)),
        secret=secret,
        description=description,
        created_by=created_by,
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row


async def list_subscriptions(session: AsyncSession, organisation: str | None) -> list[WebhookSubscriptionRow]:
    query = select(WebhookSubscriptionRow).where(WebhookSubscriptionRow.deleted_at.is_(None))
    if organisation is not None:
        query = query.where(WebhookSubscriptionRow.organisation_id == organisation)
    return list((await session.execute(query.order_by(WebhookSubscriptionRow.created_at))).scalars())


async def get_subscription(session: AsyncSession, subscription_id: str) -> WebhookSubscriptionRow | None:
    return (
        await session.execute(
            select(WebhookSubscriptionRow).where(
                WebhookSubscriptionRow.id == subscription_id, WebhookSubscriptionRow.deleted_at.is_(None)
            )
        )
    ).scalar_one_or_none()


async def delete_subscription(session: AsyncSession, subscription_id: str, now: datetime) -> bool:
    """Soft delete (deliveries keep their history); pending deliveries are cancelled. The caller commits."""
    done = (
        await session.execute(
            update(WebhookSubscriptionRow)
            .where(WebhookSubscriptionRow.id == subscription_id, WebhookSubscriptionRow.deleted_at.is_(None))
            .values(deleted_at=now)
            .returning(WebhookSubscriptionRow.id)
        )
    ).scalar_one_or_none()
    if done is None:
        return False
    await session.execute(
        update(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.subscription_id == subscription_id, WebhookDeliveryRow.status == PENDING)
        .values(status=CANCELLED, updated_at=now)
    )
    return True


# ---------------------------------------------------------------------------- deliveries (reads, redelivery)


@dataclass(frozen=True)
class DeliveryPage:
    items: list[tuple[WebhookDeliveryRow, OutboxRow]]
    next_cursor: int | None


async def list_deliveries(
    session: AsyncSession,
    subscription_id: str,
    *,
    status: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> DeliveryPage:
    """Newest first; `before` is the last id of the previous page."""
    query = (
        select(WebhookDeliveryRow, OutboxRow)
        .join(OutboxRow, OutboxRow.id == WebhookDeliveryRow.outbox_id)
        .where(WebhookDeliveryRow.subscription_id == subscription_id)
    )
    if status is not None:
        query = query.where(WebhookDeliveryRow.status == status)
    if before is not None:
        query = query.where(WebhookDeliveryRow.id < before)
    rows = [
        (d, o)
        for d, o in (await session.execute(query.order_by(WebhookDeliveryRow.id.desc()).limit(limit + 1)))
    ]
    cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        cursor = rows[-1][0].id
    return DeliveryPage(rows, cursor)


async def get_delivery(
    session: AsyncSession, delivery_id: int
) -> tuple[WebhookDeliveryRow, WebhookSubscriptionRow, OutboxRow] | None:
    row = (
        await session.execute(
            select(WebhookDeliveryRow, WebhookSubscriptionRow, OutboxRow)
            .join(WebhookSubscriptionRow, WebhookSubscriptionRow.id == WebhookDeliveryRow.subscription_id)
            .join(OutboxRow, OutboxRow.id == WebhookDeliveryRow.outbox_id)
            .where(WebhookDeliveryRow.id == delivery_id)
        )
    ).one_or_none()
    return (row[0], row[1], row[2]) if row is not None else None


class NotRedeliverable(Exception):
    """The delivery is still pending (in flight), or its subscription was deleted."""


async def redeliver(session: AsyncSession, delivery_id: int, now: datetime) -> WebhookDeliveryRow | None:
    """Queue a dead (or delivered) delivery again as a new generation. The caller commits."""
    found = await get_delivery(session, delivery_id)
    if found is None:
        return None
    delivery, subscription, _ = found
    if subscription.deleted_at is not None:
        raise NotRedeliverable("the webhook was deleted")
    if delivery.status == PENDING:
        raise NotRedeliverable("the delivery is still pending")
    delivery.status = PENDING
    delivery.generation += 1
    delivery.claimed_at = None
    delivery.dead_at = None
    delivery.last_error = None
    delivery.updated_at = now
    await session.flush()
    return delivery


async def redeliver_dead(
    session: AsyncSession, now: datetime, subscription_id: str | None = None
) -> list[int]:
    """Queue every dead delivery (of one subscription) again. The caller commits."""
    live = select(WebhookSubscriptionRow.id).where(WebhookSubscriptionRow.deleted_at.is_(None))
    stmt = (
        update(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.status == DEAD, WebhookDeliveryRow.subscription_id.in_(live))
        .values(
            status=PENDING,
            generation=WebhookDeliveryRow.generation + 1,
            claimed_at=None,
            dead_at=None,
            last_error=None,
            updated_at=now,
        )
        .returning(WebhookDeliveryRow.id)
    )
    if subscription_id is not None:
        stmt = stmt.where(WebhookDeliveryRow.subscription_id == subscription_id)
    return sorted((await session.execute(stmt)).scalars())


# ---------------------------------------------------------------------------- dispatcher side


async def fan_out(session: AsyncSession, *, batch: int, now: datetime) -> int:
    """Turn up to `batch` undelivered outbox rows into deliveries; returns how many rows it took.

    Rows are locked with SKIP LOCKED, so two dispatchers never take the same one. The caller commits.
    """
    # The columns the audience needs, as plain rows: no ORM objects (nor payloads) for rows only marked.
    rows = (
        await session.execute(
            select(
                OutboxRow.id,
                OutboxRow.request_id,
                OutboxRow.event_type,
                OutboxRow.audience,
                OutboxRow.created_at,
            )
            .where(OutboxRow.delivered_at.is_(None))
            .order_by(OutboxRow.id)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
    ).all()
    if not rows:
        return 0
    request_ids = sorted({r.request_id for r in rows})
    states: dict[str, str] = dict(
        (
            await session.execute(
                select(SubmissionRow.request_id, SubmissionRow.member_state).where(
                    SubmissionRow.request_id.in_(request_ids)
                )
            )
        ).all()
    )
    states.update(
        (
            await session.execute(
                select(RequestRow.id, RequestRow.member_state).where(RequestRow.id.in_(request_ids))
            )
        ).all()
    )
    subscriptions = await list_subscriptions(session, None)
    wanted: list[dict[str, Any]] = []
    for row in rows:
        member_state = states.get(row.request_id)
        for sub in subscriptions:
            if (
                sub.organisation_id in row.audience
                and sub.created_at <= row.created_at
                and matches(sub.event_types, row.event_type)
                and authz.organisation_hears_of(sub.organisation_id, member_state)
            ):
                wanted.append({"outbox_id": row.id, "subscription_id": sub.id, "status": PENDING})
    if wanted:
        await session.execute(
            insert(WebhookDeliveryRow)
            .values([w | {"generation": 0, "attempts": 0} for w in wanted])
            .on_conflict_do_nothing(constraint="uq_webhook_deliveries_event")
        )
    await session.execute(
        update(OutboxRow).where(OutboxRow.id.in_([r.id for r in rows])).values(delivered_at=now)
    )
    return len(rows)


async def claim_deliveries(
    session: AsyncSession, *, batch: int, now: datetime, lease: timedelta
) -> list[tuple[int, int]]:
    """Pending deliveries nobody holds (never claimed, or the claim is older than `lease`): (id, generation).

    The caller commits.
    """
    rows = list(
        (
            await session.execute(
                select(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.status == PENDING,
                    or_(WebhookDeliveryRow.claimed_at.is_(None), WebhookDeliveryRow.claimed_at < now - lease),
                )
                .order_by(WebhookDeliveryRow.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        ).scalars()
    )
    for row in rows:
        row.claimed_at = now
    await session.flush()
    return [(r.id, r.generation) for r in rows]


async def record_attempt(
    session: AsyncSession,
    delivery_id: int,
    generation: int,
    *,
    now: datetime,
    delivered: bool,
    status_code: int | None,
    error: str | None,
) -> None:
    values: dict[str, Any] = {
        "attempts": WebhookDeliveryRow.attempts + 1,
        "last_status_code": status_code,
        "last_error": error[:2000] if error else None,
        "updated_at": now,
    }
    if delivered:
        values |= {"status": DELIVERED, "delivered_at": now}
    await session.execute(
        update(WebhookDeliveryRow)
        .where(
            WebhookDeliveryRow.id == delivery_id,
            WebhookDeliveryRow.generation == generation,
            WebhookDeliveryRow.status == PENDING,
        )
        .values(**values)
    )


async def dead_letter(
    session: AsyncSession, delivery_id: int, generation: int, *, now: datetime, reason: str
) -> None:
    await session.execute(
        update(WebhookDeliveryRow)
        .where(
            WebhookDeliveryRow.id == delivery_id,
            WebhookDeliveryRow.generation == generation,
            WebhookDeliveryRow.status == PENDING,
        )
        .values(status=DEAD, dead_at=now, last_error=reason[:2000], updated_at=now)
    )


async def mark_cancelled(session: AsyncSession, delivery_id: int, generation: int, *, now: datetime) -> None:
    await session.execute(
        update(WebhookDeliveryRow)
        .where(
            WebhookDeliveryRow.id == delivery_id,
            WebhookDeliveryRow.generation == generation,
            WebhookDeliveryRow.status == PENDING,
        )
        .values(status=CANCELLED, updated_at=now)
    )


async def delivery_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(WebhookDeliveryRow.status, func.count()).group_by(WebhookDeliveryRow.status)
    )
    return {str(status): int(n) for status, n in rows.all()}
