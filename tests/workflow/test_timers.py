"""Timer paths on the time-skipping test server: silence moves to the next expert, meetings get held."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.db.models import MeetingRow
from taflow.db.session import make_engine, make_sessionmaker
from taflow.devstack import free_port
from taflow.domain.enums import InvitationStatus, Role, Stage
from taflow.domain.models import Actor, AsecDecision, Completion, InvitationResponse, RocbDecision
from taflow.settings import Settings
from taflow.worker import build_worker
from taflow.workflows.invitation import ExpertInvitationWorkflow
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REVIEWER, ROCB, clear_suspected_duplicates
from tests.workflow.timeskip import Handle, end_started, running_worker, start, wait_for, wait_stage

Recorder = Callable[[WorkflowHandle[Any, Any], str], Awaitable[None]]


@pytest.fixture
async def ts_worker(
    time_skipping_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
) -> AsyncIterator[Worker]:
    async for w in running_worker(time_skipping_env, sessionmaker, task_queue, Settings()):
        yield w


async def to_invitation(env: WorkflowEnvironment, handle: Handle, experts: list[str]) -> None:
    await wait_stage(env, handle, Stage.asec_review)
    await clear_suspected_duplicates(handle, signal=True)
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)
    )
    state = await wait_stage(env, handle, Stage.rocb_matching)
    while state.match is None:
        await env.sleep(timedelta(seconds=1))
        state = await handle.query(TARequestWorkflow.status)
    await handle.signal(
        TARequestWorkflow.rocb_match_signal,
        RocbDecision(decision="match", expert_ids=experts, comment="chosen by ROCB", actor=ROCB),
    )
    await wait_for(env, handle, lambda s: s.stage is Stage.expert_invitation and s.invitation is not None)


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
    time_skipping_env: WorkflowEnvironment,
    ts_worker: Worker,
    task_queue: str,
    record_history: Recorder,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    env = time_skipping_env
    today = (await env.get_current_time()).date()  # the test server's clock moves with earlier tests
    async with sessionmaker.begin() as s:
        await s.execute(
            insert(MeetingRow).values(
                id=f"WT-CCWG-{task_queue}",
                body="CCWG",
                number=91,
                starts_on=today + timedelta(days=40),
                ends_on=today + timedelta(days=42),
                place="Vientiane",
                agenda_cutoff=today + timedelta(days=10),
            )
        )
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
    gap = datetime.combine(meeting_end, datetime.min.time(), tzinfo=UTC) - await env.get_current_time()
    await env.sleep(gap + timedelta(days=2))
    await wait_stage(env, handle, Stage.awaiting_report)
    await handle.signal(
        TARequestWorkflow.complete_signal,
        Completion(report="Presented at CCWG 91", delivered_on=today + timedelta(days=41), actor=ROCB),
    )
    final = await handle.result()
    assert final.stage is Stage.completed
    assert [e.kind for e in final.events][-2:] == ["meeting_held", "completed"]
    await record_history(handle, "request-meeting-held-completed")


async def test_an_answer_signalled_for_someone_off_the_roster_is_refused(
    time_skipping_env: WorkflowEnvironment, ts_worker: Worker, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"TS-{task_queue}-3")
    await to_invitation(env, handle, ["WT-EXP-2"])
    state = await handle.query(TARequestWorkflow.status)
    assert state.invitation is not None
    child = env.client.get_workflow_handle_for(
        ExpertInvitationWorkflow.run, f"ta-invitation-{state.invitation.id}"
    )
    # a role that may answer for the expert, but no credential: only the roster can refuse it
    impostor = Actor(subject="rocb-nobody", organisation="ROCB-AP", role=Role.rocb_officer)
    await child.signal(
        ExpertInvitationWorkflow.response_signal, InvitationResponse(accept=True, actor=impostor)
    )
    await env.sleep(timedelta(minutes=1))  # long enough for the roster to answer
    assert (await child.query(ExpertInvitationWorkflow.status)).status is InvitationStatus.pending
    expert = Actor(subject="WT-EXP-2", organisation="WCO", role=Role.expert)
    await child.signal(
        ExpertInvitationWorkflow.response_signal, InvitationResponse(accept=False, actor=expert)
    )
    outcome = await child.result()
    assert outcome.status is InvitationStatus.declined and outcome.responded_by == expert
    history = await child.fetch_history()
    asked = [
        e.activity_task_scheduled_event_attributes.input
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "verify_actor"
    ]
    assert len(asked) == 2  # the impostor was asked about, and refused; then the expert
    await record_history(child, "invitation-impostor-refused")


async def test_a_signal_is_refused_when_the_roster_cannot_be_read(
    time_skipping_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
    record_history: Recorder,
) -> None:
    """The credentials' database does not answer: the decision waits out ROSTER_DEADLINE, is refused
    as `RosterUnavailable` (ops send it again), and the request stays where it was."""
    env = time_skipping_env
    nowhere = make_engine(f"postgresql+asyncpg://taflow@127.0.0.1:{free_port()}/taflow", pre_ping=False)
    handle = await start(env, task_queue, f"TS-{task_queue}-5")
    try:
        async with build_worker(
            env.client, sessionmaker, task_queue, Settings(), credentials=make_sessionmaker(nowhere)
        ):
            await wait_stage(env, handle, Stage.asec_review)
            await handle.signal(
                TARequestWorkflow.asec_review_signal,
                AsecDecision(decision="reject", comment="out of scope", actor=REVIEWER),
            )
            state = await wait_for(env, handle, lambda s: any(e.kind == "refused" for e in s.events))
            await end_started(env)
    finally:
        await nowhere.dispose()
    refused = [e for e in state.events if e.kind == "refused"]
    assert len(refused) == 1 and refused[0].data["reason"] == "RosterUnavailable"
    assert state.stage is Stage.asec_review
    await record_history(handle, "request-signal-roster-unavailable")
