"""Reads of the projected read model (`requests`, `request_events`) for lists, the inbox and GETs.

Visibility is applied in SQL, so a member state never sees (or pages through) another state's
requests, and an expert sees only what they were invited to.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    exists,
    false,
    func,
    literal_column,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncSession

from taflow import authz
from taflow.authz import Action, Reach
from taflow.db.models import (
    CatalogueActivityRow,
    InvitationTokenRow,
    RequestEventRow,
    RequestRow,
    SubmissionRow,
)
from taflow.db.prepared import Prepared, StatementConnection
from taflow.domain.enums import TERMINAL_STAGES, Role
from taflow.domain.models import Actor

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
TERMINAL_VALUES = [s.value for s in TERMINAL_STAGES]


class InvalidCursor(ValueError):
    """A cursor that this server did not issue (or that was tampered with)."""


@dataclass(frozen=True)
class Scope:
    """What one caller may see: everything, one member state's requests, or one expert's."""

    member_state: str | None = None
    expert_id: str | None = None

    @classmethod
    def of(cls, actor: Actor, reach: Reach | None = None) -> Scope:
        """The scope of `reach` (taflow.authz); by default the caller's reach for reading requests."""
        if reach is None:
            try:
                reach = authz.reach(actor, Action.read_request)
            except authz.Denied:
                return cls(member_state="", expert_id="")  # sees nothing
        if reach is Reach.own:
            return cls(member_state=actor.organisation)
        if reach is Reach.invited:
            return cls(expert_id=actor.subject)
        return cls()

    def allows(self, member_state: str, expert_id: str | None = None) -> bool:
        if self.member_state is not None and member_state != self.member_state:
            return False
        return self.expert_id is None or expert_id == self.expert_id

    def clause(self) -> ColumnElement[bool]:
        clauses: list[ColumnElement[bool]] = []
        if self.member_state is not None:
            clauses.append(RequestRow.member_state == self.member_state)
        if self.expert_id is not None:
            clauses.append(RequestRow.expert_id == self.expert_id)
        return and_(true(), *clauses)


@dataclass(frozen=True)
class RequestFilter:
    stage: str | None = None
    member_state: str | None = None
    topic: str | None = None
    q: str | None = None


@dataclass(frozen=True)
class Page:
    items: list[RequestRow]
    next_cursor: str | None


