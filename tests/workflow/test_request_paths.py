"""Every path of a request, on the dev server (updates) with a real worker and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from taflow.db.models import ExpertRow, RequestEventRow, RequestRow
from taflow.domain.enums import InvitationStatus, Stage
from taflow.domain.models import (
    Actor,
    Amendment,
    AsecDecision,
    Cancellation,
    Completion,
    InvitationResponse,
    RequestState,
    RocbDecision,
    Withdrawal,
)
from taflow.temporal import invitation_workflow_id
from taflow.workflows.invitation import ExpertInvitationWorkflow
from taflow.workflows.request import TARequestWorkflow
from tests.workflow.conftest import REVIEWER, ROCB, clear_suspected_duplicates, draft

Handle = WorkflowHandle[TARequestWorkflow, RequestState]
Recorder = Callable[[WorkflowHandle[Any, Any], str], Awaitable[None]]
pytestmark = pytest.mark.usefixtures("worker")


async def until_stage(handle: Handle, stage: Stage, seconds: float = 15) -> RequestState:
    async def poll() -> RequestState:
        while True:
            state = await handle.query(TARequestWorkflow.status)
            if state.stage is stage:
                return state
            await asyncio.sleep(0.05)

    return await asyncio.wait_for(poll(), seconds)


async def until_projected(
    handle: Handle, stage: Stage, sessionmaker: async_sessionmaker[AsyncSession], seconds: float = 15
) -> RequestState:
    """At `stage`, and the read model shows it: what a later request's dedup check reads."""
    state = await until_stage(handle, stage, seconds)
    rid = handle.id.removeprefix("ta-request-")

    async def poll() -> None:
        while True:
            async with sessionmaker() as s:
                version = await s.scalar(select(RequestRow.version).where(RequestRow.id == rid))
            if version is not None and version >= state.version:
                return
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), seconds)
    return state


def requester(state: RequestState) -> Any:
    return state.submitted_by


async def approve(handle: Handle) -> None:
    await until_stage(handle, Stage.asec_review)
    await clear_suspected_duplicates(handle)
    result = await handle.execute_update(
        TARequestWorkflow.review, AsecDecision(decision="approve", comment="aligned", actor=REVIEWER)
    )
    assert result.stage is Stage.rocb_matching


async def announced_once_started(handle: Handle, invitation_ids: list[str]) -> None:
    """No projection names an invitation before its workflow has started: whoever reads it in the
    read model can answer it at once."""
    started: set[str] = set()
    announced: set[str] = set()
    for event in (await handle.fetch_history()).events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            started.add(
                event.child_workflow_execution_started_event_attributes.workflow_execution.workflow_id
            )
        scheduled = event.activity_task_scheduled_event_attributes
        if event.HasField("activity_task_scheduled_event_attributes") and (
            scheduled.activity_type.name == "project_request"
        ):
            data = b"".join(p.data for p in scheduled.input.payloads)
            for iid in invitation_ids:
                if f'"{iid}"'.encode() in data:
                    assert invitation_workflow_id(iid) in started, (
                        f"{iid} projected before its workflow started"
                    )
                    announced.add(iid)
    assert announced == set(invitation_ids)


