"""Helpers for tests on the time-skipping server (it has no visibility and handles updates poorly:
decisions go in as signals, and every started workflow is terminated after its test)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.domain.enums import Role, Stage
from taflow.domain.models import Actor, NewRequest, RequestState
from taflow.settings import Settings
from taflow.temporal import invitation_workflow_id, workflow_id
from taflow.worker import build_worker
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import draft

Handle = WorkflowHandle[TARequestWorkflow, RequestState]
STARTED: list[Handle] = []


async def running_worker(
    env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    settings: Settings,
) -> AsyncIterator[Worker]:
    async with build_worker(env.client, sessionmaker, task_queue, settings) as w:
        yield w
        await end_started(env)


async def end_started(env: WorkflowEnvironment) -> None:
    """A workflow left running on a queue without a worker would stall time skipping for later tests;
    the test server does not apply parent-close policies either, so invitations end explicitly."""
    for handle in STARTED:
        with contextlib.suppress(RPCError):
            state = await handle.query(TARequestWorkflow.status)
            for inv in state.invitations:
                with contextlib.suppress(RPCError):  # already answered or expired
                    await env.client.get_workflow_handle(invitation_workflow_id(inv.id)).terminate(
                        "test over"
                    )
        with contextlib.suppress(RPCError):  # already closed
            await handle.terminate("test over")
    STARTED.clear()


async def start(env: WorkflowEnvironment, task_queue: str, rid: str, **request: Any) -> Handle:
    new = NewRequest(
        request_id=rid,
        member_state=(state := request.pop("member_state", "KH")),
        draft=draft(**request.pop("draft", {})),
        submitted_by=Actor(subject=state.lower(), organisation=state, role=Role.requester),
        submitted_at=await env.get_current_time(),
        **request,
    )
    handle = await env.client.start_workflow(
        TARequestWorkflow.run, new, id=workflow_id(rid), task_queue=task_queue
    )
    STARTED.append(handle)
    return handle


async def wait_stage(env: WorkflowEnvironment, handle: Handle, stage: Stage) -> RequestState:
    for _ in range(200):
        state = await handle.query(TARequestWorkflow.status)
        if state.stage is stage:
            return state
        await env.sleep(timedelta(seconds=1))
    raise AssertionError(f"never reached {stage}; at {state.stage}")


async def wait_for(env: WorkflowEnvironment, handle: Handle, check: Any) -> RequestState:
    for _ in range(200):
        state = await handle.query(TARequestWorkflow.status)
        if check(state):
            return state
        await env.sleep(timedelta(seconds=1))
    raise AssertionError(f"condition never held; at {state.stage}")
