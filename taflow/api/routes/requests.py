"""/v1/requests: submit, read, list, and every decision on a request (DESIGN section 3)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from temporalio.client import Client

from taflow import authz
from taflow.api.auth import Caller, allow
from taflow.api.changes import MAX_WAIT_SECONDS, RECHECK_SECONDS, etag_matches, etag_of, requested_wait
from taflow.api.deps import ChangesDep, ClientDep, SessionDep
from taflow.api.idempotency import IDEMPOTENT, REPLAYED, IdempotencyKey, replayed_response, replayed_status
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
from taflow.authz import Action
from taflow.db.prepared import pooled
from taflow.db.read_queries import (
    InvalidCursor,
    Located,
    RequestFilter,
    Scope,
    duplicate_target_exists,
    get_request_document,
    get_request_version,
    list_requests,
    locate,
    open_request,
)
from taflow.db.submissions import IdempotencyConflict, find_submission, record_submission
from taflow.domain.enums import AsecVerdict, MemberState, Stage, Topic
from taflow.domain.models import Actor, DecisionResult, NewRequest, RequestDraft, RequestState
from taflow.settings import Settings
from taflow.temporal import workflow_id

router = APIRouter(prefix="/v1/requests", tags=["requests"])

RequestId = Annotated[str, Path(description="Business id, e.g. TA-2026-000042", examples=["TA-2026-000042"])]


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


OWN_REPLAY = frozenset({("POST", "/v1/requests")})
"""Calls that answer a retry by their own record (the `submissions` row): the Idempotency-Key
middleware leaves them alone, which saves its claim and finish round trips on every submission."""


@router.post(
    "",
    status_code=201,
    summary="Submit a TA request",
    description="The member state comes from the credential. With an `Idempotency-Key`, a retry with the "
    "same body, from this or another credential of the same member state, gets the first answer again "
    "(200, the same body and Location, `Idempotent-Replayed: true`), also when the first call failed "
    "after the submission was recorded (its workflow is started then if it had not been); another body "
    "under the same key answers 409 `idempotency-conflict`.\n\n" + authz.who(Action.submit_request),
    response_model=SubmissionView,
    responses=replayed_response(SubmissionView, "the first answer again, nothing created")
    | problem_responses(400, 401, 403, 409, 413, 415, 422, 503),
)
async def submit_request(
    draft: Annotated[
        RequestDraft,
        Body(openapi_examples={"workshop": {"summary": "A PCA workshop", "value": DRAFT_EXAMPLE}}),
    ],
    request: Request,
    caller: Annotated[Caller, Depends(allow(Action.submit_request))],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    # The busiest call reads the process's engine, client and settings off `app.state` itself rather
    # than through three dependencies (FastAPI spends about 40 us on each, every call).
    state = request.app.state
    database: AsyncEngine = state.autocommit_engine
    client: Client = state.temporal_client
    settings: Settings = state.settings
    actor = caller.actor
    try:
        member_state = MemberState(actor.organisation)
    except ValueError:
        raise ProblemError("forbidden", "only a member state's credential may submit requests") from None
    try:
        async with pooled(database) as connection:  # not held while the workflow starts
            submission = await record_submission(
                connection,
                member_state=member_state.value,
                idempotency_key=idempotency_key,
                draft=draft,
                submitted_by=actor.subject,
                now=datetime.now(UTC),
            )
    except IdempotencyConflict as exc:
        raise ProblemError("idempotency-conflict", str(exc)) from exc
    await start_request(  # again on a replay: the first call may have died before it started
        client,
        NewRequest(
            request_id=submission.request_id,
            member_state=member_state,
            draft=draft,
            submitted_by=actor.model_copy(update={"subject": submission.submitted_by}),
            submitted_at=submission.submitted_at,
            invitation_response_days=settings.invitation_response_days,
        ),
        settings.task_queue,
    )
    href = f"/v1/requests/{submission.request_id}"
    headers = {"Location": href} | ({} if submission.created else {REPLAYED: "true"})
    view = SubmissionView(  # what the first call answered, whatever has happened since
        id=submission.request_id,
        member_state=member_state,
        stage=Stage.submitted,
        submitted_at=submission.submitted_at,
        href=href,
    )
    # Serialised here: FastAPI would validate the view it was just given once more first.
    status = 201 if submission.created else replayed_status(201)
    return Response(view.model_dump_json(by_alias=True), status, headers, media_type="application/json")


# ---------------------------------------------------------------------------- read

TIMELINE = TypeAdapter(list[TimelineEntry])


@router.get(
    "/{request_id}",
    summary="One request, with its timeline",
    description="Another member state's request answers 404, as if it did not exist.\n\n"
    "The answer's `ETag` is the request's version. Send it back in `If-None-Match` to get `304 Not "
    "Modified` while the request is unchanged; add `Prefer: wait=N` (seconds, at most "
    f"{MAX_WAIT_SECONDS}) and the call waits up to N seconds for the request to change before it "
    "answers: the new version (200) as soon as it is written, or 304. Waiting replaces polling.\n\n"
    + authz.who(Action.read_request),
    response_model=RequestView,
    responses={
        304: {"description": "Unchanged since the version in `If-None-Match` (after the wait, if any)"},
        **problem_responses(401, 404, 422, 503),
    },
)
async def get_one(
    request_id: RequestId,
    caller: Annotated[Caller, Depends(allow(Action.read_request))],
    request: Request,
    session: SessionDep,
    client: ClientDep,
    changes: ChangesDep,
    if_none_match: Annotated[
        str | None, Header(description="An `ETag` seen before: 304 while the request is unchanged")
    ] = None,
    prefer: Annotated[
        str | None, Header(description=f"`wait=N`: wait up to N seconds (<= {MAX_WAIT_SECONDS}) for a change")
    ] = None,
) -> Response:
    scope = Scope.of(caller.actor, caller.reach)
    database: AsyncEngine = request.app.state.autocommit_engine
    wait = requested_wait(prefer) if if_none_match else 0.0
    deadline = time.monotonic() + wait
    announced = False  # a write to this request woke the wait: its version has moved, read the document
    async with changes.watching(request_id) as changed:
        while True:
            changed.clear()  # what is written after this read wakes the wait below
            etag = None
            if if_none_match is not None and not announced:
                etag = await _unchanged(database, request_id, scope, if_none_match)
            if etag is None:  # changed, asked unconditionally, or not in the read model yet
                view = await _current(database, session, client, request_id, scope)
                etag = etag_of(view.version)
                if if_none_match is None or not etag_matches(if_none_match, etag):
                    # Serialised here: FastAPI would validate the view it was just given once more first.
                    body = view.model_dump_json(by_alias=True)
                    return Response(body, 200, {"ETag": etag}, media_type="application/json")
            left = deadline - time.monotonic()
            if left <= 0:
                headers = {"ETag": etag} | ({"Preference-Applied": f"wait={wait:g}"} if wait else {})
                return Response(status_code=304, headers=headers)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, RECHECK_SECONDS))
            announced = changed.is_set()


async def _unchanged(database: AsyncEngine, request_id: str, scope: Scope, if_none_match: str) -> str | None:
    """The ETag `If-None-Match` names when the read-model row is still at it, else None. An unchanged
    conditional read answers from this small read alone (a partner's poll, a wait's first look)."""
    async with pooled(database) as connection:
        row = await get_request_version(connection, request_id)
    if row is None:
        return None
    if not scope.allows(row.member_state, row.expert_id):
        raise _not_found(request_id)
    etag = etag_of(row.version)
    return etag if etag_matches(if_none_match, etag) else None


async def _current(
    database: AsyncEngine, session: AsyncSession, client: Client, request_id: str, scope: Scope
) -> RequestView:
    """The request as the caller may see it: the read model, or the workflow while the projection
    catches up."""
    async with pooled(database) as connection:  # one statement, no transaction; not held while waiting
        document = await get_request_document(connection, request_id)
    if document is not None:
        if not scope.allows(document.member_state, document.expert_id):
            raise _not_found(request_id)
        state = RequestState.model_validate_json(document.state_json)
        timeline = TIMELINE.validate_json(document.timeline_json) or None
        return RequestView.of_state(state, timeline=timeline, waiting_on=document.waiting_on)
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
    "Pass `next_cursor` back as `cursor` for the next page.\n\n" + authz.who(Action.list_requests),
    response_model=RequestPage,
    responses=problem_responses(400, 401, 422),
)
async def list_all(
    caller: Annotated[Caller, Depends(allow(Action.list_requests))],
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
        page = await list_requests(
            session, Scope.of(caller.actor, caller.reach), filters, limit=limit, cursor=cursor
        )
    except InvalidCursor as exc:
        raise ProblemError("invalid-cursor", str(exc)) from exc
    return RequestPage(items=[RequestSummary.of_row(r) for r in page.items], next_cursor=page.next_cursor)


# ---------------------------------------------------------------------------- decisions

Check = Callable[[AsyncSession, Located], Awaitable[None]]


async def _decide(
    request_id: str,
    caller: Caller,
    session: AsyncSession,
    client: Client,
    update: str,
    body: Any,
    check: Check | None = None,
) -> DecisionView:
    """Reach, four-eyes and database checks here; stage, role and ownership are the workflow's validators'."""
    actor = caller.actor
    database = session.bind  # the session's engine, used without a session: no BEGIN or COMMIT
    assert isinstance(database, AsyncEngine)
    async with pooled(database) as connection:  # one or two statements
        located = await locate(connection, request_id, authz.rule(caller.action).four_eyes)
    if located is None or not authz.sees_request(
        actor, caller.reach, located.member_state, located.expert_id
    ):
        raise _not_found(request_id)
    message = _message(body, actor)
    if authz.four_eyes_conflict(caller.action, actor, located.barred):
        raise ProblemError(
            "four-eyes",
            f"{actor.subject} submitted, amended or escalated {located.request_id} "
            f"and may not also {authz.describe(caller.action)}",
        )
    if check is not None:
        await check(session, located)
        await session.commit()  # no connection held while the workflow decides
    closed = "the request is closed"
    if located.stage is not None and Stage(located.stage).is_terminal:
        closed = f"the request is closed ({located.stage})"
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


DECISION_ERRORS = problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 503, 504)


@router.post(
    "/{request_id}/asec-review",
    summary="ASEC review: approve, reject, request changes, duplicate or consolidate",
    description="At stage asec_review only. `duplicate_of` must name an existing request or catalogue "
    "activity; `consolidate_into` an open request of another member state.\n\n"
    + authz.who(Action.asec_review),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def asec_review(
    request_id: RequestId,
    body: AsecReviewBody,
    caller: Annotated[Caller, Depends(allow(Action.asec_review))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "review", body, _review_check(body))


@router.post(
    "/{request_id}/amendment",
    summary="Amend a request after ASEC asked for changes (back to dedup_check)",
    description=authz.who(Action.amend),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def amendment(
    request_id: RequestId,
    body: AmendmentBody,
    caller: Annotated[Caller, Depends(allow(Action.amend))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "amendment", body)


@router.post(
    "/{request_id}/rocb-match",
    summary="ROCB A/P confirms (or overrides) the expert match, or finds none",
    description="`expert_ids` fixes whom to invite and in what order; "
    "without it the ranked proposal is used.\n\n" + authz.who(Action.rocb_match),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def rocb_match(
    request_id: RequestId,
    body: RocbMatchBody,
    caller: Annotated[Caller, Depends(allow(Action.rocb_match))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "match", body)


@router.post(
    "/{request_id}/completion",
    summary="Report delivery (from scheduled or awaiting_report)",
    description=authz.who(Action.complete),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def completion(
    request_id: RequestId,
    body: CompletionBody,
    caller: Annotated[Caller, Depends(allow(Action.complete))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "completion", body)


@router.post(
    "/{request_id}/withdrawal",
    summary="The requesting member state withdraws its request",
    description=authz.who(Action.withdraw),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def withdrawal(
    request_id: RequestId,
    body: WithdrawalBody,
    caller: Annotated[Caller, Depends(allow(Action.withdraw))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "withdrawal", body)


@router.post(
    "/{request_id}/cancellation",
    summary="ASEC cancels an open request",
    description=authz.who(Action.cancel),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def cancellation(
    request_id: RequestId,
    body: CancellationBody,
    caller: Annotated[Caller, Depends(allow(Action.cancel))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "cancellation", body)


@router.post(
    "/{request_id}/resumption",
    summary="Take a request out of on_hold back to rocb_matching (next donor round)",
    description=authz.who(Action.resume),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def resumption(
    request_id: RequestId,
    body: ResumptionBody,
    caller: Annotated[Caller, Depends(allow(Action.resume))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "resumption", body)


@router.post(
    "/{request_id}/hold",
    summary="ASEC puts a request on hold (its SLA clock stops) or releases it (the clock resumes)",
    description=authz.who(Action.hold),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def hold(
    request_id: RequestId,
    body: HoldBody,
    caller: Annotated[Caller, Depends(allow(Action.hold))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "hold", body)


@router.post(
    "/{request_id}/retime",
    summary="Ops re-time the waiting stage with the SLA policy file as it is now (audited)",
    description=authz.who(Action.retime),
    response_model=DecisionView,
    responses=DECISION_ERRORS,
    dependencies=[IDEMPOTENT],
)
async def retime(
    request_id: RequestId,
    body: RetimeBody,
    caller: Annotated[Caller, Depends(allow(Action.retime))],
    session: SessionDep,
    client: ClientDep,
) -> DecisionView:
    return await _decide(request_id, caller, session, client, "retime", body)
