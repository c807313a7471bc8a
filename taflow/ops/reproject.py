"""Rebuild the read model from the workflows' own state: the read model can always be recovered.

Each request's state comes from its workflow (`status` query, or a completed run's result) and is
written by the projection writer itself with every audit event, replacing what the read model has
for that request, unless a newer projection lands meanwhile (then that one stands). No
notification is queued again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from taflow.db.models import RequestEventRow, RequestRow
from taflow.db.projection import write_projection
from taflow.domain.models import Projection, RequestState
from taflow.ops.state import fetch_state, request_id_of, resolve_workflow_id

REQUEST_WORKFLOWS = "WorkflowType = 'TARequestWorkflow'"
CONCURRENCY = 8


@dataclass(frozen=True)
class Reprojected:
    request_id: str
    stage: str | None = None
    version: int | None = None
    events: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


async def write_state(sessionmaker: async_sessionmaker[AsyncSession], state: RequestState) -> None:
    """Replace the request's read-model row and events with the workflow's state, in one transaction."""
    rid = state.request_id
    last_seq = state.events[-1].seq if state.events else 0
    async with sessionmaker.begin() as session:
        # the writer never goes back in version: let it take this state over an equal or older row
        # (keeping the row, so derived data such as the dedup term counts are restated, not doubled)
        await session.execute(
            update(RequestRow)
            .where(RequestRow.id == rid, RequestRow.version <= state.version)
            .values(version=-1)
        )
        await session.execute(
            delete(RequestEventRow).where(RequestEventRow.request_id == rid, RequestEventRow.seq <= last_seq)
        )
        await write_projection(session, Projection(state=state, new_events=list(state.events)), [])


async def reproject_one(
    client: Client, sessionmaker: async_sessionmaker[AsyncSession], ref: str
) -> Reprojected:
    wf_id = resolve_workflow_id(ref)
    rid = request_id_of(wf_id)
    try:
        state = await fetch_state(client, wf_id)
        await write_state(sessionmaker, state)
    except Exception as exc:  # reported per request; one broken request never stops the others
        return Reprojected(rid, error=f"{type(exc).__name__}: {exc}")
    return Reprojected(rid, stage=state.stage.value, version=state.version, events=len(state.events))


def visibility_query(extra: str | None = None) -> str:
    return f"{REQUEST_WORKFLOWS} AND ({extra})" if extra else REQUEST_WORKFLOWS


async def request_workflow_ids(client: Client, extra_query: str | None = None) -> AsyncIterator[str]:
    """Every request workflow id visibility knows (once, whatever the number of runs)."""
    seen: set[str] = set()
    async for execution in client.list_workflows(visibility_query(extra_query)):
        if execution.id not in seen:
            seen.add(execution.id)
            yield execution.id


async def reproject_all(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    extra_query: str | None = None,
    *,
    concurrency: int = CONCURRENCY,
) -> list[Reprojected]:
    gate = asyncio.Semaphore(concurrency)

    async def one(wf_id: str) -> Reprojected:
        async with gate:
            return await reproject_one(client, sessionmaker, wf_id)

    ids = [wf_id async for wf_id in request_workflow_ids(client, extra_query)]
    return list(await asyncio.gather(*(one(wf_id) for wf_id in ids)))
