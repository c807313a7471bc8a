"""Workflow histories: export them to files, replay them against the current workflow code.

A replay that fails means the code no longer reproduces what already happened (a change that needs
`workflow.patched`): run it before deploying, on exported production histories.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from taflow.ops.state import resolve_workflow_id
from taflow.temporal import DATA_CONVERTER

ALL_WORKFLOWS = "WorkflowType IN ('TARequestWorkflow', 'ExpertInvitationWorkflow')"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Replayed:
    workflow_id: str
    run_id: str | None
    events: int
    failure: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def replayer() -> Replayer:
    from taflow.worker import WORKFLOWS  # the code being deployed

    return Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER)


async def replay_history(history: WorkflowHistory, run_id: str | None = None) -> Replayed:
    result = await replayer().replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    return Replayed(
        workflow_id=history.workflow_id,
        run_id=run_id,
        events=len(history.events),
        failure=None if failure is None else f"{type(failure).__name__}: {failure}",
    )


async def run_ids(client: Client, wf_id: str) -> list[str]:
    """Every run of a workflow id (continue-as-new makes several), oldest first."""
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{wf_id}'")]
    return [e.run_id for e in sorted(runs, key=lambda e: e.start_time)]


async def replay_workflow(client: Client, ref: str) -> list[Replayed]:
    """Fetch every run's history of a request (or invitation) and replay it with the current code."""
    wf_id = resolve_workflow_id(ref)
    runs: list[str | None] = list(await run_ids(client, wf_id)) or [None]  # visibility may lag
    out = []
    for run_id in runs:
        history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
        out.append(await replay_history(history, run_id))
    return out


def history_file_name(workflow_id: str, run_id: str) -> str:
    return SAFE_NAME.sub("_", f"{workflow_id}.{run_id}") + ".json"


async def export_histories(
    client: Client, directory: Path, query: str | None = None, *, limit: int | None = None
) -> list[Path]:
    """Write each matching execution's history to `directory` as JSON (the format `replay --file`
    and the replay tests read)."""
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local directory, once
    written = []
    async for execution in client.list_workflows(query or ALL_WORKFLOWS, limit=limit):
        handle = client.get_workflow_handle(execution.id, run_id=execution.run_id)
        history = await handle.fetch_history()
        path = directory / history_file_name(execution.id, execution.run_id)
        path.write_text(history.to_json())
        written.append(path)
    return written


async def replay_files(paths: list[Path]) -> list[Replayed]:
    out = []
    for path in paths:
        workflow_id = path.name.split(".", 1)[0]
        history = WorkflowHistory.from_json(workflow_id, path.read_text())
        out.append(await replay_history(history, path.name))
    return out
