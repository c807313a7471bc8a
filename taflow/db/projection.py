"""Writes of the read model: idempotent and order-safe (a request's row never goes back in version).

A projection writes the request's row, its new audit events and their outbox notifications together:

- `project` (the projection activity): one statement on an autocommit connection, so one round trip,
  when the row exists and its search text stays the same (nearly every transition). A new row or a
  changed text (the first projection, an amendment) goes through `write_projection` in a transaction,
  because the dedup term counts must follow the text in the same transaction.
- `write_projection`: in the caller's transaction (the fallback above, `taflow reproject`, tests).

The stored `state` keeps the whole audit trail (the API's four-eyes check reads it). A lean projection
(patch "lean-projection": the state without its events and without the parts the row has unchanged,
plus the new events) appends its new events to the stored trail and keeps the stored parts, in SQL; an
older workflow's projection carries everything and replaces it. Both store the same row.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import TextClause, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import OutboxRow
from taflow.db.term_stats import restate
from taflow.dedup.text import index_text
from taflow.domain.enums import InvitationStatus, Stage
from taflow.domain.models import AuditEvent, Notification, Projection, RequestState

WAITING_ON: dict[Stage, str] = {
    Stage.asec_review: "asec_reviewer",
    Stage.changes_requested: "requester",
    Stage.rocb_matching: "rocb_officer",
    Stage.on_hold: "rocb_officer",
    Stage.expert_invitation: "expert",
    Stage.scheduled: "rocb_officer",
    Stage.awaiting_report: "rocb_officer",
}

EVENTS = TypeAdapter(list[AuditEvent])
NOTIFICATIONS = TypeAdapter(list[Notification])


@functools.lru_cache(maxsize=4096)
def search_text(title: str, description: str) -> str:
    """The analysed title and description (a pure function of the text: the same on every projection)."""
    return index_text(f"{title}\n{description}")


def request_columns(projection: Projection) -> dict[str, Any]:
    """The row's columns except `state`."""
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
        "search_text": search_text(s.draft.title, s.draft.description),
        "version": s.version,
        "submitted_at": s.submitted_at,
        "updated_at": s.updated_at,
    }


def known_state(projection: Projection) -> RequestState:
    """The state with every event this projection knows: its whole trail, or a lean one's new events."""
    if projection.events_omitted:
        return projection.state.model_copy(update={"events": projection.new_events})
    return projection.state


def request_row(projection: Projection) -> dict[str, Any]:
    """The row a projection writes into an empty read model (also what benchmarks COPY)."""
    return request_columns(projection) | {"state": known_state(projection).model_dump(mode="json")}


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


# ---------------------------------------------------------------------------- statements

_TYPES = {
    "id": "varchar",
    "member_state": "varchar",
    "title": "text",
    "description": "text",
    "topics": "varchar[]",
    "modality": "varchar",
    "desired_start": "date",
    "desired_end": "date",
    "beneficiaries": "varchar[]",
    "stage": "varchar",
    "sla_due_at": "timestamptz",
    "duplicate_of": "varchar",
    "client_reference": "varchar",
    "waiting_on": "varchar",
    "expert_id": "varchar",
    "invitation_id": "varchar",
    "escalated": "boolean",
    "search_text": "text",
    "version": "integer",
    "submitted_at": "timestamptz",
    "updated_at": "timestamptz",
    "state": "jsonb",
}
_SET = [c for c in _TYPES if c not in ("id", "search_text", "state")]

# every parameter once, typed: `new` is the projection as one row
_NEW = (
    "new AS (SELECT "
    + ", ".join(f"CAST(:{c} AS {t}) AS {c}" for c, t in _TYPES.items())
    + ", CAST(:events AS jsonb) AS events, CAST(:notes AS jsonb) AS notes, CAST(:kept AS text[]) AS kept)"
)
_EVENTS = """ev AS (
    INSERT INTO request_events (request_id, seq, at, kind, actor_subject, actor_organisation,
                                actor_role, from_stage, to_stage, comment, data)
    SELECT new.id, e.seq, e.at, e.kind, e.actor ->> 'subject', e.actor ->> 'organisation',
           e.actor ->> 'role', e.from_stage, e.to_stage, e.comment, e.data
    FROM new, jsonb_to_recordset(new.events) AS e(seq integer, at timestamptz, kind text, actor jsonb,
                                                  from_stage text, to_stage text, comment text, data jsonb)
    WHERE {guard}
    ON CONFLICT DO NOTHING
), notes AS (
    INSERT INTO outbox (request_id, event_type, audience, payload, dedup_key)
    SELECT n.request_id, n.event_type, n.audience, n.payload, n.dedup_key
    FROM new, jsonb_to_recordset(new.notes) AS n(request_id text, event_type text, audience varchar[],
                                                 payload jsonb, dedup_key text)
    WHERE {guard}
    ON CONFLICT (dedup_key) DO NOTHING
)"""


