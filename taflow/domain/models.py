"""Pydantic types shared by the API, the workflows and the activities.

One model per workflow input, signal, update and query, so payloads stay typed end to end
(`temporalio.contrib.pydantic.pydantic_data_converter` on every client and worker).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from taflow.domain.enums import (
    AsecVerdict,
    CandidateKind,
    DedupVerdict,
    InvitationStatus,
    MemberState,
    Modality,
    RocbVerdict,
    Role,
    SpcdPriority,
    Stage,
    Topic,
)
from taflow.domain.sla import StageClock

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=200)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=5000)]
Comment = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000)]
Reference = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Identifier = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CatalogueId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
"""Duplicate targets may be catalogue activities, whose IATI identifiers run long."""


class Strict(BaseModel):
    """Base for inbound messages: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


class Actor(BaseModel):
    """Who did something: a credential's subject, its organisation and its role."""

    subject: str
    organisation: str
    role: Role


SYSTEM_ACTOR = Actor(subject="taflow", organisation="TAFLOW", role=Role.ops)


class RequestDraft(Strict):
    """What a member state asks for; the body of a submission or an amendment."""

    title: Title
    description: Description
    topics: Annotated[list[Topic], Field(min_length=1, max_length=10)]
    modality: Modality
    desired_start: date
    desired_end: date
    beneficiaries: Annotated[list[MemberState], Field(max_length=11)] = []
    spcd_priorities: Annotated[list[SpcdPriority], Field(max_length=5)] = []
    client_reference: Reference | None = None

    @model_validator(mode="after")
    def _period_in_order(self) -> RequestDraft:
        if self.desired_end < self.desired_start:
            raise ValueError("desired_end must not be before desired_start")
        if (self.desired_end - self.desired_start).days > 3 * 366:
            raise ValueError("the desired period may not exceed three years")
        return self


class NewRequest(BaseModel):
    """Input of TARequestWorkflow: the accepted submission, with its business id."""

    request_id: str
    member_state: MemberState
    draft: RequestDraft
    submitted_by: Actor
    submitted_at: datetime
    invitation_response_days: int = 7
    """Policy recorded at submission, so a later settings change never alters a running request."""
    history_limit: int = 2000
    """Continue as new once the history has this many events (long loops of amendments, reminders)."""
    resume: RequestState | None = None
    """Set when continuing as new: the whole state carried over."""


class AsecDecision(Strict):
    decision: AsecVerdict
    comment: Comment = ""
    duplicate_of: CatalogueId | None = None
    consolidate_into: Identifier | None = None
    spcd_priorities: Annotated[list[SpcdPriority], Field(max_length=5)] = []
    dismissed: Annotated[list[CatalogueId], Field(max_length=20)] = []
    actor: Actor | None = None

    @model_validator(mode="after")
    def _targets(self) -> AsecDecision:
        if self.decision is AsecVerdict.duplicate and not self.duplicate_of:
            raise ValueError("decision 'duplicate' needs duplicate_of")
        if self.decision is AsecVerdict.consolidate and not self.consolidate_into:
            raise ValueError("decision 'consolidate' needs consolidate_into")
        if self.decision in (AsecVerdict.reject, AsecVerdict.request_changes) and not self.comment:
            raise ValueError(f"decision '{self.decision.value}' needs a comment for the requester")
        return self


class Amendment(Strict):
    draft: RequestDraft
    comment: Comment = ""
    actor: Actor | None = None


class RocbDecision(Strict):
    decision: RocbVerdict
    expert_ids: Annotated[list[Identifier], Field(max_length=20)] | None = None
    programme_id: Identifier | None = None
    funding_partner: Identifier | None = None
    comment: Comment = ""
    actor: Actor | None = None


class Completion(Strict):
    report: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
    delivered_on: date
    actor: Actor | None = None


class Withdrawal(Strict):
    reason: Comment = ""
    actor: Actor | None = None


class Cancellation(Strict):
    reason: Comment = ""
    actor: Actor | None = None


class Hold(Strict):
    """ASEC puts a request on hold (its clocks stop) or releases it (they resume where they stood)."""

    hold: bool = True
    comment: Comment = ""
    actor: Actor | None = None


class Retiming(Strict):
    """Ops re-time the waiting stage on purpose with the policy file as it is now (audited)."""

    comment: Comment = ""
    actor: Actor | None = None


class Resumption(Strict):
    """Takes a request out of on_hold back to rocb_matching (next donor round)."""

    comment: Comment = ""
    actor: Actor | None = None


class BeneficiaryAdded(BaseModel):
    """Signal to a surviving request: a consolidated request's member state joins it."""

    from_request_id: str
    member_state: MemberState
    actor: Actor | None = None


class InvitationResponse(Strict):
    accept: bool
    comment: Comment = ""
    actor: Actor | None = None


class AuditEvent(BaseModel):
    """One line of a request's audit trail: who, role, organisation, when, what, comment."""

    seq: int
    at: datetime
    actor: Actor
    kind: str
    from_stage: Stage | None = None
    to_stage: Stage | None = None
    comment: str = ""
    data: dict[str, Any] = {}


