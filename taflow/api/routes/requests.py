"""/v1/requests: submit, read, list, and every decision on a request (DESIGN section 3)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from taflow.api.auth import CurrentActor, require
from taflow.api.deps import ClientDep, SessionDep, SettingsDep
from taflow.api.problems import ProblemError, field_errors, problem_responses
from taflow.api.schemas import (
    DRAFT_EXAMPLE,
    AmendmentBody,
    AsecReviewBody,
    CancellationBody,
    CompletionBody,
    DecisionView,
    HoldBody,
    RequestPage,
    RequestSummary,
    RequestView,
    ResumptionBody,
    RetimeBody,
    RocbMatchBody,
    SubmissionView,
    TimelineEntry,
    WithdrawalBody,
)
from taflow.api.temporal_calls import query_status, run_update, start_request
from taflow.db.read_queries import (
    InvalidCursor,
    Located,
    RequestFilter,
    Scope,
    duplicate_target_exists,
    get_request,
    get_timeline,
    list_requests,
    locate,
    open_request,
)
from taflow.db.submissions import IdempotencyConflict, find_submission, record_submission
from taflow.domain.enums import AsecVerdict, MemberState, Role, Stage, Topic
from taflow.domain.models import Actor, DecisionResult, NewRequest, RequestDraft, RequestState
from taflow.temporal import workflow_id

router = APIRouter(prefix="/v1/requests", tags=["requests"])

RequestId = Annotated[str, Path(description="Business id, e.g. TA-2026-000042", examples=["TA-2026-000042"])]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any printable ASCII string; a retry with the same key and body returns the same request",
    ),
]

ASEC = (Role.asec_reviewer, Role.asec_head)


def _not_found(request_id: str) -> ProblemError:
    return ProblemError("not-found", f"no request {request_id}")


def _message(body: Any, actor: Actor) -> BaseModel:
    """The domain message with the caller as actor (a 422, never a 500, if the domain disagrees)."""
    try:
        message: BaseModel = body.to_message(actor)
    except ValidationError as exc:
        raise ProblemError(
            "validation-error", "the decision is not valid", errors=field_errors(exc.errors())
        ) from exc
    return message


# ---------------------------------------------------------------------------- submit


@router.post(
    "",
    status_code=201,
    summary="Submit a TA request",
    description="Requesters only; the member state comes from the credential. With an `Idempotency-Key`, "
    "a retry with the same body answers 200 with the same id, another body 409.",
    response_model=SubmissionView,
    responses={
        200: {
            "model": SubmissionView,
            "description": "Replay of an earlier submission with the same key and body",
        },
        **problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
    },
)
async def submit_request(
    draft: Annotated[
        RequestDraft,
        Body(openapi_examples={"workshop": {"summary": "A PCA workshop", "value": DRAFT_EXAMPLE}}),
    ],
    response: Response,
    actor: Annotated[Actor, Depends(require(Role.requester))],
    session: SessionDep,
    client: ClientDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> SubmissionView:
    try:
        member_state = MemberState(actor.organisation)
    except ValueError:
        raise ProblemError("forbidden", "only a member state's credential may submit requests") from None
    try:
        submission = await record_submission(
            session,
            member_state=member_state.value,
            idempotency_key=idempotency_key,
            draft=draft,
            submitted_by=actor.subject,
            now=datetime.now(UTC),
        )
    except IdempotencyConflict as exc:
        raise ProblemError("idempotency-conflict", str(exc)) from exc
    stage = Stage.submitted
    if not submission.created:
        located = await locate(session, submission.request_id)
        if located is not None and located.row is not None:
            stage = Stage(located.row.stage)
    await session.commit()
    await start_request(
        client,
        NewRequest(
            request_id=submission.request_id,
            member_state=member_state,
            draft=draft,
            submitted_by=actor,
            submitted_at=submission.submitted_at,
            invitation_response_days=settings.invitation_response_days,
        ),
        settings.task_queue,
    )
    href = f"/v1/requests/{submission.request_id}"
    response.status_code = 201 if submission.created else 200
    response.headers["Location"] = href
    return SubmissionView(
        id=submission.request_id,
        member_state=member_state,
        stage=stage,
        submitted_at=submission.submitted_at,
        href=href,
    )


# ---------------------------------------------------------------------------- read


@router.get(
    "/{request_id}",
    summary="One request, with its timeline",
    description="Another member state's request answers 404, as if it did not exist.",
    response_model=RequestView,
    responses=problem_responses(401, 404, 422, 503),
)
async def get_one(
    request_id: RequestId, actor: CurrentActor, session: SessionDep, client: ClientDep
) -> RequestView:
    scope = Scope.of(actor)
    row = await get_request(session, request_id, scope)
    if row is not None:
        state = RequestState.model_validate(row.state)
        events = await get_timeline(session, request_id)
        timeline = [TimelineEntry.of_row(e) for e in events] if events else None
        return RequestView.of_state(state, timeline=timeline, waiting_on=row.waiting_on)
    submission = await find_submission(session, request_id)
    await session.commit()
    if submission is None or not scope.allows(submission.member_state, None):
        raise _not_found(request_id)
    fresh = await query_status(client, request_id)  # the projection has not caught up yet
    if fresh is None:
        raise _not_found(request_id)
    return RequestView.of_state(fresh)


@router.get(
    "",
    summary="List requests the caller may see",
    description="Ordered by last change, newest first. "
    "Pass `next_cursor` back as `cursor` for the next page.",
    response_model=RequestPage,
    responses=problem_responses(400, 401, 422),
)
async def list_all(
    actor: CurrentActor,
    session: SessionDep,
    stage: Stage | None = None,
    member_state: MemberState | None = None,
    topic: Topic | None = None,
    q: Annotated[str | None, Query(min_length=1, max_length=200, description="Words in the title")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> RequestPage:
    filters = RequestFilter(
        stage=stage.value if stage else None,
        member_state=member_state.value if member_state else None,
        topic=topic.value if topic else None,
        q=q.strip() or None if q else None,
    )
    try:
        page = await list_requests(session, Scope.of(actor), filters, limit=limit, cursor=cursor)
    except InvalidCursor as exc:
        raise ProblemError("invalid-cursor", str(exc)) from exc
    return RequestPage(items=[RequestSummary.of_row(r) for r in page.items], next_cursor=page.next_cursor)


# ---------------------------------------------------------------------------- decisions

Check = Callable[[AsyncSession, Located], Awaitable[None]]


async def _decide(
    request_id: str,
    actor: Actor,
    session: AsyncSession,
    client: Client,
    update: str,
    body: Any,
    check: Check | None = None,
) -> DecisionView:
    """Visibility and database checks here; stage, role and ownership are the workflow's validators'."""
    located = await locate(session, request_id)
    if located is None or not Scope.of(actor).allows(located.member_state, located.expert_id):
        raise _not_found(request_id)
    message = _message(body, actor)
    if check is not None:
        await check(session, located)
    closed = "the request is closed"
    if located.row is not None and Stage(located.row.stage).is_terminal:
        closed = f"the request is closed ({located.row.stage})"
    await session.commit()  # no connection held while the workflow decides
    result = await run_update(
        client, workflow_id(request_id), update, message, DecisionResult, closed_detail=closed
    )
    return DecisionView(id=result.request_id, stage=result.stage, version=result.version)


def _review_check(body: AsecReviewBody) -> Check:
    async def check(session: AsyncSession, located: Located) -> None:
        if body.decision is AsecVerdict.duplicate and body.duplicate_of:
            if body.duplicate_of == located.request_id:
                raise ProblemError("invalid-decision", "a request cannot duplicate itself")
            if not await duplicate_target_exists(session, body.duplicate_of):
                raise ProblemError(
                    "invalid-decision", f"duplicate_of: no request or catalogue activity {body.duplicate_of}"
                )
        if body.decision is AsecVerdict.consolidate and body.consolidate_into:
            target = await open_request(session, body.consolidate_into)
            if target is None or target.id == located.request_id:
                raise ProblemError(
                    "invalid-decision",
                    f"consolidate_into: {body.consolidate_into} is not another open request",
                )
            if target.member_state == located.member_state:
                raise ProblemError(
                    "invalid-decision", "consolidate_into must be a request of another member state"
                )

    return check


DECISION_ERRORS = problem_responses(401, 403, 404, 409, 413, 415, 422, 503, 504)


@router.post(
    "/{request_id}/asec-review",
    summary="ASEC review: approve, reject, request changes, duplicate or consolidate",
    description="At stage asec_review only. `duplicate_of` must name an existing request or catalogue "
    "activity; `consolidate_into` an open request of another member state.",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def asec_review(
    request_id: RequestId,
    body: AsecReviewBody,
    actor: Annotated[Actor, Depends(require(*ASEC))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "review", body, _review_check(body))


@router.post(
    "/{request_id}/amendment",
    summary="Amend a request after ASEC asked for changes (back to dedup_check)",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def amendment(
    request_id: RequestId,
    body: AmendmentBody,
    actor: Annotated[Actor, Depends(require(Role.requester))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "amendment", body)


@router.post(
    "/{request_id}/rocb-match",
    summary="ROCB A/P confirms (or overrides) the expert match, or finds none",
    description="`expert_ids` fixes whom to invite and in what order; "
    "without it the ranked proposal is used.",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def rocb_match(
    request_id: RequestId,
    body: RocbMatchBody,
    actor: Annotated[Actor, Depends(require(Role.rocb_officer))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "match", body)


@router.post(
    "/{request_id}/completion",
    summary="Report delivery (from scheduled or awaiting_report)",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def completion(
    request_id: RequestId,
    body: CompletionBody,
    actor: Annotated[Actor, Depends(require(Role.rocb_officer, *ASEC))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "completion", body)


@router.post(
    "/{request_id}/withdrawal",
    summary="The requesting member state withdraws its request",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def withdrawal(
    request_id: RequestId,
    body: WithdrawalBody,
    actor: Annotated[Actor, Depends(require(Role.requester))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "withdrawal", body)


@router.post(
    "/{request_id}/cancellation",
    summary="ASEC cancels an open request",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def cancellation(
    request_id: RequestId,
    body: CancellationBody,
    actor: Annotated[Actor, Depends(require(*ASEC))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "cancellation", body)


@router.post(
    "/{request_id}/resumption",
    summary="Take a request out of on_hold back to rocb_matching (next donor round)",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def resumption(
    request_id: RequestId,
    body: ResumptionBody,
    actor: Annotated[Actor, Depends(require(Role.rocb_officer, *ASEC))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "resumption", body)


@router.post(
    "/{request_id}/hold",
    summary="ASEC puts a request on hold (its SLA clock stops) or releases it (the clock resumes)",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def hold(
    request_id: RequestId,
    body: HoldBody,
    actor: Annotated[Actor, Depends(require(*ASEC))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "hold", body)


@router.post(
    "/{request_id}/retime",
    summary="Ops re-time the waiting stage with the SLA policy file as it is now (audited)",
    response_model=DecisionView,
    responses=DECISION_ERRORS,
)
async def retime(
    request_id: RequestId,
    body: RetimeBody,
    actor: Annotated[Actor, Depends(require(Role.ops, Role.asec_head))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, actor, session, client, "retime", body)