async def test_approve_match_decline_next_accept_complete(
    start_request: Callable[..., Any],
    temporal_client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    record_history: Recorder,
) -> None:
    handle = await start_request()
    await approve(handle)
    state = await until_stage(handle, Stage.rocb_matching)
    while state.match is None:
        state = await handle.query(TARequestWorkflow.status)
    candidates = state.match.candidates
    assert candidates, "a risk-management request finds experts"
    assert [c.score for c in candidates] == sorted((c.score for c in candidates), reverse=True)
    async with sessionmaker() as s:
        homes = {e.id: e.home_administration for e in (await s.execute(select(ExpertRow))).scalars()}
    assert all(homes[c.expert_id] != "KH" for c in candidates)  # conflict of interest
    assert all(any(r.startswith("topic fit") for r in c.reasons) for c in candidates)
    await handle.execute_update(
        TARequestWorkflow.match,
        RocbDecision(
            decision="match", actor=ROCB, expert_ids=["WT-EXP-2", "WT-EXP-3"], comment="Khmer-speaking first"
        ),
    )
    state = await until_stage(handle, Stage.expert_invitation)
    first = state.invitation
    assert first is not None and first.expert_id == "WT-EXP-2"
    inv = temporal_client.get_workflow_handle_for(
        ExpertInvitationWorkflow.run, invitation_workflow_id(first.id)
    )
    await inv.execute_update(
        ExpertInvitationWorkflow.respond, InvitationResponse(accept=False, comment="busy", actor=ROCB)
    )

    async def second_invited() -> str:
        while True:
            s = await handle.query(TARequestWorkflow.status)
            if s.invitation and s.invitation.expert_id == "WT-EXP-3":
                return s.invitation.id
            await asyncio.sleep(0.05)

    second = await asyncio.wait_for(second_invited(), 15)
    inv2 = temporal_client.get_workflow_handle_for(
        ExpertInvitationWorkflow.run, invitation_workflow_id(second)
    )
    expert = ROCB.model_copy(update={"subject": "WT-EXP-3", "organisation": "WCO", "role": "expert"})
    outcome = await inv2.execute_update(
        ExpertInvitationWorkflow.respond, InvitationResponse(accept=True, actor=expert)
    )
    assert outcome.status is InvitationStatus.accepted
    state = await until_stage(handle, Stage.scheduled)
    assert [i.status for i in state.invitations] == [InvitationStatus.declined, InvitationStatus.accepted]
    done = await handle.execute_update(
        TARequestWorkflow.completion,
        Completion(report="Delivered at CCWG", delivered_on=date(2030, 3, 11), actor=ROCB),
    )
    assert done.stage is Stage.completed
    final = await handle.result()
    kinds = [e.kind for e in final.events]
    assert kinds[:3] == ["submitted", "dedup_started", "dedup_checked"]
    assert "invitation_declined" in kinds and "expert_accepted" in kinds and kinds[-1] == "completed"
    async with sessionmaker() as s:
        row = await s.get(RequestRow, final.request_id)
        events = (
            (
                await s.execute(
                    select(RequestEventRow)
                    .where(RequestEventRow.request_id == final.request_id)
                    .order_by(RequestEventRow.seq)
                )
            )
            .scalars()
            .all()
        )
    assert row is not None and row.stage == "completed"
    assert [e.kind for e in events] == kinds
    await announced_once_started(handle, [first.id, second])
    await record_history(handle, "request-decline-next-accept-complete")
    await record_history(inv, "invitation-declined")
    await record_history(inv2, "invitation-accepted")


async def test_reject(start_request: Callable[..., Any], record_history: Recorder) -> None:
    handle = await start_request()
    await until_stage(handle, Stage.asec_review)
    r = await handle.execute_update(
        TARequestWorkflow.review, AsecDecision(decision="reject", comment="out of scope", actor=REVIEWER)
    )
    assert r.stage is Stage.rejected
    assert (await handle.result()).stage is Stage.rejected
    await record_history(handle, "request-rejected")


async def test_request_changes_then_amend_reruns_dedup(
    start_request: Callable[..., Any], record_history: Recorder
) -> None:
    handle = await start_request(client_reference="KH-TA-1")
    await until_stage(handle, Stage.asec_review)
    await handle.execute_update(
        TARequestWorkflow.review,
        AsecDecision(decision="request_changes", comment="add outcomes", actor=REVIEWER),
    )
    state = await until_stage(handle, Stage.changes_requested)
    amended = draft(
        title="Diagnostic mission on risk management with expected outcomes", client_reference="KH-TA-1b"
    )
    await handle.execute_update(
        TARequestWorkflow.amendment,
        Amendment(draft=amended, comment="outcomes added", actor=requester(state)),
    )
    state = await until_stage(handle, Stage.asec_review)
    assert state.draft.title == amended.title
    assert [e.kind for e in state.events].count("dedup_checked") == 2
    assert await (await handle.describe()).memo_value("client_reference") == "KH-TA-1b"  # ops see the new one
    await record_history(handle, "request-changes-amended")


async def test_wrong_stage_and_wrong_role_are_rejected_before_history(
    start_request: Callable[..., Any],
) -> None:
    handle = await start_request()
    await until_stage(handle, Stage.asec_review)
    with pytest.raises(WorkflowUpdateFailedError) as wrong_stage:
        await handle.execute_update(TARequestWorkflow.match, RocbDecision(decision="no_match", actor=ROCB))
    assert (
        isinstance(wrong_stage.value.cause, ApplicationError) and wrong_stage.value.cause.type == "WrongStage"
    )
    with pytest.raises(WorkflowUpdateFailedError) as wrong_role:
        await handle.execute_update(TARequestWorkflow.review, AsecDecision(decision="approve", actor=ROCB))
    assert isinstance(wrong_role.value.cause, ApplicationError) and wrong_role.value.cause.type == "Forbidden"
    state = await handle.query(TARequestWorkflow.status)
    assert state.stage is Stage.asec_review


