"""/v1/invitations: an expert's answer, by single-use link token or by API key."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query

from taflow import authz
from taflow.api.auth import OptionalActor, check, unauthorized
from taflow.api.deps import ClientDep, SessionDep, SessionMakerDep
from taflow.api.idempotency import IDEMPOTENT
from taflow.api.problems import ProblemError, problem_responses
from taflow.api.schemas import InvitationOutcomeView, InvitationResponseBody
from taflow.api.temporal_calls import run_update
from taflow.authz import Action
from taflow.db.credentials import lock_invitation_token
from taflow.db.read_queries import invitation_expert
from taflow.domain.enums import Organisation, Role
from taflow.domain.models import Actor, InvitationOutcome
from taflow.temporal import invitation_workflow_id

router = APIRouter(prefix="/v1/invitations", tags=["invitations"])

TOKEN_QUERY = Query(max_length=200, description="The single-use token from the invitation link")
TOKEN_HEADER = Header(alias="X-Invitation-Token", max_length=200, description="Alternative to `?token=`")


@router.post(
    "/{invitation_id}/response",
    summary="An expert accepts or declines an invitation",
    description="Authenticate with the link token (`?token=` or `X-Invitation-Token`; single use, expires), "
    "or with an API key: the invited expert's own, or ROCB A/P recording the expert's answer.\n\n"
    + authz.who(Action.respond_invitation),
    response_model=InvitationOutcomeView,
    responses=problem_responses(400, 401, 403, 404, 409, 410, 413, 415, 422, 503, 504),
    dependencies=[IDEMPOTENT],
)
async def respond(
    invitation_id: Annotated[str, Path(examples=["TA-2026-000042-1"])],
    body: InvitationResponseBody,
    actor: OptionalActor,
    session: SessionDep,
    sessionmaker: SessionMakerDep,
    client: ClientDep,
    token: Annotated[str | None, TOKEN_QUERY] = None,
    x_invitation_token: Annotated[str | None, TOKEN_HEADER] = None,
) -> InvitationOutcomeView:
    wf_id = invitation_workflow_id(invitation_id)
    secret = token or x_invitation_token
    if secret:
        await session.commit()
        async with sessionmaker() as tx:
            row = await lock_invitation_token(tx, secret)
            if row is None or row.invitation_id != invitation_id:
                raise ProblemError("not-found", "unknown invitation link")
            now = datetime.now(UTC)
            if row.used_at is not None:
                raise ProblemError("token-used", "this invitation link has already been used")
            if row.expires_at <= now:
                raise ProblemError("token-expired", "this invitation link has expired")
            expert = Actor(subject=row.expert_id, organisation=Organisation.WCO.value, role=Role.expert)
            outcome = await run_update(
                client,
                wf_id,
                "respond",
                body.to_message(expert),
                InvitationOutcome,
                closed_detail="the invitation is closed",
                missing_detail=f"no invitation {invitation_id}",
            )
            row.used_at = now  # same transaction: the link is spent only if the answer was taken
            await tx.commit()
        return InvitationOutcomeView.of(outcome)
    if actor is None:
        raise unauthorized("send the link token or an API key", invalid=False)
    caller = check(actor, Action.respond_invitation)
    if caller.reach is not authz.Reach.any:
        invited = await invitation_expert(session, invitation_id)
        if not authz.sees_request(actor, caller.reach, None, invited):
            raise ProblemError("not-found", f"no invitation {invitation_id} for you")
    await session.commit()
    outcome = await run_update(
        client,
        wf_id,
        "respond",
        body.to_message(actor),
        InvitationOutcome,
        closed_detail="the invitation is closed",
        missing_detail=f"no invitation {invitation_id}",
    )
    return InvitationOutcomeView.of(outcome)
