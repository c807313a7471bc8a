"""The repair tools through the `taflow` CLI against the dev server, real PostgreSQL and a worker:
`reproject` restores deleted and damaged read-model rows exactly; `requests show`, `signal`,
`replay` and `histories export` do what ops expect of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from typer.testing import CliRunner, Result

from taflow.cli import app as cli
from taflow.domain.enums import Role
from taflow.domain.models import (
    Actor,
    AsecDecision,
    DecisionResult,
    NewRequest,
    RequestDraft,
    RequestState,
    Withdrawal,
)
from taflow.ops.signals import REQUEST_SIGNALS
from taflow.ops.state import fetch_state
from taflow.settings import Settings
from taflow.temporal import workflow_id
from taflow.worker import build_worker
from taflow.workflows.request import TARequestWorkflow
from tests.ops.conftest import visible
from tests.support.roster import enrol

SM = async_sessionmaker[AsyncSession]
REVIEWER = Actor(subject="asec-reviewer-1", organisation="ASEC", role=Role.asec_reviewer)

TITLES = {
    "KH": "Post-clearance audit of garment exporters under the rules of origin",
    "TH": "Passenger risk assessment with advance passenger information at Suvarnabhumi",
    "VN": "Strategic trade controls licensing for dual-use electronics",
}


@pytest.fixture
async def worker(temporal_client: Client, sessionmaker: SM, task_queue: str) -> AsyncIterator[None]:
    async with build_worker(temporal_client, sessionmaker, task_queue, Settings()):
        yield


@pytest.fixture
def run_cli(database_url: str, temporal_client: Client) -> Any:
    env = {
        "TAFLOW_DATABASE_URL": database_url,
        "TAFLOW_TEMPORAL_ADDRESS": temporal_client.service_client.config.target_host,
        "TAFLOW_TEMPORAL_NAMESPACE": temporal_client.namespace,
    }

    async def run(*args: str) -> Result:
        # in a thread: each command runs its own event loop, while this one serves the worker
        return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=env)

    return run


async def start(client: Client, task_queue: str, member_state: str) -> str:
    rid = f"OPS-{task_queue[-8:]}-{member_state}"
    draft = RequestDraft.model_validate(
        {
            "title": TITLES[member_state],
            "description": f"{TITLES[member_state]}: a two-week engagement with the national administration.",
            "topics": ["post-clearance-audit"],
            "modality": "workshop",
            "desired_start": "2030-04-01",
            "desired_end": "2030-05-30",
            "client_reference": f"{member_state}-REF-1",
        }
    )
    requester = Actor(
        subject=f"{member_state.lower()}-system", organisation=member_state, role=Role.requester
    )
    await client.start_workflow(
        TARequestWorkflow.run,
        NewRequest(
            request_id=rid,
            member_state=member_state,
            draft=draft,
            submitted_by=requester,
            submitted_at=datetime.now(UTC),
        ),
        id=workflow_id(rid),
        task_queue=task_queue,
    )
    return rid


async def settled(client: Client, sessionmaker: SM, rid: str, stage: str) -> RequestState:
    """The workflow is at `stage` and the read model shows its latest version (twice in a row)."""
    seen: tuple[int, int] | None = None
    for _ in range(300):
        state = await fetch_state(client, workflow_id(rid))
        async with sessionmaker() as s:
            projected = (
                await s.execute(text("SELECT version FROM requests WHERE id = :id"), {"id": rid})
            ).scalar()
        if state.stage.value == stage and projected == state.version:
            if seen == (state.version, projected):
                return state
            seen = (state.version, projected)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid} did not settle at {stage}")


async def snapshot(sessionmaker: SM, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with sessionmaker() as s:
        requests = (
            await s.execute(
                text("SELECT * FROM requests WHERE id = ANY(:ids) ORDER BY id"), {"ids": list(ids)}
            )
        ).mappings()
        request_rows = [dict(r) for r in requests]
        events = (
            await s.execute(
                text("SELECT * FROM request_events WHERE request_id = ANY(:ids) ORDER BY request_id, seq"),
                {"ids": list(ids)},
            )
        ).mappings()
        return request_rows, [dict(e) for e in events]


async def delete_rows(sessionmaker: SM, ids: Sequence[str]) -> None:
    async with sessionmaker.begin() as s:
        await s.execute(text("DELETE FROM request_events WHERE request_id = ANY(:ids)"), {"ids": list(ids)})
        await s.execute(text("DELETE FROM requests WHERE id = ANY(:ids)"), {"ids": list(ids)})


@pytest.mark.usefixtures("worker")
async def test_reproject_restores_the_read_model_and_the_other_repair_tools(
    temporal_client: Client, sessionmaker: SM, task_queue: str, run_cli: Any, tmp_path: Path
) -> None:
    client = temporal_client
    waiting = await start(client, task_queue, "KH")
    approved = await start(client, task_queue, "TH")
    withdrawn = await start(client, task_queue, "VN")
    ids = [waiting, approved, withdrawn]
    await settled(client, sessionmaker, waiting, "asec_review")
    await settled(client, sessionmaker, approved, "asec_review")
    await settled(client, sessionmaker, withdrawn, "asec_review")
    await client.get_workflow_handle(workflow_id(approved)).execute_update(
        "review",
        AsecDecision(decision="approve", comment="aligned", actor=REVIEWER),
        result_type=DecisionResult,
    )
    vn = Actor(subject="vn-system", organisation="VN", role=Role.requester)
    await client.get_workflow_handle(workflow_id(withdrawn)).execute_update(
        "withdrawal", Withdrawal(reason="funded bilaterally", actor=vn), result_type=DecisionResult
    )
    await settled(client, sessionmaker, approved, "rocb_matching")
    await settled(client, sessionmaker, withdrawn, "withdrawn")
    before = await snapshot(sessionmaker, ids)
    assert len(before[0]) == 3 and len(before[1]) >= 9

    # the read model lost: every row of these requests deleted
    await delete_rows(sessionmaker, ids)
    assert await snapshot(sessionmaker, ids) == ([], [])
    ours = f"TaskQueue = '{task_queue}'"
    for _ in range(100):  # visibility is eventually consistent
        if len(await visible(client, f"WorkflowType = 'TARequestWorkflow' AND {ours}")) == 3:
            break
        await asyncio.sleep(0.1)
    result = await run_cli("reproject", "--all", "--query", ours)
    assert result.exit_code == 0, result.output
    assert "reprojected 3 request(s), 0 failed" in result.stdout
    assert await snapshot(sessionmaker, ids) == before

    # the read model damaged: a row rewritten at the same version, an event lost
    async with sessionmaker.begin() as s:
        await s.execute(
            text("UPDATE requests SET stage = 'rejected', title = 'x' WHERE id = :id"), {"id": waiting}
        )
        await s.execute(
            text("DELETE FROM request_events WHERE request_id = :id AND seq = 2"), {"id": waiting}
        )
    result = await run_cli("reproject", waiting)
    assert result.exit_code == 0, result.output
    assert f"{waiting}: asec_review" in result.stdout
    assert await snapshot(sessionmaker, ids) == before
    assert (await run_cli("reproject")).exit_code == 2  # an id or --all

    # requests show: state, timeline and history summary
    shown = await run_cli("requests", "show", waiting)
    assert shown.exit_code == 0, shown.output
    assert "stage     asec_review" in shown.stdout and "dedup_checked" in shown.stdout
    report = json.loads((await run_cli("requests", "show", workflow_id(withdrawn), "--json")).stdout)
    assert report["workflow"]["status"] == "COMPLETED"
    assert report["state"]["stage"] == "withdrawn"
    assert report["history"]["signals_and_updates"][-1] == {
        "at": report["history"]["signals_and_updates"][-1]["at"],
        "what": "update",
        "name": "withdrawal",
    }

    # signal: validated, sent, and the outcome read back from the audit trail
    approve = json.dumps({"decision": "approve", "comment": "ops decision"})
    stranger = await run_cli("signal", waiting, "asec_review", approve, "--as", "ASEC/asec_head/mallory")
    assert stranger.exit_code == 3, stranger.output  # not on the roster: refused, nothing moves
    assert "refused" in stranger.stdout and "mallory is not on the roster" in stranger.stdout
    assert "stage now asec_review" in stranger.stdout
    await enrol(sessionmaker, [Actor(subject="ops-1", organisation="ASEC", role=Role.asec_head)])
    result = await run_cli("signal", waiting, "asec_review", approve, "--as", "ASEC/asec_head/ops-1")
    assert result.exit_code == 0, result.output
    assert "stage now rocb_matching" in result.stdout
    refused = await run_cli("signal", approved, "asec_review", approve, "--as", "ASEC/asec_head/ops-1")
    assert refused.exit_code == 3, refused.output
    assert "refused" in refused.stdout
    nameless = await run_cli("signal", waiting, "asec_review", approve, "--as", "ASEC/asec_head")
    assert nameless.exit_code == 2 and "ORG/ROLE/SUBJECT" in nameless.output
    invalid = await run_cli(
        "signal", waiting, "rocb_match", '{"decision": "maybe"}', "--as", "ROCB-AP/rocb_officer/r-1"
    )
    assert invalid.exit_code == 2 and "invalid rocb_match payload" in invalid.output
    assert (await run_cli("signal", waiting, "approve_now", "{}")).exit_code == 2

    # replay against the current code, from the server and from exported files
    replayed = await run_cli("replay", waiting)
    assert replayed.exit_code == 0, replayed.output
    assert "deterministic" in replayed.stdout
    exported = await run_cli("histories", "export", str(tmp_path), "--query", ours)
    assert exported.exit_code == 0, exported.output
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 3 and files[0].name.startswith("ta-request-")
    replayed = await run_cli("replay", "--dir", str(tmp_path))
    assert replayed.exit_code == 0, replayed.output
    assert replayed.stdout.count("deterministic") == 3


def test_the_signal_table_matches_the_workflow() -> None:
    """`taflow signal` validates payloads with the same models the workflow's signals take."""
    from temporalio.workflow import _Definition

    defn = _Definition.must_from_class(TARequestWorkflow)
    signals = {name: d.arg_types for name, d in defn.signals.items() if name is not None}
    assert set(signals) == set(REQUEST_SIGNALS)
    for name, model in REQUEST_SIGNALS.items():
        assert signals[name] == [model], name
