"""HTTP bodies and views. Inbound bodies mirror the domain messages minus `actor`, which the API
fills from the credential (a client can never speak for someone else); views are built from the
read model or, right after a submission, from the workflow's `status` query.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from taflow.db.models import RequestRow
from taflow.domain.enums import (
    AsecVerdict,
    InvitationStatus,
    MemberState,
    Modality,
    RocbVerdict,
    SpcdPriority,
    Stage,
    Topic,
)
from taflow.domain.models import (
    Actor,
    Amendment,
    AsecDecision,
    AuditEvent,
    Cancellation,
    CatalogueId,
    Comment,
    Completion,
    DuplicateCandidate,
    Hold,
    Identifier,
    InvitationOutcome,
    InvitationResponse,
    MatchCandidate,
    Meeting,
    RequestDraft,
    RequestState,
    Resumption,
    Retiming,
    RocbDecision,
    Withdrawal,
)

M = TypeVar("M", bound=BaseModel)

DRAFT_EXAMPLE: dict[str, Any] = {
    "title": "Post-clearance audit capacity building for e-commerce consignments",
    "description": "Training for 25 PCA officers on auditing low-value e-commerce importers, "
    "with case studies.",
    "topics": ["post-clearance-audit", "e-commerce"],
    "modality": "workshop",
    "desired_start": "2026-09-01",
    "desired_end": "2026-09-05",
    "beneficiaries": ["LA"],
    "spcd_priorities": ["e-commerce"],
    "client_reference": "GDCE-2026-017",
}


def _message(model: type[M], body: BaseModel, actor: Actor | None) -> M:
    """The domain message for a body; fields are already valid, so this only adds the actor."""
    return model.model_validate({**dict(body), "actor": actor})


def _plain(err: Any) -> str:
    msg = str(err.get("msg", ""))
    return msg.removeprefix("Value error, ")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AsecReviewBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "decision": "approve",
                    "comment": "Aligned with SPCD digitalization.",
                    "spcd_priorities": ["digitalization"],
                },
                {
                    "decision": "duplicate",
                    "comment": "Covered by the 2026 regional PCA workshop.",
                    "duplicate_of": "TA-2026-000012",
                },
                {
                    "decision": "consolidate",
                    "comment": "Same need as Lao PDR's request.",
                    "consolidate_into": "TA-2026-000031",
                },
                {"decision": "request_changes", "comment": "Please name the number of participants."},
                {
                    "decision": "dismiss",
                    "comment": "Different need: air cargo, not passengers.",
                    "dismissed": ["TA-2026-000012"],
                },
            ]
        },
    )

    decision: AsecVerdict
    comment: Comment = ""
    duplicate_of: CatalogueId | None = None
    consolidate_into: Identifier | None = None
    spcd_priorities: Annotated[list[SpcdPriority], Field(max_length=5)] = []
    dismissed: Annotated[list[CatalogueId], Field(max_length=20)] = []

    @model_validator(mode="after")
    def _rules(self) -> AsecReviewBody:
        try:
            _message(AsecDecision, self, None)
        except ValidationError as exc:
            raise ValueError("; ".join(_plain(e) for e in exc.errors())) from None
        return self

    def to_message(self, actor: Actor) -> AsecDecision:
        return _message(AsecDecision, self, actor)


class AmendmentBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"draft": DRAFT_EXAMPLE, "comment": "Participants: 25 officers."}]},
    )

    draft: RequestDraft
    comment: Comment = ""

    def to_message(self, actor: Actor) -> Amendment:
        return _message(Amendment, self, actor)


class RocbMatchBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"decision": "match", "comment": "Proposal confirmed."},
                {
                    "decision": "match",
                    "expert_ids": ["EXP-007", "EXP-001"],
                    "programme_id": "WCO-MERCATOR",
                    "funding_partner": "JP-CCF",
                    "comment": "EXP-007 speaks Lao.",
                },
                {"decision": "no_match", "comment": "No funding this round."},
            ]
        },
    )

    decision: RocbVerdict
    expert_ids: Annotated[list[Identifier], Field(max_length=20)] | None = None
    programme_id: Identifier | None = None
    funding_partner: Identifier | None = None
    comment: Comment = ""

    def to_message(self, actor: Actor) -> RocbDecision:
        return _message(RocbDecision, self, actor)


class CompletionBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "report": "Workshop delivered to 24 officers; materials shared.",
                    "delivered_on": "2025-11-14",
                }
            ]
        },
    )

    report: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    delivered_on: date

    @field_validator("delivered_on")
    @classmethod
    def _not_future(cls, value: date) -> date:
        if value > (datetime.now(UTC) + timedelta(days=1)).date():
            raise ValueError("delivered_on may not be in the future")
        return value

    def to_message(self, actor: Actor) -> Completion:
        return _message(Completion, self, actor)


class WithdrawalBody(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Covered by a bilateral programme."}]}
    )

    reason: Comment = ""

    def to_message(self, actor: Actor) -> Withdrawal:
        return _message(Withdrawal, self, actor)


class CancellationBody(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "Superseded by the regional programme."}]}
    )

    reason: Comment = ""

    def to_message(self, actor: Actor) -> Cancellation:
        return _message(Cancellation, self, actor)


class ResumptionBody(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "New Korea CCF round opened."}]}
    )

    comment: Comment = ""

    def to_message(self, actor: Actor) -> Resumption:
        return _message(Resumption, self, actor)


class HoldBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"hold": True, "comment": "Waiting for the budget committee."}, {"hold": False}]
        },
    )

    hold: bool = True
    comment: Comment = ""

    def to_message(self, actor: Actor) -> Hold:
        return _message(Hold, self, actor)


class RetimeBody(Body):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"comment": "Apply the 2027 SLA policy."}]}
    )

    comment: Comment = ""

    def to_message(self, actor: Actor) -> Retiming:
        return _message(Retiming, self, actor)


class InvitationResponseBody(Body):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"accept": True, "comment": "Happy to present."},
                {"accept": False, "comment": "On mission that week."},
            ]
        },
    )

    accept: bool
    comment: Comment = ""

    def to_message(self, actor: Actor) -> InvitationResponse:
        return _message(InvitationResponse, self, actor)


# ---------------------------------------------------------------------------- views


class SubmissionView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "TA-2026-000042",
                    "member_state": "KH",
                    "stage": "submitted",
                    "submitted_at": "2026-03-02T08:15:00Z",
                    "href": "/v1/requests/TA-2026-000042",
                }
            ]
        }
    )

    id: str
    member_state: MemberState
    stage: Stage
    submitted_at: datetime
    href: str


class DecisionView(BaseModel):
    """The request's stage after the decision, and the read-model version that shows it."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "TA-2026-000042", "stage": "rocb_matching", "version": 5}]}
    )

    id: str
    stage: Stage
    version: int


