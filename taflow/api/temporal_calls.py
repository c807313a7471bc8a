"""Workflow messages out, problems back: the one place that maps Temporal failures to HTTP.

Workflows refuse decisions with `ApplicationError(type=...)` from update validators, so a refused
decision never enters history and the API can answer 409/403/422 without a race.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from taflow.api.problems import ProblemError
from taflow.domain.models import NewRequest, RequestState
from taflow.temporal import workflow_id

log = logging.getLogger("taflow.api")

REQUEST_WORKFLOW = "TARequestWorkflow"
UPDATE_TIMEOUT = timedelta(seconds=20)
"""Updates answer once the read model shows the decision; longer means the worker is down."""
QUERY_TIMEOUT = timedelta(seconds=5)
START_TIMEOUT = timedelta(seconds=10)

FAILURE_KINDS = {
    "WrongStage": "wrong-stage",
    "DuplicateUnresolved": "duplicate-unresolved",
    "Forbidden": "forbidden",
    "InvalidDecision": "invalid-decision",
    "NotFound": "not-found",
}

R = TypeVar("R", bound=BaseModel)


def _unreachable(exc: RuntimeError) -> ProblemError:
    """A lazily connected client raises RuntimeError when the frontend cannot be reached."""
    log.warning("Temporal unreachable: %s", exc)
    return ProblemError("unavailable", "Temporal is unreachable; retry later")


def _rpc_problem(exc: RPCError) -> ProblemError:
    if exc.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
        return ProblemError("timeout", "Temporal did not answer in time")
    if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.RESOURCE_EXHAUSTED):
        return ProblemError("unavailable", "Temporal is unreachable; retry later")
    log.error("unexpected Temporal RPC error: %s (%s)", exc.message, exc.status)
    return ProblemError("internal-error", "unexpected Temporal error (logged)")


def request_memo(new_request: NewRequest) -> dict[str, Any]:
    """Shown in the Temporal UI beside the summary: whose request it is, under their own reference."""
    memo: dict[str, Any] = {
        "request_id": new_request.request_id,
        "member_state": new_request.member_state.value,
        "submitted_by": new_request.submitted_by.subject,
    }
    if new_request.draft.client_reference:
        memo["client_reference"] = new_request.draft.client_reference
    return memo


async def start_request(client: Client, new_request: NewRequest, task_queue: str) -> None:
    """Start the request's workflow; a repeat (retry, replay) maps to the existing one."""
    try:
        await client.start_workflow(
            REQUEST_WORKFLOW,
            new_request,
            id=workflow_id(new_request.request_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            static_summary=f"{new_request.request_id} ({new_request.member_state.value}): "
            f"{new_request.draft.title}"[:200],
            memo=request_memo(new_request),
            rpc_timeout=START_TIMEOUT,
        )
    except WorkflowAlreadyStartedError:
        return  # it ran and closed already: the same request, not a new one
    except (RPCError, RuntimeError) as exc:
        problem = _rpc_problem(exc) if isinstance(exc, RPCError) else _unreachable(exc)
        if problem.kind in ("timeout", "unavailable"):
            problem.detail = (
                f"{problem.detail}; the request id is reserved: retry with the same Idempotency-Key"
            )
        raise problem from exc


async def _closed_or_missing(
    handle: WorkflowHandle[Any, Any], closed_detail: str, missing_detail: str
) -> ProblemError:
    """An update/query hit NOT_FOUND: the workflow never existed (404) or has closed (409)."""
    try:
        description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return ProblemError("not-found", missing_detail)
        return _rpc_problem(exc)
    if description.status is not None and description.status is not WorkflowExecutionStatus.RUNNING:
        return ProblemError("wrong-stage", closed_detail)
    return ProblemError("not-found", missing_detail)


async def run_update(
    client: Client,
    wf_id: str,
    update: str,
    message: BaseModel,
    result_type: type[R],
    *,
    closed_detail: str = "the request is closed",
    missing_detail: str = "no such request",
) -> R:
    handle = client.get_workflow_handle(wf_id)
    try:
        result: R = await handle.execute_update(
            update, message, result_type=result_type, rpc_timeout=UPDATE_TIMEOUT
        )
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type in FAILURE_KINDS:
            raise ProblemError(FAILURE_KINDS[cause.type], cause.message) from exc
        log.error("update %s on %s failed unexpectedly", update, wf_id, exc_info=exc)
        raise ProblemError("internal-error", "the workflow failed the decision (logged)") from exc
    except WorkflowUpdateRPCTimeoutOrCancelledError as exc:
        raise ProblemError(
            "timeout", "the workflow did not confirm the decision in time; check the request before retrying"
        ) from exc
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise await _closed_or_missing(handle, closed_detail, missing_detail) from exc
        raise _rpc_problem(exc) from exc
    except RuntimeError as exc:
        raise _unreachable(exc) from exc


async def query_status(client: Client, request_id: str) -> RequestState | None:
    """The workflow's own view of a request (used while the read model has not caught up)."""
    handle = client.get_workflow_handle(workflow_id(request_id))
    try:
        state: RequestState = await handle.query(
            "status", result_type=RequestState, rpc_timeout=QUERY_TIMEOUT
        )
        return state
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            return None
        raise _rpc_problem(exc) from exc
    except RuntimeError as exc:
        raise _unreachable(exc) from exc
    except WorkflowQueryFailedError as exc:
        log.error("status query on %s failed", request_id, exc_info=exc)
        raise ProblemError("unavailable", "the request's workflow could not answer; retry later") from exc
