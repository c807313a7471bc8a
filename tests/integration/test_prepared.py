"""Statements run on the driver (taflow.db.prepared): after PostgreSQL dropped a connection under
one, neither it nor the pool's other connections of that age are handed out again, as SQLAlchemy
does when it runs the statement itself."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager

import asyncpg
import pytest
from sqlalchemy import Float, Integer, String, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taflow.api.problems import ASYNCPG_UNREACHABLE
from taflow.db.prepared import Pooled, Prepared, StatementConnection, pooled
from taflow.db.session import autocommit, make_engine

PLUS_ONE = Prepared.of(select((bindparam("n", type_=Integer) + 1).label("m")))
SLEEP = Prepared.of(select(func.pg_sleep(bindparam("s", type_=Float))))
TIMEOUT = Prepared.of(select(func.set_config("statement_timeout", bindparam("t", type_=String), False)))


async def backend_pid(connection: StatementConnection) -> int:
    raw = connection.raw if isinstance(connection, Pooled) else await connection.get_raw_connection()
    pid: int = raw.driver_connection.get_server_pid()  # type: ignore[union-attr]
    return pid


def connecting(engine: AsyncEngine, how: str) -> AbstractAsyncContextManager[StatementConnection]:
    """SQLAlchemy's Connection, or the bare pooled connection the submission route uses."""
    return engine.connect() if how == "connection" else pooled(engine)


HOW = pytest.mark.parametrize("how", ["connection", "pooled"])


@HOW
async def test_values_by_name_and_rows_by_column(engine: AsyncEngine, how: str) -> None:
    async with connecting(engine, how) as connection:
        assert [row["m"] for row in await PLUS_ONE.fetch(connection, {"n": 41})] == [42]


@HOW
async def test_dropped_connections_are_not_reused(engine: AsyncEngine, how: str) -> None:
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=2, pre_ping=False)
    try:
        async with connecting(own, how) as first, connecting(own, how) as second:  # two in the pool
            pids = {await backend_pid(first), await backend_pid(second)}
        assert len(pids) == 2
        async with engine.connect() as admin:  # a restart, as far as these two can tell
            for pid in pids:
                await admin.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        await asyncio.sleep(0.1)
        with pytest.raises((*ASYNCPG_UNREACHABLE, OSError)):  # what the API answers 503 to
            async with connecting(own, how) as connection:
                await PLUS_ONE.fetch(connection, {"n": 1})
        for _ in range(2):  # neither the failed connection nor its dead sibling comes back
            async with connecting(own, how) as connection:
                assert await backend_pid(connection) not in pids
                assert [row["m"] for row in await PLUS_ONE.fetch(connection, {"n": 1})] == [2]
    finally:
        await own.dispose()


@HOW
async def test_a_statement_the_server_cancelled_keeps_its_connection(engine: AsyncEngine, how: str) -> None:
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, pre_ping=False)
    try:
        async with connecting(autocommit(own), how) as connection:
            pid = await backend_pid(connection)
            await TIMEOUT.fetch(connection, {"t": "50ms"})
            with pytest.raises(asyncpg.exceptions.QueryCanceledError):
                await SLEEP.fetch(connection, {"s": 2.0})
            await TIMEOUT.fetch(connection, {"t": "0"})
        async with connecting(own, how) as connection:
            assert await backend_pid(connection) == pid
    finally:
        await own.dispose()


@HOW
async def test_a_caller_cancelled_mid_statement_leaves_its_connection_behind(
    engine: AsyncEngine, how: str
) -> None:
    """A client that hangs up while its statement runs: that connection is closed, not pooled again
    with the statement possibly still running on it."""
    own = make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, pre_ping=False)
    try:
        pids: list[int] = []
        running = asyncio.Event()

        async def sleeper() -> None:
            async with connecting(own, how) as connection:
                pids.append(await backend_pid(connection))
                running.set()
                await SLEEP.fetch(connection, {"s": 5.0})

        task = asyncio.create_task(sleeper())
        await running.wait()
        await asyncio.sleep(0.1)  # the statement is on the server
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with connecting(own, how) as connection:
            assert await backend_pid(connection) != pids[0]
            assert [row["m"] for row in await PLUS_ONE.fetch(connection, {"n": 2})] == [3]
    finally:
        await own.dispose()
