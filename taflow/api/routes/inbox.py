"""/v1/inbox: what waits on the caller, most urgent first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from taflow.api.auth import CurrentActor
from taflow.api.deps import SessionDep
from taflow.api.problems import problem_responses
from taflow.api.schemas import InboxItem, InboxView
from taflow.db.read_queries import inbox

router = APIRouter(prefix="/v1", tags=["inbox"])


@router.get(
    "/inbox",
    summary="Tasks waiting on the caller's role and organisation",
    description="ASEC reviewers and heads: requests at asec_review; ROCB A/P: matching and on-hold requests; "
    "requesters: their own requests awaiting an amendment; experts: their open invitations. "
    "Ordered by SLA due date (none last), then the oldest change.",
    response_model=InboxView,
    responses=problem_responses(401, 422),
)
async def get_inbox(
    actor: CurrentActor, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 50
) -> InboxView:
    rows = await inbox(session, actor, limit=limit)
    return InboxView(items=[InboxItem.of_row(r) for r in rows])
