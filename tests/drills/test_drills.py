"""The fault drills in their short form (`make drills` runs them in full): a few requests each, short
outages. Each drill gets its own throw-away stack and all four run at once, so the set takes about as
long as its slowest drill. With TAFLOW_RECORD_HISTORIES=1 each drill also writes the history that
shows its fault best to tests/histories/drill-<name>.json (replayed by tests/test_replay.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from taflow.drills.checks import Verdict
from taflow.drills.run import DRILLS, DrillConfig, run_drill
from taflow.drills.stack import Stack

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
RECORD = os.environ.get("TAFLOW_RECORD_HISTORIES") == "1"
SHORT = DrillConfig.short(record_dir=HISTORIES if RECORD else None, drill_timeout_s=240.0)

Drills = dict[str, asyncio.Task[Verdict]]


@pytest.fixture(scope="module")
async def drills() -> AsyncIterator[Drills]:
    """All four drills, started together in the background; each test awaits its own."""
    stacks: list[Stack] = []
    log: list[str] = []

    async def one(name: str) -> Verdict:
        stack = Stack.in_temp_dir(prefix=f"taflow-drill-{name}-", quiet=True)
        stacks.append(stack)
        await asyncio.to_thread(stack.start)
        return await run_drill(name, stack, SHORT, say=log.append)

    tasks = {name: asyncio.create_task(one(name)) for name in DRILLS}
    try:
        yield tasks
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for stack in stacks:
            await asyncio.to_thread(stack.stop)


@pytest.mark.parametrize("name", DRILLS)
async def test_drill_loses_and_doubles_nothing(name: str, drills: Drills) -> None:
    verdict = await drills[name]
    detail = "\n".join(verdict.problems[:10])
    assert verdict.ok, f"{name}: {verdict.line()}\n{detail}"
    assert verdict.line() == f"{SHORT.n} submitted, {SHORT.n} completed, 0 lost, 0 duplicated"
