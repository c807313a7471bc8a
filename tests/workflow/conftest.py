"""Workflow-test helpers: a worker on a fresh task queue against real PostgreSQL, plus a small roster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from taflow.db.models import DedupTermRow, ExpertRow, MeetingRow, RequestEventRow, RequestRow
from taflow.domain.enums import DedupVerdict, Role
from taflow.domain.models import Actor, AsecDecision, NewRequest, RequestDraft, RequestState
from taflow.settings import Settings
from taflow.temporal import workflow_id
from taflow.worker import build_worker
from taflow.workflows.request import TARequestWorkflow
from tests.support.roster import enrol

ROSTER = [
    {
        "id": "WT-EXP-1",
        "name": "Ana Lestari",
        "accreditation": "WCO accredited",
        "category": "technical and operational advisor",
        "topics": ["risk-management", "data-analytics"],
        "languages": ["en"],
        "home_administration": "ID",
        "invitations_12m": 0,
    },
    {
        "id": "WT-EXP-2",
        "name": "Kenji Morita",
        "accreditation": "WCO accredited",
        "category": "diagnostic facilitator",
        "topics": ["risk-management"],
        "languages": ["en", "ja"],
        "home_administration": "JP",
        "invitations_12m": 1,
    },
    {
        "id": "WT-EXP-3",
        "name": "Claire Dubois",
        "accreditation": "WCO accredited",
        "category": "expert trainer",
        "topics": ["risk-management", "post-clearance-audit"],
        "languages": ["en", "fr"],
        "home_administration": "FR",
        "invitations_12m": 3,
    },
]
MEETING = {
    "id": "WT-CCWG-90",
    "body": "CCWG",
    "number": 90,
    "starts_on": date(2030, 3, 10),
    "ends_on": date(2030, 3, 12),
    "place": "Jakarta",
    "agenda_cutoff": date(2030, 2, 1),
}

REQUESTER_KH = Actor(subject="kh-system", organisation="KH", role=Role.requester)
REVIEWER = Actor(subject="asec-reviewer-1", organisation="ASEC", role=Role.asec_reviewer)
ROCB = Actor(subject="rocb-officer-1", organisation="ROCB-AP", role=Role.rocb_officer)
OPS = Actor(subject="ops-1", organisation="ASEC", role=Role.ops)
REQUESTER_SG = Actor(subject="sg", organisation="SG", role=Role.requester)
REQUESTER_LA = Actor(subject="la", organisation="LA", role=Role.requester)
ON_ROSTER = [REQUESTER_KH, REVIEWER, ROCB, OPS, REQUESTER_SG, REQUESTER_LA]
"""Actors the tests name in decision signals: each holds an API key, so `verify_actor` knows them."""


def draft(**over: Any) -> RequestDraft:
    base: dict[str, Any] = {
        "title": "Diagnostic mission on compliance risk management",
        "description": "Assess our risk management framework and recommend a national risk committee.",
        "topics": ["risk-management"],
        "modality": "diagnostic_mission",
        "desired_start": "2030-04-01",
        "desired_end": "2030-05-30",
    }
    return RequestDraft.model_validate(base | over)


@pytest.fixture(scope="session")
async def roster(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker.begin() as s:
        await s.execute(
            insert(ExpertRow).values([e | {"unavailable": {}} for e in ROSTER]).on_conflict_do_nothing()
        )
        await s.execute(insert(MeetingRow).values(MEETING).on_conflict_do_nothing())


@pytest.fixture(scope="session", autouse=True)
async def signal_actors_on_roster(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await enrol(sessionmaker, ON_ROSTER)


@pytest.fixture(autouse=True)
async def fresh_read_model(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Each workflow test starts with no earlier requests, so dedup sees only what the test submits."""
    async with sessionmaker.begin() as s:
        await s.execute(delete(RequestEventRow))
        await s.execute(delete(RequestRow))
        await s.execute(delete(DedupTermRow))


async def clear_suspected_duplicates(handle: WorkflowHandle[Any, Any], *, signal: bool = False) -> None:
    """Dismiss whatever the dedup check suspects (e.g. a seeded catalogue activity) before approving."""
    state = await handle.query(TARequestWorkflow.status)
    if state.dedup is None or state.dedup.verdict is not DedupVerdict.duplicate_suspected:
        return
    dismiss = AsecDecision(decision="dismiss", comment="not the same need", actor=REVIEWER)
    if signal:
        await handle.signal(TARequestWorkflow.asec_review_signal, dismiss)
    else:
        await handle.execute_update(TARequestWorkflow.review, dismiss)


@pytest.fixture
async def worker(
    temporal_client: Client, sessionmaker: async_sessionmaker[AsyncSession], task_queue: str, roster: None
) -> AsyncIterator[Worker]:
    w = build_worker(temporal_client, sessionmaker, task_queue, Settings())
    async with w:
        yield w


Starter = Callable[..., Any]


@pytest.fixture
def start_request(temporal_client: Client, task_queue: str) -> Starter:
    counter = iter(range(1, 10_000))

    async def start(member_state: str = "KH", **over: Any) -> WorkflowHandle[TARequestWorkflow, RequestState]:
        rid = f"WT-{task_queue[-6:]}-{next(counter)}"
        request = NewRequest(
            request_id=rid,
            member_state=member_state,
            draft=draft(**over),
            submitted_by=Actor(
                subject=f"{member_state.lower()}-system", organisation=member_state, role=Role.requester
            ),
            submitted_at=datetime.now(UTC),
        )
        return await temporal_client.start_workflow(
            TARequestWorkflow.run,
            request,
            id=workflow_id(rid),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        )

    return start


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


@pytest.fixture
def record_history() -> Callable[[WorkflowHandle[Any, Any], str], Any]:
    """Writes a workflow's history to tests/histories/ when TAFLOW_RECORD_HISTORIES=1 (for replay tests).

    TAFLOW_HISTORY_SUFFIX names a new set beside the committed ones (`<name><suffix>.json`): after a
    patch, record the paths it changes under a new name and keep the older histories replaying."""

    async def record(handle: WorkflowHandle[Any, Any], name: str) -> None:
        if os.environ.get("TAFLOW_RECORD_HISTORIES") != "1":
            return
        history = await handle.fetch_history()
        HISTORIES.mkdir(exist_ok=True)
        suffix = os.environ.get("TAFLOW_HISTORY_SUFFIX", "")
        (HISTORIES / f"{name}{suffix}.json").write_text(history.to_json())

    return record
