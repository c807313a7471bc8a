"""Decision signals that reach a request in one workflow task take turns (dev server, real worker)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle

from taflow.domain.enums import DedupVerdict, Stage
from taflow.domain.models import AsecDecision, RequestState
from taflow.settings import Settings
from taflow.worker import build_worker
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REVIEWER, clear_suspected_duplicates

Recorder = Callable[[WorkflowHandle[Any, Any], str], Awaitable[None]]


async def until(
    handle: WorkflowHandle[TARequestWorkflow, RequestState], check: Callable[[RequestState], bool]
) -> RequestState:
    async def poll() -> RequestState:
        while True:
            state = await handle.query(TARequestWorkflow.status)
            if check(state):
                return state
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), 30)


async def test_signals_that_arrive_together_take_turns(
    temporal_client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    roster: None,
    start_request: Callable[..., Any],
    record_history: Recorder,
) -> None:
    """No worker runs while two decisions are sent, so they reach the workflow in one task: the first
    asks the roster and acts; the second waits its turn, and its stage check then refuses it."""
    handle = await start_request()
    async with build_worker(temporal_client, sessionmaker, task_queue, Settings()):
        await until(handle, lambda s: s.stage is Stage.asec_review)
        await clear_suspected_duplicates(handle)
        await until(
            handle, lambda s: s.dedup is None or s.dedup.verdict is not DedupVerdict.duplicate_suspected
        )
    changes = AsecDecision(decision="request_changes", comment="add outcomes", actor=REVIEWER)
    approval = AsecDecision(decision="approve", actor=REVIEWER)
    await handle.signal(TARequestWorkflow.asec_review_signal, changes)
    await handle.signal(TARequestWorkflow.asec_review_signal, approval)
    async with build_worker(temporal_client, sessionmaker, task_queue, Settings()):
        state = await until(handle, lambda s: any(e.kind == "refused" for e in s.events))
    history = await handle.fetch_history()
    refused = [e for e in state.events if e.kind == "refused"]
    assert state.stage is Stage.changes_requested  # the first one sent acted
    assert len(refused) == 1 and refused[0].data["reason"] == "WrongStage"
    kinds = [e.WhichOneof("attributes") for e in history.events]
    signals = [i for i, k in enumerate(kinds) if k == "workflow_execution_signaled_event_attributes"]
    assert len(signals) == 2
    assert "workflow_task_started_event_attributes" not in kinds[signals[0] : signals[1]]  # one task
    asked = [
        e
        for e in history.events[signals[-1] :]
        if e.activity_task_scheduled_event_attributes.activity_type.name == "verify_actor"
    ]
    assert len(asked) == 1  # the second never reached the roster: it was checked after the first acted
    await record_history(handle, "request-signals-together-in-turn")
