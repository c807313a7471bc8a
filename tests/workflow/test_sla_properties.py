"""Property: whatever decisions arrive and however long people wait, a request ends in a terminal
stage or waits at a named stage with a due date, and its audit trail agrees with its stage history."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.domain.enums import InvitationStatus, Stage
from taflow.domain.models import (
    Amendment,
    AsecDecision,
    Cancellation,
    Completion,
    Hold,
    RequestState,
    Resumption,
    RocbDecision,
    Withdrawal,
)
from taflow.settings import Settings
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REQUESTER_LA, REVIEWER, ROCB, draft
from tests.workflow.timeskip import Handle, running_worker, start

REQUESTER = REQUESTER_LA
CLOCKED = {Stage.asec_review, Stage.changes_requested, Stage.rocb_matching, Stage.awaiting_report}
SERIAL = itertools.count(1)


async def decide(handle: Handle, name: str) -> None:
    signals: dict[str, tuple[Any, Any]] = {
        "approve": (TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)),
        "reject": (
            TARequestWorkflow.asec_review_signal,
            AsecDecision(decision="reject", comment="no", actor=REVIEWER),
        ),
        "request_changes": (
            TARequestWorkflow.asec_review_signal,
            AsecDecision(decision="request_changes", comment="more", actor=REVIEWER),
        ),
        "amend": (TARequestWorkflow.amend_signal, Amendment(draft=draft(), actor=REQUESTER)),
        "match": (
            TARequestWorkflow.rocb_match_signal,
            RocbDecision(decision="match", expert_ids=["WT-EXP-2"], comment="override", actor=ROCB),
        ),
        "no_match": (TARequestWorkflow.rocb_match_signal, RocbDecision(decision="no_match", actor=ROCB)),
        "resume": (TARequestWorkflow.resume_signal, Resumption(actor=ROCB)),
        "complete": (
            TARequestWorkflow.complete_signal,
            Completion(report="done", delivered_on=date(2031, 1, 1), actor=ROCB),
        ),
        "withdraw": (
            TARequestWorkflow.withdraw_signal,
            Withdrawal(reason="no longer needed", actor=REQUESTER),
        ),
        "cancel": (TARequestWorkflow.cancel_signal, Cancellation(reason="ASEC", actor=REVIEWER)),
        "hold": (TARequestWorkflow.hold_signal, Hold(hold=True, actor=REVIEWER)),
        "release": (TARequestWorkflow.hold_signal, Hold(hold=False, actor=REVIEWER)),
    }
    signal, arg = signals[name]
    try:
        await handle.signal(signal, arg)
    except RPCError as closed:  # the request has ended: later decisions have nowhere to go
        assert closed.status is RPCStatusCode.NOT_FOUND


DECISIONS = [
    "approve", "reject", "request_changes", "amend", "match", "no_match", "resume", "complete",
    "withdraw", "cancel", "hold", "release",
]  # fmt: skip
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=25)),
        st.tuples(st.just("decide"), st.sampled_from(DECISIONS)),
    ),
    min_size=1,
    max_size=7,
)


def check_waiting(state: RequestState) -> None:
    if state.stage.is_terminal:
        return
    if state.stage in CLOCKED and not state.held:
        assert state.sla_due_at is not None, f"{state.stage} waits without a due date"
    if state.stage is Stage.expert_invitation:
        assert state.invitation is not None and state.invitation.status is InvitationStatus.pending
        assert state.invitation.respond_by is not None
    if state.stage is Stage.scheduled:
        assert state.match is not None and state.match.meeting is not None


def check_trail(state: RequestState) -> None:
    assert state.events[0].kind == "submitted"
    assert [e.seq for e in state.events] == list(range(1, len(state.events) + 1))
    current: Stage | None = None
    for e in state.events:
        if e.to_stage is not None:
            assert e.from_stage == current, f"event {e.seq} {e.kind} leaves {e.from_stage}, was at {current}"
            current = e.to_stage
        if current is not None and current.is_terminal:
            assert e.to_stage == current or e.kind in ("refused",), "nothing moves after a terminal stage"
    assert current == state.stage


@pytest.fixture
async def ts_worker(
    time_skipping_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
) -> AsyncIterator[Worker]:
    async for w in running_worker(time_skipping_env, sessionmaker, task_queue, Settings()):
        yield w


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS)
async def test_any_sequence_ends_or_waits_with_a_due_date(
    steps: list[tuple[str, Any]], time_skipping_env: WorkflowEnvironment, task_queue: str, ts_worker: Worker
) -> None:
    env = time_skipping_env
    handle = await start(env, task_queue, f"PROP-{task_queue[-6:]}-{next(SERIAL)}", member_state="LA")
    await env.sleep(timedelta(seconds=5))
    for kind, value in steps:
        if kind == "wait":
            await env.sleep(timedelta(days=value, hours=1))
        else:
            await decide(handle, value)
            await env.sleep(timedelta(seconds=5))
    await env.sleep(timedelta(seconds=5))
    state = await handle.query(TARequestWorkflow.status)
    check_waiting(state)
    check_trail(state)
