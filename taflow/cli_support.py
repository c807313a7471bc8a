"""Shared plumbing for `taflow` sub-commands: run an async job against the database in use."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.session import make_engine, make_sessionmaker
from taflow.devstack import database_url
from taflow.settings import Settings

T = TypeVar("T")


def with_database(job: Callable[[async_sessionmaker[AsyncSession]], Awaitable[T]]) -> T:
    """Run `job` with a sessionmaker on TAFLOW_DATABASE_URL or the embedded server in the data dir."""

    async def run(url: str) -> T:
        engine = make_engine(url, pool_size=2)
        try:
            return await job(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    with database_url(Settings()) as url:
        return asyncio.run(run(url))
