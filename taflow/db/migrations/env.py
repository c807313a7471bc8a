"""Alembic environment: async engine, metadata from taflow.db.models."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from taflow.db.models import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _online() -> None:
    engine = create_async_engine(context.config.get_main_option("sqlalchemy.url") or "")
    async with engine.connect() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


def _in_thread() -> None:
    asyncio.run(_online())


if context.is_offline_mode():
    context.configure(url=context.config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    # Alembic may be called from inside a running event loop (tests, the dev stack): run in a thread.
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_online())
    else:
        import threading

        t = threading.Thread(target=_in_thread)
        t.start()
        t.join()
