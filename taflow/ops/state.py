"""A request's own state, straight from its workflow, whether it is running or closed."""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, WorkflowExecutionDescription, WorkflowExecutionStatus

from taflow.domain.models import RequestState
from taflow.temporal import workflow_id

REQUEST_PREFIX = "ta-request-"
INVITATION_PREFIX = "ta-invitation-"
QUERY_TIMEOUT = timedelta(seconds=10)


def resolve_workflow_id(ref: str) -> str:
    """A request id (TA-2026-000042) or a workflow id (ta-request-..., ta-invitation-...)."""
    return ref if ref.startswith((REQUEST_PREFIX, INVITATION_PREFIX)) else workflow_id(ref)


def request_id_of(wf_id: str) -> str:
    return wf_id.removeprefix(REQUEST_PREFIX)


async def fetch_state(
    client: Client, wf_id: str, description: WorkflowExecutionDescription | None = None
) -> RequestState:
    """The latest run's state: a completed run's result (no worker needed), else the `status` query
    (a worker answers it, replaying the workflow if it has closed otherwise)."""
    handle = client.get_workflow_handle(wf_id)
    description = description or await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    if description.status is WorkflowExecutionStatus.COMPLETED:
        closed = client.get_workflow_handle(wf_id, run_id=description.run_id, result_type=RequestState)
        result: RequestState = await closed.result(follow_runs=False, rpc_timeout=QUERY_TIMEOUT)
        return result
    state: RequestState = await handle.query("status", result_type=RequestState, rpc_timeout=QUERY_TIMEOUT)
    return state