def _appended(old: str, new: str, is_kept: str) -> str:
    """The new state with what the stored one (`old`) has and it left out: the parts it kept (`key`
    such that `is_kept`) and the trail, extended by the new events it has not got yet."""
    with_kept = (
        f"({new}.state || coalesce((SELECT jsonb_object_agg(key, value) FROM jsonb_each({old}.state) "
        f"WHERE {is_kept}), CAST('{{}}' AS jsonb)))"
    )
    return (
        f"jsonb_set({with_kept}, '{{events}}', coalesce({old}.state -> 'events', CAST('[]' AS jsonb)) "
        f"|| jsonb_path_query_array({new}.state -> 'events', '$[*] ? (@.seq > $last)', "
        f"jsonb_build_object('last', coalesce({old}.state #> '{{events,-1,seq}}', CAST('0' AS jsonb)))))"
    )


def _fast(lean: bool) -> TextClause:
    """Update an existing row whose search text stays; its events and notifications with it.

    Answers whether the row was written and the version it had: a missing row, another text (or a
    concurrent writer) leaves it unwritten at an older version, and `project` takes the slow way."""
    state = _appended("r", "new", "key = ANY(new.kept)") if lean else "new.state"
    sets = ", ".join([f"{c} = new.{c}" for c in _SET] + [f"state = {state}"])
    guard = "(SELECT ok FROM go)"
    return text(
        f"""WITH {_NEW},
cur AS (
    SELECT r.version, r.search_text = new.search_text AS same_text
    FROM requests r, new WHERE r.id = new.id
), written AS (
    UPDATE requests r SET {sets}
    FROM new
    WHERE r.id = new.id AND r.version < new.version AND r.search_text = new.search_text
    RETURNING 1
), go AS (
    SELECT EXISTS (SELECT FROM cur, new WHERE cur.same_text OR cur.version >= new.version) AS ok
), {_EVENTS.format(guard=guard)}
SELECT (SELECT count(*) FROM written) AS written, (SELECT version FROM cur) AS version"""
    )


def _upsert(lean: bool) -> TextClause:
    """Insert or update the row (never going back in version), its events and notifications."""
    columns = list(_TYPES)
    kept = "key IN (SELECT unnest(kept) FROM new)"
    state = _appended("requests", "excluded", kept) if lean else "excluded.state"
    sets = ", ".join([f"{c} = excluded.{c}" for c in columns if c not in ("id", "state")])
    return text(
        f"""WITH {_NEW},
written AS (
    INSERT INTO requests ({", ".join(columns)})
    SELECT {", ".join(f"new.{c}" for c in columns)} FROM new
    ON CONFLICT (id) DO UPDATE SET {sets}, state = {state}
    WHERE requests.version < excluded.version
    RETURNING 1
), {_EVENTS.format(guard="true")}
SELECT count(*) FROM written"""
    )


_FAST = {lean: _fast(lean) for lean in (False, True)}
_UPSERT = {lean: _upsert(lean) for lean in (False, True)}
_LOCK = text("SELECT search_text FROM requests WHERE id = :id FOR UPDATE")


def _params(projection: Projection, notes: list[Notification]) -> dict[str, Any]:
    return request_columns(projection) | {
        "state": known_state(projection).model_dump_json(),
        "events": EVENTS.dump_json(projection.new_events).decode(),
        "notes": NOTIFICATIONS.dump_json(notes).decode(),
        "kept": projection.kept,
    }


async def _write(session: AsyncSession, projection: Projection, params: dict[str, Any]) -> None:
    old_text = await session.scalar(_LOCK, {"id": params["id"]})
    written = (await session.execute(_UPSERT[projection.events_omitted], params)).scalar_one()
    if written:  # the dedup term counts follow the text, in the same transaction
        await restate(session, [(old_text, params["search_text"])])


async def write_projection(session: AsyncSession, projection: Projection, notes: list[Notification]) -> None:
    """Upsert the request (never going back in version), its new events and their notifications, in
    the caller's transaction."""
    await _write(session, projection, _params(projection, notes))


async def project(
    sessions: async_sessionmaker[AsyncSession], projection: Projection, notes: list[Notification]
) -> None:
    """What the projection activity writes: one statement when it can, else one transaction."""
    params = _params(projection, notes)
    first = bool(projection.new_events) and projection.new_events[0].seq == 1  # a new row, most likely
    if not first:
        async with sessions() as session:
            conn = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            written, version = (await conn.execute(_FAST[projection.events_omitted], params)).one()
        if written or (version is not None and version >= projection.state.version):
            return  # written, or a newer projection is there already
    async with sessions.begin() as session:
        await _write(session, projection, params)


async def write_notifications(session: AsyncSession, notes: list[Notification]) -> None:
    if not notes:
        return
    rows = [n.model_dump(mode="json") for n in notes]
    await session.execute(insert(OutboxRow).values(rows).on_conflict_do_nothing(index_elements=["dedup_key"]))
