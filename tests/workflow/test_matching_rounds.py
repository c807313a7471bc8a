"""Issue 5 timers on the time-skipping server: a missed agenda cut-off rolls over to the next meeting,
and a request ROCB A/P could not match waits for the next donor round, then returns to matching."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.db.models import MeetingRow
from taflow.domain.enums import InvitationStatus, Stage
from taflow.domain.models import AsecDecision, InvitationResponse, RocbDecision
from taflow.settings import Settings
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REVIEWER, ROCB, clear_suspected_duplicates
from tests.workflow.timeskip import Handle, running_worker, start, wait_for

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


pytestmark = pytest.mark.usefixtures("ts_worker")


async def to_matching(env: WorkflowEnvironment, handle: Handle) -> None:
    await wait_for(env, handle, lambda s: s.stage is Stage.asec_review)
    await clear_suspected_duplicates(handle, signal=True)
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)
    )
    await wait_for(env, handle, lambda s: s.stage is Stage.rocb_matching and s.match is not None)


async def test_missed_cutoff_rolls_over_to_the_next_meeting(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    record_history: Recorder,
) -> None:
    env = time_skipping_env
    today = (await env.get_current_time()).date()
    soon, later = f"CUT-{task_queue}-A", f"CUT-{task_queue}-B"
    async with sessionmaker.begin() as s:
        for mid, cut in ((soon, 1), (later, 60)):
            await s.execute(
                insert(MeetingRow).values(
                    id=mid,
                    body="CCWG",
                    number=100 + cut,
                    starts_on=today + timedelta(days=cut + 30),
                    ends_on=today + timedelta(days=cut + 32),
                    place="Bangkok",
                    agenda_cutoff=today + timedelta(days=cut),
                )
            )
    handle = await start(env, task_queue, f"CUT-{task_queue[-6:]}", member_state="MM")
    await to_matching(env, handle)
    state = await handle.query(TARequestWorkflow.status)
    assert state.match is not None and state.match.meeting is not None and state.match.meeting.id == soon
    await handle.signal(TARequestWorkflow.rocb_match_signal, RocbDecision(decision="match", actor=ROCB))
    state = await wait_for(env, handle, lambda s: s.invitation is not None)
    await env.sleep(timedelta(days=2, hours=1))  # the expert is still thinking when the cut-off passes
    state = await wait_for(env, handle, lambda s: "meeting_rolled_over" in [e.kind for e in s.events])
    assert state.match is not None and state.match.meeting is not None
    assert state.match.meeting.agenda_cutoff > today + timedelta(days=1)
    assert state.invitation is not None and state.invitation.meeting == state.match.meeting
    assert state.stage is Stage.expert_invitation  # the same invitation goes on, for the next meeting
    child = env.client.get_workflow_handle(f"ta-invitation-{state.invitation.id}")
    await child.signal("response", InvitationResponse(accept=True, actor=ROCB))
    state = await wait_for(env, handle, lambda s: s.stage is Stage.scheduled)
    assert state.invitations[-1].status is InvitationStatus.accepted
    await record_history(handle, "matching-cutoff-rolled-over")


async def test_no_match_waits_for_the_next_donor_round(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"ROUND-{task_queue[-6:]}", member_state="ID")
    await to_matching(env, handle)
    await handle.signal(
        TARequestWorkflow.rocb_match_signal, RocbDecision(decision="no_match", comment="no fund", actor=ROCB)
    )
    state = await wait_for(env, handle, lambda s: s.stage is Stage.on_hold and s.donor_round_at is not None)
    assert state.donor_round_at is not None and state.sla_due_at == state.donor_round_at
    await env.sleep(state.donor_round_at - await env.get_current_time() + timedelta(hours=1))
    state = await wait_for(env, handle, lambda s: s.stage is Stage.rocb_matching and s.match is not None)
    kinds = [e.kind for e in state.events]
    assert kinds.index("no_match") < kinds.index("donor_round_opened") < len(kinds) - 1
    assert kinds[-1] == "match_proposed"  # a fresh proposal for the new round
    await record_history(handle, "matching-no-match-next-round")


async def test_override_needs_a_reason(time_skipping_env: WorkflowEnvironment, task_queue: str) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"OVR-{task_queue[-6:]}", member_state="PH")
    await to_matching(env, handle)
    state = await handle.query(TARequestWorkflow.status)
    assert state.match is not None
    outsider = "WT-EXP-1" if state.match.candidates[0].expert_id != "WT-EXP-1" else "WT-EXP-3"
    await handle.signal(
        TARequestWorkflow.rocb_match_signal, RocbDecision(decision="match", expert_ids=[outsider], actor=ROCB)
    )
    state = await wait_for(env, handle, lambda s: "refused" in [e.kind for e in s.events])
    assert state.stage is Stage.rocb_matching and "reason" in state.events[-1].comment
    await handle.signal(
        TARequestWorkflow.rocb_match_signal,
        RocbDecision(decision="match", expert_ids=[outsider], comment="speaks Tagalog", actor=ROCB),
    )
    state = await wait_for(env, handle, lambda s: s.stage is Stage.expert_invitation)
    confirmed = [e for e in state.events if e.kind == "match_confirmed"][-1]
    assert confirmed.data["override"] is True and confirmed.comment == "speaks Tagalog"