async def test_duplicate_confirmed(
    start_request: Callable[..., Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    record_history: Recorder,
) -> None:
    first = await start_request()
    await until_projected(first, Stage.asec_review, sessionmaker)
    second = await start_request()
    state = await until_stage(second, Stage.asec_review)
    assert state.dedup is not None
    assert first.id.removeprefix("ta-request-") in [c.id for c in state.dedup.candidates]
    r = await second.execute_update(
        TARequestWorkflow.review,
        AsecDecision(decision="duplicate", duplicate_of=first.id.removeprefix("ta-request-"), actor=REVIEWER),
    )
    assert r.stage is Stage.duplicate
    assert (await second.result()).duplicate_of == first.id.removeprefix("ta-request-")
    await record_history(second, "request-duplicate")


async def test_consolidate_adds_beneficiary_to_survivor(
    start_request: Callable[..., Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    record_history: Recorder,
) -> None:
    survivor = await start_request("KH")
    await until_projected(survivor, Stage.asec_review, sessionmaker)
    other = await start_request("LA")
    await until_stage(other, Stage.asec_review)
    survivor_id = survivor.id.removeprefix("ta-request-")
    r = await other.execute_update(
        TARequestWorkflow.review,
        AsecDecision(
            decision="consolidate",
            consolidate_into=survivor_id,
            comment="one regional workshop",
            actor=REVIEWER,
        ),
    )
    assert r.stage is Stage.consolidated

    async def joined() -> RequestState:
        while True:
            s = await survivor.query(TARequestWorkflow.status)
            if "LA" in s.beneficiaries:
                return s
            await asyncio.sleep(0.05)

    s = await asyncio.wait_for(joined(), 10)
    assert s.events[-1].kind == "beneficiary_added"
    assert (await other.result()).consolidated_into == survivor_id
    await record_history(other, "request-consolidated")
    await record_history(survivor, "request-consolidation-survivor")


async def test_withdraw_and_cancel(start_request: Callable[..., Any], record_history: Recorder) -> None:
    a = await start_request()
    state = await until_stage(a, Stage.asec_review)
    r = await a.execute_update(
        TARequestWorkflow.withdrawal, Withdrawal(reason="funded", actor=requester(state))
    )
    assert r.stage is Stage.withdrawn
    b = await start_request()
    await approve(b)
    r = await b.execute_update(
        TARequestWorkflow.cancellation, Cancellation(reason="ASEC cancels", actor=REVIEWER)
    )
    assert r.stage is Stage.cancelled
    await record_history(a, "request-withdrawn")
    await record_history(b, "request-cancelled")


@pytest.mark.parametrize(
    ("intruder", "reason", "recorded_as"),
    [
        (ROCB, "Forbidden", "request-signal-refused"),  # a role that may not decide
        (  # the right role, but no key: not on the roster
            REVIEWER.model_copy(update={"subject": "mallory"}),
            "UnknownActor",
            "request-signal-off-roster",
        ),
    ],
)
async def test_signal_from_someone_who_may_not_decide_is_recorded_not_applied(
    start_request: Callable[..., Any],
    record_history: Recorder,
    intruder: Actor,
    reason: str,
    recorded_as: str,
) -> None:
    handle = await start_request()
    await until_stage(handle, Stage.asec_review)
    await clear_suspected_duplicates(handle)
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=intruder)
    )
    await handle.signal(
        TARequestWorkflow.asec_review_signal, AsecDecision(decision="approve", actor=REVIEWER)
    )
    state = await until_stage(handle, Stage.rocb_matching)
    refused = [e for e in state.events if e.kind == "refused"]
    assert len(refused) == 1 and refused[0].actor == intruder and refused[0].data["reason"] == reason
    approved = [e for e in state.events if e.to_stage is Stage.rocb_matching]
    assert len(approved) == 1 and approved[0].actor.subject == REVIEWER.subject
    await record_history(handle, recorded_as)


async def test_no_match_hold_and_resume(start_request: Callable[..., Any], record_history: Recorder) -> None:
    handle = await start_request()
    await approve(handle)
    await until_stage(handle, Stage.rocb_matching)
    r = await handle.execute_update(
        TARequestWorkflow.match, RocbDecision(decision="no_match", actor=ROCB, comment="next round")
    )
    assert r.stage is Stage.on_hold
    await handle.signal("resume", {"comment": "donor round opened", "actor": ROCB.model_dump()})
    state = await until_stage(handle, Stage.rocb_matching)
    assert [e.kind for e in state.events][-1] in ("resumed", "match_proposed")
    await record_history(handle, "request-hold-resume")