def encode_cursor(updated_at: datetime, request_id: str) -> str:
    raw = json.dumps([updated_at.isoformat(), request_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        at, request_id = json.loads(raw)
        when = datetime.fromisoformat(at)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this server issued") from exc
    if not isinstance(request_id, str) or when.tzinfo is None:
        raise InvalidCursor("cursor is not one this server issued")
    return when, request_id


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


@dataclass(frozen=True)
class RequestDocument:
    """A request's read-model row and its timeline as JSON text, to be validated once by the reader
    (`model_validate_json`) rather than decoded to Python objects first; scope checked by the caller."""

    member_state: str
    expert_id: str | None
    waiting_on: str | None
    state_json: str
    timeline_json: str
    """A JSON array of the timeline's entries in order, shaped as the API's `TimelineEntry`."""


def _document() -> Prepared:
    e = RequestEventRow
    actor = func.json_build_object(
        "subject", e.actor_subject, "organisation", e.actor_organisation, "role", e.actor_role
    )
    data = func.coalesce(e.data, literal_column("'{}'::jsonb"))
    at = func.to_char(func.timezone("UTC", e.at), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')  # whatever the TimeZone
    entry = func.json_build_object(
        "seq", e.seq, "at", at, "kind", e.kind, "actor", actor, "from_stage", e.from_stage,
        "to_stage", e.to_stage, "comment", e.comment, "data", data,
    )  # fmt: skip
    timeline = (
        select(func.coalesce(func.json_agg(aggregate_order_by(entry, e.seq)), literal_column("'[]'::json")))
        .where(e.request_id == RequestRow.id)
        .scalar_subquery()
    )
    return Prepared.of(
        select(
            RequestRow.member_state,
            RequestRow.expert_id,
            RequestRow.waiting_on,
            cast(RequestRow.state, Text).label("state"),
            cast(timeline, Text).label("timeline"),
        ).where(RequestRow.id == bindparam("id"))
    )


REQUEST_DOCUMENT = _document()


async def get_request_document(connection: StatementConnection, request_id: str) -> RequestDocument | None:
    """One request for `GET /v1/requests/{id}`: one statement, one round trip, no transaction."""
    rows = await REQUEST_DOCUMENT.fetch(connection, {"id": request_id})
    if not rows:
        return None
    r = rows[0]
    return RequestDocument(r["member_state"], r["expert_id"], r["waiting_on"], r["state"], r["timeline"])


@dataclass(frozen=True)
class RequestVersion:
    """What a conditional read needs first: who may see the request, and its version (the ETag)."""

    member_state: str
    expert_id: str | None
    version: int


REQUEST_VERSION = Prepared.of(
    select(RequestRow.member_state, RequestRow.expert_id, RequestRow.version).where(
        RequestRow.id == bindparam("id")
    )
)


async def get_request_version(connection: StatementConnection, request_id: str) -> RequestVersion | None:
    """The request's read-model version without its document: an unchanged conditional `GET` answers
    304 from this, without the timeline's aggregation and the state's validation."""
    rows = await REQUEST_VERSION.fetch(connection, {"id": request_id})
    if not rows:
        return None
    r = rows[0]
    return RequestVersion(r["member_state"], r["expert_id"], r["version"])


async def list_requests(
    session: AsyncSession,
    scope: Scope,
    filters: RequestFilter,
    *,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> Page:
    """A page ordered by (updated_at, id) descending; the cursor is keyset, so pages never skip or repeat."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(RequestRow).where(scope.clause())
    if filters.stage:
        query = query.where(RequestRow.stage == filters.stage)
    if filters.member_state:
        query = query.where(RequestRow.member_state == filters.member_state)
    if filters.topic:
        query = query.where(RequestRow.topics.contains([filters.topic]))
    if filters.q:
        query = query.where(RequestRow.title.ilike(_like(filters.q), escape="\\"))
    if cursor:
        at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(RequestRow.updated_at, RequestRow.id) < tuple_(at, last_id))
    query = query.order_by(RequestRow.updated_at.desc(), RequestRow.id.desc()).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(rows[-1].updated_at, rows[-1].id)
    return Page(rows, next_cursor)


def inbox_clause(actor: Actor) -> ColumnElement[bool]:
    """Which open requests wait on this caller: by role, narrowed to their organisation or subject."""
    role = actor.role
    if role in (Role.asec_reviewer, Role.asec_head):
        return RequestRow.waiting_on == Role.asec_reviewer.value
    if role is Role.rocb_officer:
        return RequestRow.waiting_on == Role.rocb_officer.value
    if role is Role.requester:
        return and_(
            RequestRow.waiting_on == Role.requester.value, RequestRow.member_state == actor.organisation
        )
    if role is Role.expert:
        return and_(RequestRow.waiting_on == Role.expert.value, RequestRow.expert_id == actor.subject)
    return false()


@dataclass(frozen=True)
class InboxFilter:
    stage: str | None = None
    member_state: str | None = None
    overdue: bool | None = None


def encode_inbox_cursor(row: RequestRow) -> str:
    due = row.sla_due_at.isoformat() if row.sla_due_at else None
    raw = json.dumps([due, row.updated_at.isoformat(), row.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _inbox_after(cursor: str) -> ColumnElement[bool]:
    """Rows after the cursor's in the inbox order (due date, nulls last; then oldest change; then id)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        due_text, at_text, last_id = json.loads(raw)
        due = datetime.fromisoformat(due_text) if due_text is not None else None
        at = datetime.fromisoformat(at_text)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this server issued") from exc
    if not isinstance(last_id, str) or at.tzinfo is None or (due is not None and due.tzinfo is None):
        raise InvalidCursor("cursor is not one this server issued")
    later = tuple_(RequestRow.updated_at, RequestRow.id) > tuple_(at, last_id)
    if due is None:
        return and_(RequestRow.sla_due_at.is_(None), later)
    return or_(
        RequestRow.sla_due_at > due,
        and_(RequestRow.sla_due_at == due, later),
        RequestRow.sla_due_at.is_(None),
    )


async def inbox(
    session: AsyncSession,
    actor: Actor,
    *,
    limit: int = 50,
    cursor: str | None = None,
    filters: InboxFilter | None = None,
    now: datetime | None = None,
) -> Page:
    """Tasks for the caller, most urgent first (SLA due date, then the oldest change), a page at a time."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(RequestRow).where(inbox_clause(actor), RequestRow.stage.not_in(TERMINAL_VALUES))
    f = filters or InboxFilter()
    if f.stage:
        query = query.where(RequestRow.stage == f.stage)
    if f.member_state:
        query = query.where(RequestRow.member_state == f.member_state)
    if f.overdue is not None:
        moment = now or datetime.now(UTC)
        late = and_(RequestRow.sla_due_at.is_not(None), RequestRow.sla_due_at < moment)
        query = query.where(late if f.overdue else ~late)
    if cursor:
        query = query.where(_inbox_after(cursor))
    query = query.order_by(
        RequestRow.sla_due_at.asc().nulls_last(), RequestRow.updated_at.asc(), RequestRow.id
    ).limit(limit + 1)
    rows = list((await session.execute(query)).scalars())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_inbox_cursor(rows[-1])
    return Page(rows, next_cursor)


# ---------------------------------------------------------------------------- lookups for the API


@dataclass(frozen=True)
class Located:
    """Where a request is known: the read model, or only `submissions` (its projection lags)."""

    request_id: str
    member_state: str
    expert_id: str | None
    stage: str | None
    """None: known only from `submissions`."""
    barred: frozenset[str]
    """Subjects who may not take the decision asked about (four-eyes): the submitter, and whoever
    acted in one of the kinds of events `locate` was given."""


def _located() -> Prepared:
    e = RequestEventRow
    actors = select(e.actor_subject).where(e.request_id == RequestRow.id, e.kind == any_(bindparam("kinds")))
    return Prepared.of(
        select(
            RequestRow.member_state,
            RequestRow.expert_id,
            RequestRow.stage,
            RequestRow.state["submitted_by"]["subject"].astext.label("submitted_by"),
            func.array(actors.scalar_subquery()).label("actors"),
        ).where(RequestRow.id == bindparam("id"))
    )


LOCATE_REQUEST = _located()
LOCATE_SUBMISSION = Prepared.of(
    select(SubmissionRow.member_state, SubmissionRow.submitted_by).where(
        SubmissionRow.request_id == bindparam("id")
    )
)


async def locate(
    connection: StatementConnection, request_id: str, four_eyes: Collection[str] = ()
) -> Located | None:
    """The request a decision is about; `four_eyes`: the kinds of events whose actors it bars."""
    rows = await LOCATE_REQUEST.fetch(connection, {"id": request_id, "kinds": list(four_eyes)})
    if rows:
        r = rows[0]
        barred = {r["submitted_by"], *r["actors"]} if four_eyes else set()
        return Located(request_id, r["member_state"], r["expert_id"], r["stage"], frozenset(barred))
    rows = await LOCATE_SUBMISSION.fetch(connection, {"id": request_id})
    if rows:
        sub = rows[0]
        barred = {sub["submitted_by"]} if four_eyes else set()
        return Located(request_id, sub["member_state"], None, None, frozenset(barred))
    return None


async def duplicate_target_exists(session: AsyncSession, target_id: str) -> bool:
    """A request (projected or just submitted) or a catalogue activity with this id exists."""
    query = select(
        or_(
            exists().where(RequestRow.id == target_id),
            exists().where(SubmissionRow.request_id == target_id),
            exists().where(CatalogueActivityRow.id == target_id),
        )
    )
    return bool((await session.execute(query)).scalar())


async def open_request(session: AsyncSession, request_id: str) -> RequestRow | None:
    """An open (non-terminal) request in the read model, or None."""
    return (
        await session.execute(
            select(RequestRow).where(RequestRow.id == request_id, RequestRow.stage.not_in(TERMINAL_VALUES))
        )
    ).scalar_one_or_none()


async def invitation_expert(session: AsyncSession, invitation_id: str) -> str | None:
    """The expert an invitation was sent to, from its link token or the read model."""
    expert = (
        await session.execute(
            select(InvitationTokenRow.expert_id).where(InvitationTokenRow.invitation_id == invitation_id)
        )
    ).scalar_one_or_none()
    if expert is not None:
        return expert
    return (
        await session.execute(
            select(RequestRow.expert_id).where(RequestRow.invitation_id == invitation_id).limit(1)
        )
    ).scalar_one_or_none()
