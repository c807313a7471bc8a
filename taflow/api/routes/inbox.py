"""/v1/inbox: what waits on the caller, most urgent first."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from taflow import authz
from taflow.api.auth import Caller, allow
from taflow.api.deps import SessionDep
from taflow.api.problems import ProblemError, problem_responses
from taflow.api.schemas import InboxItem, InboxView
from taflow.authz import Action
from taflow.db.read_queries import InboxFilter, InvalidCursor, inbox
from taflow.domain.enums import MemberState, Stage

router = APIRouter(prefix="/v1", tags=["inbox"])


@router.get(
    "/inbox",
    summary="Tasks waiting on the caller's role and organisation",
    description="ASEC reviewers and heads: requests at asec_review; ROCB A/P: matching and on-hold requests; "
    "requesters: their own requests awaiting an amendment; experts: their open invitations. "
    "Ordered by SLA due date (none last, so overdue work comes first), then the oldest change; "
    "`overdue=true` keeps only what is past due. Pass `next_cursor` back as `cursor` for the next page. "
    "Right after the caller's own decision the inbox already reflects it (decisions answer once the "
    "read model shows them).\n\n" + authz.who(Action.read_inbox),
    response_model=InboxView,
    responses=problem_responses(400, 401, 422),
)
async def get_inbox(
    caller: Annotated[Caller, Depends(allow(Action.read_inbox))],
    session: SessionDep,
    stage: Stage | None = None,
    member_state: MemberState | None = None,
    overdue: Annotated[
        bool | None, Query(description="true: only past due; false: only not past due")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> InboxView:
    now = datetime.now(UTC)
    filters = InboxFilter(
        stage=stage.value if stage else None,
        member_state=member_state.value if member_state else None,
        overdue=overdue,
    )
    try:
        page = await inbox(session, caller.actor, limit=limit, cursor=cursor, filters=filters, now=now)
    except InvalidCursor as exc:
        raise ProblemError("invalid-cursor", str(exc)) from exc
    return InboxView(items=[InboxItem.of_row(r, now) for r in page.items], next_cursor=page.next_cursor)