class InvitationOutcomeView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "invitation_id": "TA-2026-000042-1",
                    "expert_id": "EXP-001",
                    "status": "accepted",
                    "comment": "Happy to present.",
                    "responded_at": "2026-04-01T03:00:00Z",
                }
            ]
        }
    )

    invitation_id: str
    expert_id: str
    status: InvitationStatus
    comment: str = ""
    responded_at: datetime | None = None

    @classmethod
    def of(cls, outcome: InvitationOutcome) -> InvitationOutcomeView:
        return cls(
            invitation_id=outcome.invitation_id,
            expert_id=outcome.expert_id,
            status=outcome.status,
            comment=outcome.comment,
            responded_at=outcome.responded_at,
        )


class TimelineEntry(BaseModel):
    seq: int
    at: datetime
    kind: str
    actor: Actor
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    comment: str = ""
    data: dict[str, Any] = {}

    @classmethod
    def of_event(cls, event: AuditEvent) -> TimelineEntry:
        return cls.model_validate(event.model_dump())


class MatchView(BaseModel):
    """ROCB A/P's ranked proposal (`candidates`, `proposed_*`) and the confirmed choice."""

    candidates: list[MatchCandidate] = []
    expert_ids: list[str] = []
    programme_id: str | None = None
    funding_partner: str | None = None
    proposed_programme_id: str | None = None
    proposed_funding_partner: str | None = None
    meeting: Meeting | None = None
    comment: str = ""


class InvitationView(BaseModel):
    id: str
    expert_id: str
    meeting: Meeting | None = None
    status: InvitationStatus
    respond_by: datetime


class CompletionView(BaseModel):
    report: str
    delivered_on: date
    recorded_at: datetime


