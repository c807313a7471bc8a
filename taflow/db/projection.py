"""Writes of the read model: one transaction per projection, idempotent and order-safe."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import OutboxRow, RequestEventRow, RequestRow
from taflow.db.term_stats import restate
from taflow.dedup.text import index_text
from taflow.domain.enums import InvitationStatus, Stage
from taflow.domain.models import AuditEvent, Notification, Projection

WAITING_ON: dict[Stage, str] = {
    Stage.asec_review: "asec_reviewer",
    Stage.changes_requested: "requester",
    Stage.rocb_matching: "rocb_officer",
    Stage.on_hold: "rocb_officer",
    Stage.expert_invitation: "expert",
    Stage.scheduled: "rocb_officer",
    Stage.awaiting_report: "rocb_officer",
}


def request_row(projection: Projection) -> dict[str, Any]:
    s = projection.state
    engaged = s.stage is Stage.expert_invitation or (
        s.invitation is not None and s.invitation.status is InvitationStatus.accepted
    )
    pending = s.invitation if engaged else None
    return {
        "id": s.request_id,
        "member_state": s.member_state.value,
        "title": s.draft.title,
        "description": s.draft.description,
        "topics": [t.value for t in s.draft.topics],
        "modality": s.draft.modality.value,
        "desired_start": s.draft.desired_start,
        "desired_end": s.draft.desired_end,
        "beneficiaries": [b.value for b in s.beneficiaries],
        "stage": s.stage.value,
        "sla_due_at": s.sla_due_at,
        "duplicate_of": s.duplicate_of,
        "client_reference": s.draft.client_reference,
        "waiting_on": WAITING_ON.get(s.stage),
        "expert_id": pending.expert_id if pending else None,
        "invitation_id": pending.id if pending else None,
        "escalated": s.escalated,
        "search_text": index_text(f"{s.draft.title}\n{s.draft.description}"),
        "state": s.model_dump(mode="json"),
        "version": s.version,
        "submitted_at": s.submitted_at,
        "updated_at": s.updated_at,
    }


def event_row(request_id: str, e: AuditEvent) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "seq": e.seq,
        "at": e.at,
        "kind": e.kind,
        "actor_subject": e.actor.subject,
        "actor_organisation": e.actor.organisation,
        "actor_role": e.actor.role.value,
        "from_stage": e.from_stage.value if e.from_stage else None,
        "to_stage": e.to_stage.value if e.to_stage else None,
        "comment": e.comment,
        "data": e.data,
    }


async def write_projection(session: AsyncSession, projection: Projection, notes: list[Notification]) -> None:
    """Upsert the request (never going back in version), its new events and their notifications."""
    row = request_row(projection)
    old_text = await session.scalar(
        select(RequestRow.search_text).where(RequestRow.id == row["id"]).with_for_update()
    )
    stmt = insert(RequestRow).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[RequestRow.id],
        set_={k: stmt.excluded[k] for k in row if k != "id"},
        where=RequestRow.version < stmt.excluded.version,
    )
    if (await session.execute(stmt.returning(RequestRow.id))).first() is not None:
        await restate(session, [(old_text, row["search_text"])])
    request_id = projection.state.request_id
    if projection.new_events:
        events = insert(RequestEventRow).values([event_row(request_id, e) for e in projection.new_events])
        await session.execute(events.on_conflict_do_nothing())
    await write_notifications(session, notes)


async def write_notifications(session: AsyncSession, notes: list[Notification]) -> None:
    if not notes:
        return
    rows = [n.model_dump(mode="json") for n in notes]
    await session.execute(insert(OutboxRow).values(rows).on_conflict_do_nothing(index_elements=["dedup_key"]))
