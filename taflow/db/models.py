"""SQLAlchemy models: the read model, the catalogue, credentials, submissions and the outbox.

Every change to this file comes with an Alembic revision in `taflow/db/migrations/versions/`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from taflow.domain.enums import Stage


def desired_period(start: Any, end: Any) -> ColumnElement[Any]:
    """The inclusive date range of a desired period: what the dedup index on open requests holds."""
    return func.daterange(start, end, literal_column("'[]'"))


SEARCH_VECTOR = "array_to_tsvector(array_remove(string_to_array(search_text, ' '), ''))"
"""The expanded terms are already analysed (stems, @concepts): kept verbatim as lexemes, unparsed."""


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[str]: ARRAY(String)}


class OrganisationRow(Base):
    """A member state's customs administration, ASEC, ROCB A/P or WCO."""

    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    calendar: Mapped[str | None] = mapped_column(String(8))


class ApiKeyRow(Base):
    """An API credential: only the SHA-256 digest of the key is stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))
    role: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(120))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class SubmissionRow(Base):
    """The API's record of an accepted submission: id allocation and Idempotency-Key replay."""

    __tablename__ = "submissions"
    __table_args__ = (UniqueConstraint("member_state", "idempotency_key", name="uq_submissions_idem"),)
    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_state: Mapped[str] = mapped_column(String(2))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    body_digest: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RequestRow(Base):
    """Read model of one TA request, projected from its workflow (never written by the API)."""

    __tablename__ = "requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    member_state: Mapped[str] = mapped_column(String(2), index=True)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    modality: Mapped[str] = mapped_column(String(32))
    desired_start: Mapped[date] = mapped_column(Date)
    desired_end: Mapped[date] = mapped_column(Date)
    beneficiaries: Mapped[list[str]] = mapped_column(ARRAY(String(2)))
    stage: Mapped[str] = mapped_column(String(32), index=True)
    sla_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duplicate_of: Mapped[str | None] = mapped_column(String(64))
    client_reference: Mapped[str | None] = mapped_column(String(100))
    waiting_on: Mapped[str | None] = mapped_column(String(32))
    expert_id: Mapped[str | None] = mapped_column(String(64))
    invitation_id: Mapped[str | None] = mapped_column(String(64))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    """Title and description after glossary expansion (taflow.dedup.text.index_text), for dedup retrieval."""
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True))
    state: Mapped[dict[str, Any]] = mapped_column(JSONB)
    version: Mapped[int] = mapped_column(Integer)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


Index("ix_requests_updated", RequestRow.updated_at.desc(), RequestRow.id.desc())
Index(  # dedup: a state's own requests over the window, filtered by text in the index (migration 0005)
    "ix_requests_dedup_state",
    RequestRow.member_state,
    RequestRow.submitted_at,
    RequestRow.search_vector,
    postgresql_using="gist",
)
Index(  # dedup: other states' open requests over the period, filtered by text in the index
    "ix_requests_dedup_open",
    desired_period(RequestRow.desired_start, RequestRow.desired_end),
    RequestRow.search_vector,
    postgresql_using="gist",
    postgresql_where=RequestRow.stage.in_([s.value for s in Stage if not s.is_terminal]),
)
Index("ix_requests_topics", RequestRow.topics, postgresql_using="gin")
Index(
    "ix_requests_title_trgm",
    RequestRow.title,
    postgresql_using="gin",
    postgresql_ops={"title": "gin_trgm_ops"},
)


class RequestEventRow(Base):
    """One audit event of a request, upserted on (request_id, seq) so a retried projection never doubles."""

    __tablename__ = "request_events"
    request_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    kind: Mapped[str] = mapped_column(String(64))
    actor_subject: Mapped[str] = mapped_column(String(120))
    actor_organisation: Mapped[str] = mapped_column(String(16))
    actor_role: Mapped[str] = mapped_column(String(32))
    from_stage: Mapped[str | None] = mapped_column(String(32))
    to_stage: Mapped[str | None] = mapped_column(String(32))
    comment: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


class ExpertRow(Base):
    """A WCO-accredited expert (fictional names only in reference data)."""

    __tablename__ = "experts"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    accreditation: Mapped[str] = mapped_column(String(64))
    category: Mapped[str] = mapped_column(String(64))
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    languages: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    home_administration: Mapped[str] = mapped_column(String(16))
    email: Mapped[str | None] = mapped_column(String(200))
    unavailable: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    invitations_12m: Mapped[int] = mapped_column(Integer, default=0)


