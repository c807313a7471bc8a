"""The business metrics the projection activity derives from newly projected audit events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from taflow.domain.enums import Role, Stage
from taflow.domain.models import SYSTEM_ACTOR, Actor, AuditEvent, Projection, RequestDraft, RequestState
from taflow.observability.business import STAGE_DURATION, Observation, observations

T0 = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
ASEC = Actor(subject="r", organisation="ASEC", role=Role.asec_reviewer)


def event(seq: int, minutes: float, kind: str, to: Stage | None = None, **data: Any) -> AuditEvent:
    return AuditEvent(
        seq=seq, at=T0 + timedelta(minutes=minutes), actor=SYSTEM_ACTOR, kind=kind, to_stage=to, data=data
    )


def with_from(events: list[AuditEvent]) -> list[AuditEvent]:
    """What the workflow records: a transition names the stage it leaves."""
    stage: Stage | None = None
    out = []
    for e in events:
        out.append(e.model_copy(update={"from_stage": stage if e.to_stage and stage else None}))
        stage = e.to_stage or stage
    return out


EVENTS = with_from(
    [
        event(1, 0, "submitted", Stage.submitted),
        event(2, 0, "dedup_started", Stage.dedup_check),
        event(3, 1, "dedup_checked", Stage.asec_review, verdict="duplicate_suspected", candidates=["A", "B"]),
        event(4, 60 * 24 * 7, "reminder"),
        event(5, 60 * 24 * 14, "escalated"),
        event(6, 60 * 24 * 15, "approved", Stage.rocb_matching),
        event(7, 60 * 24 * 16, "match_confirmed", Stage.expert_invitation),
        event(8, 60 * 24 * 16, "invitation_sent"),
        event(9, 60 * 24 * 17, "invitation_declined"),
        event(10, 60 * 24 * 17, "refused", signal="asec_review"),
        event(11, 60 * 24 * 18, "invitation_sent"),
        event(12, 60 * 24 * 19, "expert_accepted", Stage.scheduled),
    ]
)


def state(events: list[AuditEvent]) -> RequestState:
    draft = RequestDraft.model_validate(
        {
            "title": "Risk management",
            "description": "Risk management for land borders.",
            "topics": ["risk-management"],
            "modality": "workshop",
            "desired_start": "2030-04-01",
            "desired_end": "2030-04-30",
        }
    )
    return RequestState(
        request_id="TA-1",
        member_state="KH",
        draft=draft,
        beneficiaries=["KH"],
        stage=Stage.scheduled,
        submitted_by=ASEC,
        submitted_at=T0,
        updated_at=T0,
        events=events,
    )


def test_observations_from_a_whole_life() -> None:
    points = observations(Projection(state=state(EVENTS), new_events=EVENTS))
    entries = [p.labels["stage"] for p in points if p.metric == "taflow_stage_entries"]
    assert entries == [
        "submitted",
        "dedup_check",
        "asec_review",
        "rocb_matching",
        "expert_invitation",
        "scheduled",
    ]
    durations = {p.labels["stage"]: p.value for p in points if p.metric == STAGE_DURATION}
    assert durations == {
        "submitted": 0.0,
        "dedup_check": 60.0,
        "asec_review": (60 * 24 * 15 - 1) * 60.0,
        "rocb_matching": 60 * 24 * 60.0,
        "expert_invitation": 3 * 60 * 24 * 60.0,
    }
    assert Observation("taflow_sla_breaches", {"stage": "asec_review", "action": "escalated"}) in points
    assert Observation("taflow_sla_reminders", {"stage": "asec_review"}) in points
    assert Observation("taflow_dedup_checks", {"verdict": "duplicate_suspected"}) in points
    assert Observation("taflow_dedup_candidates_found", {"verdict": "duplicate_suspected"}, 2.0) in points
    outcomes = [p.labels["outcome"] for p in points if p.metric == "taflow_invitations"]
    assert outcomes == ["sent", "declined", "sent", "accepted"]
    assert Observation("taflow_refused_signals", {"signal": "asec_review"}) in points


def test_only_new_events_count() -> None:
    """A projection carries the whole state but counts only what it writes for the first time."""
    points = observations(Projection(state=state(EVENTS), new_events=EVENTS[-1:]))
    assert [p.metric for p in points] == ["taflow_stage_entries", STAGE_DURATION, "taflow_invitations"]
    assert points[1].labels == {"stage": "expert_invitation"}


def test_expiry_is_a_breach_of_the_stage_left() -> None:
    events = with_from(
        [event(1, 0, "submitted", Stage.changes_requested), event(2, 60, "expired", Stage.expired)]
    )
    points = observations(Projection(state=state(events), new_events=events[1:]))
    assert Observation("taflow_sla_breaches", {"stage": "changes_requested", "action": "expired"}) in points


def test_a_lean_projection_counts_alike() -> None:
    """Without the audit trail (patch "lean-projection") the stage entry comes beside the new events."""
    whole = observations(Projection(state=state(EVENTS), new_events=EVENTS[-2:]))
    entered = next(e for e in reversed(EVENTS[:-2]) if e.to_stage is not None)
    lean = Projection(state=state([]), new_events=EVENTS[-2:], events_omitted=True, stage_entered=entered)
    assert observations(lean) == whole
