"""Ops test helpers: an SLA clock that breaches in seconds, visibility polling, free ports, API waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

import taflow.worker
from taflow.activities.deadlines import DeadlineActivities
from taflow.domain.enums import Stage
from taflow.domain.sla import ClockRequest, StageClock
from taflow.settings import Settings
from tests.api.conftest import auth, keys  # noqa: F401  (fixtures, shared with the API tests)

ESCALATE_AFTER = timedelta(seconds=2)
Auth = Callable[[str], dict[str, str]]


class HurriedDeadlines(DeadlineActivities):
    @activity.defn(name="start_clock")
    async def start_clock(self, req: ClockRequest) -> StageClock:
        """The real clock, except that ASEC review breaches (and escalates) two seconds after it starts."""
        clock = await super().start_clock(req)
        if req.stage is Stage.asec_review:
            return clock.model_copy(update={"reminder_at": None, "due_at": req.start + ESCALATE_AFTER})
        return clock


def hurried_worker(client: Client, sessionmaker: async_sessionmaker[AsyncSession], task_queue: str) -> Worker:
    """The production worker (build_worker), with the hurried clock in place of `start_clock`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(taflow.worker, "DeadlineActivities", HurriedDeadlines)
        return taflow.worker.build_worker(client, sessionmaker, task_queue, Settings())


async def visible(client: Client, query: str) -> list[str]:
    return [e.id async for e in client.list_workflows(query, limit=20)]


async def wait_visible(client: Client, wf_id: str, clause: str, *, within: float = 15.0) -> None:
    """Visibility is eventually consistent: poll until `clause` finds the workflow."""
    query = f"WorkflowId = '{wf_id}' AND {clause}"
    deadline = asyncio.get_running_loop().time() + within
    while wf_id not in await visible(client, query):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"visibility never found {wf_id} with {clause}")
        await asyncio.sleep(0.2)


async def wait_for(
    api: httpx.AsyncClient,
    rid: str,
    headers: dict[str, str],
    pred: Callable[[dict[str, Any]], bool],
    *,
    within: float = 30.0,
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        resp = await api.get(f"/v1/requests/{rid}", headers=headers)
        if resp.status_code == 200:
            body = resp.json()
            if pred(body):
                return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{rid} never got there: {body.get('stage')}")


async def at_stage(api: httpx.AsyncClient, rid: str, headers: dict[str, str], stage: str) -> dict[str, Any]:
    return await wait_for(api, rid, headers, lambda b: b["stage"] == stage)