async def test_suspected_duplicate_blocks_approval_until_dismissed_and_stays_dismissed(
    start_request: Callable[..., Any],
    sessionmaker: async_sessionmaker[AsyncSession],
    record_history: Recorder,
) -> None:
    first = await start_request()
    await until_projected(first, Stage.asec_review, sessionmaker)
    second = await start_request()
    state = await until_stage(second, Stage.asec_review)
    first_id = first.id.removeprefix("ta-request-")
    assert state.dedup is not None and state.dedup.verdict == "duplicate_suspected"
    assert state.dedup.duplicate_of == first_id
    evidence = state.dedup.candidates[0].evidence
    assert evidence["shared_topics"] == ["risk-management"] and evidence["matched_terms"]
    with pytest.raises(WorkflowUpdateFailedError) as gated:
        await second.execute_update(
            TARequestWorkflow.review, AsecDecision(decision="approve", actor=REVIEWER)
        )
    assert isinstance(gated.value.cause, ApplicationError)
    assert gated.value.cause.type == "DuplicateUnresolved"
    await second.execute_update(
        TARequestWorkflow.review,
        AsecDecision(decision="dismiss", comment="other department, other need", actor=REVIEWER),
    )
    state = await second.query(TARequestWorkflow.status)
    assert state.dismissed_candidates == [first_id] and state.dedup is not None
    assert state.dedup.verdict == "clear"
    # an amendment re-runs the check; the dismissed pair is not raised again
    await second.execute_update(
        TARequestWorkflow.review, AsecDecision(decision="request_changes", comment="dates", actor=REVIEWER)
    )
    await until_stage(second, Stage.changes_requested)
    await second.execute_update(
        TARequestWorkflow.amendment,
        Amendment(draft=draft(desired_end="2030-06-30"), actor=state.submitted_by),
    )
    state = await until_stage(second, Stage.asec_review)
    assert state.dedup is not None and first_id not in [c.id for c in state.dedup.candidates]
    result = await second.execute_update(
        TARequestWorkflow.review, AsecDecision(decision="approve", actor=REVIEWER)
    )
    assert result.stage is Stage.rocb_matching
    await record_history(second, "request-duplicate-dismissed")


async def test_long_loops_continue_as_new_with_the_whole_state(
    temporal_client: Client, task_queue: str, record_history: Recorder
) -> None:
    """Many amendment rounds: the request continues as new before its history grows large."""
    from datetime import UTC, datetime

    from taflow.domain.models import NewRequest
    from taflow.temporal import workflow_id

    rid = f"CAN-{task_queue[-6:]}"
    requester_actor = REVIEWER.model_copy(update={"subject": "tl", "organisation": "TL", "role": "requester"})
    handle = await temporal_client.start_workflow(
        TARequestWorkflow.run,
        NewRequest(
            request_id=rid, member_state="TL", draft=draft(), submitted_by=requester_actor,
            submitted_at=datetime.now(UTC), history_limit=120,
        ),
        id=workflow_id(rid),
        task_queue=task_queue,
    )  # fmt: skip
    first_run = (await handle.describe()).run_id
    for n in range(8):
        await until_stage(handle, Stage.asec_review)
        await handle.execute_update(
            TARequestWorkflow.review,
            AsecDecision(decision="request_changes", comment=f"round {n}", actor=REVIEWER),
        )
        await until_stage(handle, Stage.changes_requested)
        await handle.execute_update(
            TARequestWorkflow.amendment,
            Amendment(draft=draft(title=f"Round {n} amendment"), actor=requester_actor),
        )
    state = await until_stage(handle, Stage.asec_review)
    while state.clock is None:  # the due date comes from an activity once the stage has started
        await asyncio.sleep(0.05)
        state = await handle.query(TARequestWorkflow.status)
    assert state.runs > 1 and (await handle.describe()).run_id != first_run
    assert [e.seq for e in state.events] == list(range(1, len(state.events) + 1))  # nothing lost or doubled
    assert [e.kind for e in state.events].count("amended") == 8
    assert state.clock is not None and state.sla_due_at is not None  # the clock came along
    await record_history(handle, "request-continued-as-new")


async def test_four_eyes_holds_for_signals(
    start_request: Callable[..., Any], record_history: Recorder
) -> None:
    handle = await start_request("SG")
    state = await until_stage(handle, Stage.asec_review)
    same_person = REVIEWER.model_copy(update={"subject": state.submitted_by.subject})
    await handle.signal(
        TARequestWorkflow.asec_review_signal,
        AsecDecision(decision="reject", comment="mine", actor=same_person),
    )
    await handle.signal(
        TARequestWorkflow.asec_review_signal,
        AsecDecision(decision="reject", comment="out of scope", actor=REVIEWER),
    )
    final = await handle.result()
    refused = [e for e in final.events if e.kind == "refused"]
    assert len(refused) == 1 and "four-eyes" in refused[0].comment
    assert final.stage is Stage.rejected and final.events[-1].actor.subject == REVIEWER.subject
    await record_history(handle, "request-four-eyes-signal")