class DuplicateCandidate(BaseModel):
    """An earlier request or catalogue activity that may cover the same need."""

    kind: CandidateKind
    id: str
    title: str
    relation: DedupVerdict
    score: float
    member_state: str | None = None
    provider: str | None = None
    evidence: dict[str, Any] = {}


class DedupCheckInput(BaseModel):
    request_id: str
    member_state: MemberState
    draft: RequestDraft
    submitted_at: datetime
    dismissed: list[str] = []


class DedupResult(BaseModel):
    verdict: DedupVerdict
    candidates: list[DuplicateCandidate] = []
    duplicate_of: str | None = None
    """The engine's pick (the canonical item) when a duplicate is suspected; ASEC confirms or dismisses."""
    consolidate_with: list[str] = []


class MatchCandidate(BaseModel):
    expert_id: str
    name: str
    score: float
    reasons: list[str] = []


class Meeting(BaseModel):
    id: str
    body: str
    number: int
    starts_on: date
    ends_on: date
    place: str
    agenda_cutoff: date


class MatchInput(BaseModel):
    request_id: str
    member_state: MemberState
    draft: RequestDraft
    as_of: datetime
    limit: int = 5


class MatchProposal(BaseModel):
    candidates: list[MatchCandidate] = []
    programme_id: str | None = None
    funding_partner: str | None = None
    meeting: Meeting | None = None


class MatchInfo(BaseModel):
    candidates: list[MatchCandidate] = []
    proposed_programme_id: str | None = None
    proposed_funding_partner: str | None = None
    meeting: Meeting | None = None
    expert_ids: list[str] = []
    programme_id: str | None = None
    funding_partner: str | None = None
    comment: str = ""
    confirmed_by: Actor | None = None


class InvitationInfo(BaseModel):
    id: str
    expert_id: str
    meeting: Meeting | None = None
    status: InvitationStatus
    respond_by: datetime
    responded_at: datetime | None = None
    comment: str = ""


class InvitationInput(BaseModel):
    """Input of ExpertInvitationWorkflow."""

    invitation_id: str
    request_id: str
    member_state: MemberState
    title: str
    expert_id: str
    meeting: Meeting | None = None
    respond_by: datetime


class InvitationOutcome(BaseModel):
    invitation_id: str
    expert_id: str
    status: InvitationStatus
    comment: str = ""
    responded_by: Actor | None = None
    responded_at: datetime | None = None


class CompletionRecord(BaseModel):
    report: str
    delivered_on: date
    recorded_by: Actor
    recorded_at: datetime


class RequestState(BaseModel):
    """The whole state of one request: what the `status` query returns and continue-as-new carries."""

    request_id: str
    member_state: MemberState
    draft: RequestDraft
    beneficiaries: list[MemberState]
    spcd_priorities: list[SpcdPriority] = []
    stage: Stage = Stage.submitted
    submitted_by: Actor
    submitted_at: datetime
    updated_at: datetime
    dedup: DedupResult | None = None
    dismissed_candidates: list[str] = []
    match: MatchInfo | None = None
    invitation: InvitationInfo | None = None
    invitations: list[InvitationInfo] = []
    duplicate_of: str | None = None
    consolidated_into: str | None = None
    completion: CompletionRecord | None = None
    sla_due_at: datetime | None = None
    events: list[AuditEvent] = []
    version: int = 0
    invitation_response_days: int = 7
    clock: StageClock | None = None
    paused_clocks: dict[str, StageClock] = {}
    held: bool = False
    escalated: bool = False
    donor_round_at: datetime | None = None
    history_limit: int = 2000
    runs: int = 1


class DecisionResult(BaseModel):
    """What an update answers: the request's stage after the decision."""

    request_id: str
    stage: Stage
    version: int


class Projection(BaseModel):
    """What the projection activity writes: the snapshot and the events it has not written yet."""

    state: RequestState
    new_events: list[AuditEvent]
    events_omitted: bool = False
    """The snapshot comes without its audit trail (`state.events` is empty): the stored trail is
    extended by `new_events` instead of replaced (patch "lean-projection"; older workflows send it all)."""
    stage_entered: AuditEvent | None = None
    """With `events_omitted`: the last event already projected that moved the stage, so the business
    metrics can still time the stage the new events leave."""
    kept: list[str] = []
    """State fields left out (at their defaults) because the read model has them unchanged since the
    last projection: the stored values stand (patch "lean-projection")."""


class Notification(BaseModel):
    """A message to an organisation (webhook outbox row); delivery comes with the webhook issue."""

    request_id: str
    event_type: str
    audience: list[str]
    payload: dict[str, Any] = {}
    dedup_key: str


class InvitationTokenRequest(BaseModel):
    invitation_id: str
    request_id: str
    expert_id: str
    title: str
    meeting: Meeting | None = None
    respond_by: datetime


NewRequest.model_rebuild()
