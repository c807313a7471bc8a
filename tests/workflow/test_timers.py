"""Timer paths on the time-skipping test server: silence moves to the next expert, meetings get held."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.domain.enums import InvitationStatus, Role, Stage
from taflow.domain.models import Actor, AsecDecision, Completion, NewRequest, RequestState, RocbDecision
from taflow.settings import Settings
from taflow.temporal import workflow_id
from taflow.worker import build_worker
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REVIEWER, ROCB, draft

Handle = WorkflowHandle[TARequestWorkflow, RequestState]
Recorder = Callable[[WorkflowHandle[Any, Any], str], Awaitable[None]]


@pytest.fixture
async def ts_worker(
    time_skipping_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
) -> AsyncIterator[Worker]:
    async with build_worker(time_skipping_env.client, sessionmaker, task_queue, Settings()) as w:
        yield w


async def start(env: WorkflowEnvironment, task_queue: str, rid: str) -> Handle:
    request = NewRequest(
        request_id=rid,
        member_state="KH",
        draft=draft(),
        submitted_by=Actor(subject="kh", organisation="KH", role=Role.requester),
        submitted_at=datetime.now(UTC),
    )
    return await env.client.start_workflow(
        TARequestWorkflow.run, request, id=workflow_id(rid), task_queue=task_queue
    )


async def wait_stage(env: WorkflowEnvironment, handle: Handle, stage: Stage) -> RequestState:
    for _ in range(200):
        state = await handle.query(TARequestWorkflow.status)
        if state.stage is stage:
            return state
        await env.sleep(timedelta(seconds=1))
    raise AssertionError(f"never reached {stage}; at {state.stage}")


async def to_invitation(env: WorkflowEnvironment, handle: Handle, experts: list[str]) -> None:
    await wait_stage(env, handle, Stage.asec_review)
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)
    )
    state = await wait_stage(env, handle, Stage.rocb_matching)
    while state.match is None:
        await env.sleep(timedelta(seconds=1))
        state = await handle.query(TARequestWorkflow.status)
    await handle.signal(
        TARequestWorkflow.rocb_match_signal, RocbDecision(decision="match", expert_ids=experts, actor=ROCB)
    )
    await wait_stage(env, handle, Stage.expert_invitation)


async def test_silence_moves_to_next_expert_then_back_to_matching(
    time_skipping_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"TS-{task_queue}-1")
    await to_invitation(env, handle, ["WT-EXP-2", "WT-EXP-3"])
    await env.sleep(timedelta(days=7, hours=1))
    state = await handle.query(TARequestWorkflow.status)
    assert state.invitations[0].status is InvitationStatus.expired
    assert state.invitation is not None and state.invitation.expert_id == "WT-EXP-3"
    await env.sleep(timedelta(days=7, hours=1))
    state = await wait_stage(env, handle, Stage.rocb_matching)
    assert [i.status for i in state.invitations] == [InvitationStatus.expired, InvitationStatus.expired]
    assert "no_expert_left" in [e.kind for e in state.events]
    await record_history(handle, "request-invitations-expired")


async def test_accepted_request_waits_for_meeting_then_report(
    time_skipping_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"TS-{task_queue}-2")
    await to_invitation(env, handle, ["WT-EXP-2"])
    expert = Actor(subject="WT-EXP-2", organisation="WCO", role=Role.expert)
    state = await handle.query(TARequestWorkflow.status)
    assert state.invitation is not None
    child = env.client.get_workflow_handle(f"ta-invitation-{state.invitation.id}")
    await child.signal("response", {"accept": True, "comment": "glad to", "actor": expert.model_dump()})
    state = await wait_stage(env, handle, Stage.scheduled)
    assert state.match is not None and state.match.meeting is not None
    meeting_end = state.match.meeting.ends_on
    gap = datetime.combine(meeting_end, datetime.min.time(), tzinfo=UTC) - datetime.now(UTC)
    await env.sleep(gap + timedelta(days=2))
    await wait_stage(env, handle, Stage.awaiting_report)
    await handle.signal(
        TARequestWorkflow.complete_signal,
        Completion(report="Presented at CCWG 90", delivered_on=date(2030, 3, 11), actor=ROCB),
    )
    final = await handle.result()
    assert final.stage is Stage.completed
    assert [e.kind for e in final.events][-2:] == ["meeting_held", "completed"]
    await record_history(handle, "request-meeting-held-completed")
