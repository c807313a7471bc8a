"""Putting test actors on the roster that decision signals are checked against (`verify_actor`)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.activities.actors import check_actor
from taflow.db.credentials import create_key, ensure_organisations
from taflow.domain.models import Actor


async def enrol(sessionmaker: async_sessionmaker[AsyncSession], actors: Iterable[Actor]) -> None:
    """Give each actor an active API key unless it has one (the roster that signals are checked on)."""
    actors = list(actors)
    async with sessionmaker.begin() as s:
        await ensure_organisations(s, sorted({a.organisation for a in actors}))
        for a in actors:
            if not (await check_actor(s, a)).known:
                await create_key(s, a.organisation, a.role, a.subject, label="workflow tests")
