"""Every SLA policy path on the time-skipping server: reminders, escalation, expiry, the clock that
stops while the requester amends, hold and release, and a policy edit that leaves running requests be."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from taflow.domain.enums import Stage
from taflow.domain.models import Amendment, AsecDecision, Hold, Retiming
from taflow.settings import Settings
from taflow.sla.calendar import add_working_days, working_days_between
from taflow.sla.policy import DEFAULT_POLICY_FILE
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import OPS, REQUESTER_SG, REVIEWER, clear_suspected_duplicates, draft
from tests.workflow.timeskip import Handle, running_worker, start, wait_for, wait_stage

Recorder = Callable[[WorkflowHandle[Any, Any], str], Awaitable[None]]
REQUESTER = REQUESTER_SG


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "sla.toml"
    path.write_text(DEFAULT_POLICY_FILE.read_text())
    return path


@pytest.fixture
async def ts_worker(
    time_skipping_env: WorkflowEnvironment,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
    policy_file: Path,
) -> AsyncIterator[Worker]:
    settings = Settings(sla_policy_file=policy_file)
    async for w in running_worker(time_skipping_env, sessionmaker, task_queue, settings):
        yield w


STATE_OF_TEST = {"remind": "BN", "escalate": "MY", "expire": "PH", "pause": "SG", "hold": "TH", "edit": "VN"}
"""One member state per test, so no earlier test request is a suspected duplicate (5-day policy)."""


async def in_review(env: WorkflowEnvironment, task_queue: str, name: str) -> Handle:
    member_state = STATE_OF_TEST[name]
    handle = await start(env, task_queue, f"SLA-{task_queue[-6:]}-{name}", member_state=member_state)
    await wait_for(env, handle, lambda s: s.stage is Stage.asec_review and s.clock is not None)
    return handle


def kinds(state: Any) -> list[str]:
    return [e.kind for e in state.events]


pytestmark = pytest.mark.usefixtures("ts_worker")


async def test_reminder_then_answer(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "remind")
    state = await handle.query(TARequestWorkflow.status)
    assert state.clock is not None and state.clock.reminder_at is not None
    assert state.sla_due_at == state.clock.due_at
    await env.sleep(state.clock.reminder_at - await env.get_current_time() + timedelta(hours=1))
    state = await wait_for(env, handle, lambda s: "reminder" in kinds(s))
    assert "escalated" not in kinds(state)
    await clear_suspected_duplicates(handle, signal=True)
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)
    )
    state = await wait_for(env, handle, lambda s: s.stage is Stage.rocb_matching and s.clock is not None)
    assert state.clock is not None and state.clock.policy_key == "rocb_matching"
    assert not state.escalated
    await record_history(handle, "sla-reminder-then-answer")


async def test_escalation_to_the_head_of_division(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "escalate")
    state = await handle.query(TARequestWorkflow.status)
    assert state.clock is not None
    await env.sleep(state.clock.due_at - await env.get_current_time() + timedelta(hours=1))
    state = await wait_for(env, handle, lambda s: s.escalated)
    escalation = [e for e in state.events if e.kind == "escalated"]
    assert len(escalation) == 1 and escalation[0].data["escalate_to"] == "asec_head"
    assert kinds(state).index("reminder") < kinds(state).index("escalated")
    assert state.stage is Stage.asec_review  # escalation does not decide for anyone
    await record_history(handle, "sla-escalated")


async def test_changes_requested_expires(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "expire")
    await handle.signal(
        TARequestWorkflow.asec_review_signal,
        AsecDecision(decision="request_changes", comment="add outcomes", actor=REVIEWER),
    )
    state = await wait_for(env, handle, lambda s: s.stage is Stage.changes_requested and s.clock is not None)
    assert state.clock is not None and state.clock.owner == "PH"
    await env.sleep(state.clock.due_at - await env.get_current_time() + timedelta(hours=1))
    final = await handle.result()
    assert final.stage is Stage.expired
    assert kinds(final)[-2:] == ["reminder", "expired"]
    await record_history(handle, "sla-changes-requested-expired")


async def test_review_clock_stops_while_the_requester_amends(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "pause")
    first = (await handle.query(TARequestWorkflow.status)).clock
    assert first is not None
    await env.sleep(timedelta(days=3))
    await handle.signal(
        TARequestWorkflow.asec_review_signal,
        AsecDecision(decision="request_changes", comment="add outcomes", actor=REVIEWER),
    )
    state = await wait_stage(env, handle, Stage.changes_requested)
    paused = state.paused_clocks["asec_review"]
    assert paused.paused_at is not None
    await env.sleep(timedelta(days=6))  # the requester takes six calendar days
    amended_at = await env.get_current_time()
    await handle.signal(
        TARequestWorkflow.amend_signal,
        Amendment(
            draft=draft(title="Diagnostic mission on risk management, outcomes added"), actor=REQUESTER
        ),
    )
    state = await wait_for(env, handle, lambda s: s.stage is Stage.asec_review and s.clock is not None)
    assert state.clock is not None and state.clock.started_at == first.started_at
    left = working_days_between(paused.paused_at, first.due_at, "ID")
    expected = add_working_days(amended_at, left, "ID")
    # the new due date is the old one plus the time the requester took, to the working day
    assert abs((state.clock.due_at - expected).total_seconds()) < 120
    assert state.clock.due_at > first.due_at
    await record_history(handle, "sla-clock-stopped-across-changes")


async def test_hold_and_release(
    time_skipping_env: WorkflowEnvironment, task_queue: str, record_history: Recorder
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "hold")
    first = (await handle.query(TARequestWorkflow.status)).clock
    assert first is not None
    await handle.signal(
        TARequestWorkflow.hold_signal, Hold(hold=True, comment="budget review", actor=REVIEWER)
    )
    state = await wait_for(env, handle, lambda s: s.held and s.clock is not None and s.clock.paused_at)
    assert state.sla_due_at is None
    await env.sleep(timedelta(days=30))
    state = await handle.query(TARequestWorkflow.status)
    assert "reminder" not in kinds(state) and "escalated" not in kinds(state)
    await handle.signal(TARequestWorkflow.hold_signal, Hold(hold=False, actor=REVIEWER))
    state = await wait_for(env, handle, lambda s: not s.held and s.sla_due_at is not None)
    assert state.clock is not None and state.clock.due_at > first.due_at + timedelta(days=25)
    assert kinds(state).count("held") == 1 and kinds(state).count("released") == 1
    await record_history(handle, "sla-hold-release")


async def test_policy_edit_leaves_running_requests_until_retimed(
    time_skipping_env: WorkflowEnvironment, task_queue: str, policy_file: Path
) -> None:
    env = time_skipping_env
    handle = await in_review(env, task_queue, "edit")
    before = (await handle.query(TARequestWorkflow.status)).clock
    assert before is not None and before.policy.due == 10
    policy_file.write_text(
        policy_file.read_text().replace("[policies.asec_review]\ndue = 10", "[policies.asec_review]\ndue = 3")
    )
    await env.sleep(timedelta(days=1))
    state = await handle.query(TARequestWorkflow.status)
    assert state.clock == before  # the recorded policy stands
    await handle.signal(TARequestWorkflow.retime_signal, Retiming(comment="new policy applies", actor=OPS))
    state = await wait_for(env, handle, lambda s: "retimed" in kinds(s))
    assert state.clock is not None and state.clock.policy.due == 3
    assert state.clock.started_at == before.started_at and state.clock.due_at < before.due_at