REQUEST_VIEW_EXAMPLE: dict[str, Any] = {
    "id": "TA-2026-000042",
    "member_state": "KH",
    "stage": "expert_invitation",
    **{k: v for k, v in DRAFT_EXAMPLE.items() if k != "beneficiaries"},
    "beneficiaries": ["KH", "LA"],
    "sla_due_at": "2026-04-08T09:00:00Z",
    "waiting_on": "expert",
    "duplicate_candidates": [
        {
            "kind": "activity",
            "id": "XM-DAC-47066-PCA-2025",
            "title": "Regional PCA workshop 2025",
            "relation": "consolidation_suggested",
            "score": 0.71,
            "provider": "WCO",
            "evidence": {},
        }
    ],
    "match": {
        "candidates": [
            {
                "expert_id": "EXP-001",
                "name": "A. Expert",
                "score": 0.92,
                "reasons": ["covers post-clearance-audit", "speaks en"],
            }
        ],
        "expert_ids": ["EXP-001"],
        "programme_id": "WCO-MERCATOR",
        "funding_partner": "JP-CCF",
    },
    "invitation": {
        "id": "TA-2026-000042-1",
        "expert_id": "EXP-001",
        "status": "pending",
        "respond_by": "2026-04-08T09:00:00Z",
    },
    "timeline": [
        {
            "seq": 1,
            "at": "2026-03-02T08:15:00Z",
            "kind": "submitted",
            "to_stage": "submitted",
            "actor": {"subject": "kh-coordinator", "organisation": "KH", "role": "requester"},
            "comment": "",
        }
    ],
    "submitted_at": "2026-03-02T08:15:00Z",
    "updated_at": "2026-04-01T09:00:00Z",
    "version": 9,
}


class RequestView(BaseModel):
    """One TA request as its caller may see it."""

    model_config = ConfigDict(json_schema_extra={"examples": [REQUEST_VIEW_EXAMPLE]})

    id: str
    member_state: MemberState
    stage: Stage
    title: str
    description: str
    topics: list[Topic]
    modality: Modality
    desired_start: date
    desired_end: date
    beneficiaries: list[MemberState]
    spcd_priorities: list[SpcdPriority]
    client_reference: str | None = None
    sla_due_at: datetime | None = None
    waiting_on: str | None = Field(default=None, description="The role the request waits on, if any")
    duplicate_candidates: list[DuplicateCandidate] = []
    duplicate_of: str | None = None
    consolidated_into: str | None = None
    match: MatchView | None = None
    invitation: InvitationView | None = None
    completion: CompletionView | None = None
    timeline: list[TimelineEntry] = []
    submitted_at: datetime
    updated_at: datetime
    version: int

    @classmethod
    def of_state(
        cls,
        state: RequestState,
        *,
        timeline: list[TimelineEntry] | None = None,
        waiting_on: str | None = None,
    ) -> RequestView:
        d = state.draft
        match = None
        if state.match is not None:
            m = state.match
            match = MatchView(
                candidates=m.candidates,
                expert_ids=m.expert_ids,
                programme_id=m.programme_id,
                funding_partner=m.funding_partner,
                proposed_programme_id=m.proposed_programme_id,
                proposed_funding_partner=m.proposed_funding_partner,
                meeting=m.meeting,
                comment=m.comment,
            )
        invitation = None
        if state.invitation is not None:
            i = state.invitation
            invitation = InvitationView(
                id=i.id, expert_id=i.expert_id, meeting=i.meeting, status=i.status, respond_by=i.respond_by
            )
        completion = None
        if state.completion is not None:
            c = state.completion
            completion = CompletionView(
                report=c.report, delivered_on=c.delivered_on, recorded_at=c.recorded_at
            )
        return cls(
            id=state.request_id,
            member_state=state.member_state,
            stage=state.stage,
            title=d.title,
            description=d.description,
            topics=d.topics,
            modality=d.modality,
            desired_start=d.desired_start,
            desired_end=d.desired_end,
            beneficiaries=state.beneficiaries,
            spcd_priorities=state.spcd_priorities,
            client_reference=d.client_reference,
            sla_due_at=state.sla_due_at,
            waiting_on=waiting_on,
            duplicate_candidates=state.dedup.candidates if state.dedup else [],
            duplicate_of=state.duplicate_of,
            consolidated_into=state.consolidated_into,
            match=match,
            invitation=invitation,
            completion=completion,
            timeline=timeline if timeline is not None else [TimelineEntry.of_event(e) for e in state.events],
            submitted_at=state.submitted_at,
            updated_at=state.updated_at,
            version=state.version,
        )


