"""Replays every committed history against the current workflow code, with no server.

A change to workflow logic that is not guarded by `workflow.patched` breaks one of these. After a new
patch, record the paths it changes as a new set beside the others (`TAFLOW_RECORD_HISTORIES=1
TAFLOW_HISTORY_SUFFIX=-<name> pytest tests/workflow -k ...`): the `-lean` set carries the patches
"lean-projection" and "search-attribute-diff".
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from taflow.temporal import DATA_CONVERTER
from taflow.worker import WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_committed() -> None:
    assert len(HISTORIES) >= 10, "record them with TAFLOW_RECORD_HISTORIES=1 pytest tests/workflow"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    await Replayer(workflows=WORKFLOWS, data_converter=DATA_CONVERTER).replay_workflow(history)