Index("ix_experts_topics", ExpertRow.topics, postgresql_using="gin")


class ProgrammeRow(Base):
    """A WCO / ROCB A/P programme or a dialogue partner's fund that can pay for assistance."""

    __tablename__ = "programmes"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    provider: Mapped[str] = mapped_column(String(64))
    funding_partner: Mapped[str | None] = mapped_column(String(64))
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    beneficiaries: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    description: Mapped[str] = mapped_column(Text, default="")


class CatalogueActivityRow(Base):
    """An activity already planned, running or done (ours or imported from IATI), for dedup."""

    __tablename__ = "catalogue_activities"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    provider: Mapped[str] = mapped_column(String(200))
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    topics: Mapped[list[str]] = mapped_column(ARRAY(String(64)))
    beneficiaries: Mapped[list[str]] = mapped_column(ARRAY(String(8)))
    start: Mapped[date | None] = mapped_column(Date)
    end: Mapped[date | None] = mapped_column(Date)
    modality: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str | None] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="taflow")
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")
    search_vector: Mapped[Any] = mapped_column(TSVECTOR, Computed(SEARCH_VECTOR, persisted=True))


Index(
    "ix_catalogue_title_trgm",
    CatalogueActivityRow.title,
    postgresql_using="gin",
    postgresql_ops={"title": "gin_trgm_ops"},
)


class MeetingRow(Base):
    """A CCWG (or other ASEAN customs body) meeting with its agenda cut-off."""

    __tablename__ = "meetings"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    body: Mapped[str] = mapped_column(String(16))
    number: Mapped[int] = mapped_column(Integer)
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date] = mapped_column(Date)
    place: Mapped[str] = mapped_column(String(200))
    agenda_cutoff: Mapped[date] = mapped_column(Date, index=True)


class InvitationTokenRow(Base):
    """A single-use, expiring link token for an expert without an account (digest only)."""

    __tablename__ = "invitation_tokens"
    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    invitation_id: Mapped[str] = mapped_column(String(80), unique=True)
    request_id: Mapped[str] = mapped_column(String(32))
    expert_id: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    """A notification waiting for delivery; `dedup_key` makes writing it idempotent."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(200), unique=True)
    request_id: Mapped[str] = mapped_column(String(32), index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    audience: Mapped[list[str]] = mapped_column(ARRAY(String(80)))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


Index("ix_catalogue_search", CatalogueActivityRow.search_vector, postgresql_using="gin")


class DedupTermRow(Base):
    """Document frequency of each analysed term over requests and catalogue activities (IDF for dedup).

    Kept in step with `search_text` in the same transaction; the row `#documents` counts documents.
    """

    __tablename__ = "dedup_terms"
    term: Mapped[str] = mapped_column(String(200), primary_key=True)
    df: Mapped[int] = mapped_column(Integer)


# ---------------------------------------------------------------------------- front door (issue 6)


class IdempotencyKeyRow(Base):
    """One Idempotency-Key of one caller: in progress, or the answer to replay (until `expires_at`)."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    locked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class WebhookSubscriptionRow(Base):
    """An organisation's webhook endpoint: which event types go where, signed with which secret."""

    __tablename__ = "webhook_subscriptions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(80)))
    secret: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookDeliveryRow(Base):
    """One outbox event for one subscription: pending, delivered, dead (retry budget spent) or cancelled."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("outbox_id", "subscription_id", name="uq_webhook_deliveries_event"),)
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("webhook_subscriptions.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    generation: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


Index("ix_webhook_deliveries_status", WebhookDeliveryRow.status, WebhookDeliveryRow.id)
Index("ix_outbox_undelivered", OutboxRow.id, postgresql_where=OutboxRow.delivered_at.is_(None))


Index(
    "ix_requests_inbox",
    RequestRow.waiting_on,
    RequestRow.sla_due_at,
    RequestRow.updated_at,
    RequestRow.id,
    postgresql_where=RequestRow.waiting_on.is_not(None),
)
Index(
    "ix_requests_inbox_expert",
    RequestRow.expert_id,
    RequestRow.sla_due_at,
    RequestRow.updated_at,
    RequestRow.id,
    postgresql_where=RequestRow.waiting_on == "expert",
)
Index(
    "ix_requests_inbox_requester",
    RequestRow.member_state,
    RequestRow.sla_due_at,
    RequestRow.updated_at,
    RequestRow.id,
    postgresql_where=RequestRow.waiting_on == "requester",
)