class RequestSummary(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "TA-2026-000042",
                    "member_state": "KH",
                    "stage": "asec_review",
                    "title": DRAFT_EXAMPLE["title"],
                    "topics": ["post-clearance-audit"],
                    "modality": "workshop",
                    "desired_start": "2026-09-01",
                    "desired_end": "2026-09-05",
                    "sla_due_at": "2026-03-16T09:00:00Z",
                    "waiting_on": "asec_reviewer",
                    "submitted_at": "2026-03-02T08:15:00Z",
                    "updated_at": "2026-03-02T08:16:00Z",
                }
            ]
        }
    )

    id: str
    member_state: MemberState
    stage: Stage
    title: str
    topics: list[Topic]
    modality: Modality
    desired_start: date
    desired_end: date
    sla_due_at: datetime | None = None
    waiting_on: str | None = None
    submitted_at: datetime
    updated_at: datetime

    @classmethod
    def of_row(cls, row: RequestRow) -> RequestSummary:
        return cls(
            id=row.id,
            member_state=MemberState(row.member_state),
            stage=Stage(row.stage),
            title=row.title,
            topics=[Topic(t) for t in row.topics],
            modality=Modality(row.modality),
            desired_start=row.desired_start,
            desired_end=row.desired_end,
            sla_due_at=row.sla_due_at,
            waiting_on=row.waiting_on,
            submitted_at=row.submitted_at,
            updated_at=row.updated_at,
        )


class RequestPage(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"items": [], "next_cursor": "WyIyMDI2LTAzLTAyVDA4OjE1OjAwKzAwOjAwIiwi"}]
        }
    )

    items: list[RequestSummary]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null at the end"
    )


ACTIONS: dict[Stage, str] = {
    Stage.asec_review: "asec-review",
    Stage.changes_requested: "amendment",
    Stage.rocb_matching: "rocb-match",
    Stage.on_hold: "resumption",
    Stage.expert_invitation: "response",
    Stage.scheduled: "completion",
    Stage.awaiting_report: "completion",
}


class InboxItem(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "TA-2026-000042",
                    "member_state": "KH",
                    "stage": "asec_review",
                    "title": DRAFT_EXAMPLE["title"],
                    "waiting_on": "asec_reviewer",
                    "sla_due_at": "2026-03-16T09:00:00Z",
                    "updated_at": "2026-03-02T08:16:00Z",
                    "action": "asec-review",
                    "href": "/v1/requests/TA-2026-000042/asec-review",
                }
            ]
        }
    )

    request_id: str
    member_state: MemberState
    stage: Stage
    title: str
    waiting_on: str | None
    sla_due_at: datetime | None = None
    updated_at: datetime
    invitation_id: str | None = None
    overdue: bool = Field(default=False, description="Past its SLA due date")
    action: str | None = Field(default=None, description="The call that completes this task")
    href: str = Field(description="Where to POST that call")

    @classmethod
    def of_row(cls, row: RequestRow, now: datetime | None = None) -> InboxItem:
        stage = Stage(row.stage)
        action = ACTIONS.get(stage)
        if stage is Stage.expert_invitation and row.invitation_id:
            href = f"/v1/invitations/{row.invitation_id}/response"
        elif action:
            href = f"/v1/requests/{row.id}/{action}"
        else:
            href = f"/v1/requests/{row.id}"
        return cls(
            request_id=row.id,
            member_state=MemberState(row.member_state),
            stage=stage,
            title=row.title,
            waiting_on=row.waiting_on,
            sla_due_at=row.sla_due_at,
            updated_at=row.updated_at,
            invitation_id=row.invitation_id,
            overdue=row.sla_due_at is not None and row.sla_due_at < (now or datetime.now(UTC)),
            action=action,
            href=href,
        )


class InboxView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "request_id": "TA-2026-000042",
                            "member_state": "KH",
                            "stage": "asec_review",
                            "title": DRAFT_EXAMPLE["title"],
                            "waiting_on": "asec_reviewer",
                            "sla_due_at": "2026-03-16T09:00:00Z",
                            "updated_at": "2026-03-02T08:16:00Z",
                            "overdue": False,
                            "action": "asec-review",
                            "href": "/v1/requests/TA-2026-000042/asec-review",
                        }
                    ],
                    "next_cursor": None,
                }
            ]
        }
    )

    items: list[InboxItem]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null at the end"
    )


class HealthView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"status": "ok", "database": "ok", "temporal": "ok"}]}
    )

    status: str
    database: str
    temporal: str
