"""Projects a request's workflow state into the read model, with its outbox notifications."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.projection import project
from taflow.domain.enums import Stage
from taflow.domain.models import AuditEvent, Notification, Projection, RequestState
from taflow.observability.business import record_projection

ROCB_STAGES = frozenset(
    {Stage.rocb_matching, Stage.on_hold, Stage.expert_invitation, Stage.scheduled, Stage.awaiting_report}
)


def audience(state: RequestState, event: AuditEvent) -> list[str]:
    """Who hears of an event: the beneficiaries, ASEC, and ROCB A/P once it is involved."""
    orgs = [b.value for b in state.beneficiaries] + ["ASEC"]
    touches_rocb = (event.to_stage in ROCB_STAGES) or (event.from_stage in ROCB_STAGES)
    if touches_rocb or state.stage in ROCB_STAGES:
        orgs.append("ROCB-AP")
    return list(dict.fromkeys(orgs))


def notifications(projection: Projection) -> list[Notification]:
    state = projection.state
    return [
        Notification(
            request_id=state.request_id,
            event_type=f"request.{e.kind}",
            audience=audience(state, e),
            payload={
                "request_id": state.request_id,
                "seq": e.seq,
                "kind": e.kind,
                "stage": (e.to_stage or state.stage).value,
                "from_stage": e.from_stage.value if e.from_stage else None,
                "at": e.at.isoformat(),
                "comment": e.comment,
            },
            dedup_key=f"{state.request_id}:{e.seq}",
        )
        for e in projection.new_events
    ]


class ProjectionActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessionmaker

    @activity.defn
    async def project_request(self, projection: Projection) -> None:
        await project(self._sessions, projection, notifications(projection))
        record_projection(projection)  # business metrics: transitions, time in stage, SLA, dedup, invitations
