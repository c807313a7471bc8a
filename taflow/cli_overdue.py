"""`taflow overdue`: requests past their SLA due date, most overdue first (the read model's view).

The Temporal UI shows the same with `TaSlaDueAt < '<now>' AND ExecutionStatus = 'Running'`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.cli_support import with_database
from taflow.db.models import RequestRow
from taflow.domain.enums import TERMINAL_STAGES

app = typer.Typer(help="Requests past their SLA due date.")


async def overdue(sessions: async_sessionmaker[AsyncSession], now: datetime) -> list[RequestRow]:
    stmt = (
        select(RequestRow)
        .where(RequestRow.sla_due_at < now, RequestRow.stage.notin_([s.value for s in TERMINAL_STAGES]))
        .order_by(RequestRow.sla_due_at)
    )
    async with sessions() as session:
        return list((await session.execute(stmt)).scalars())


@app.callback(invoke_without_command=True)
def list_overdue(
    as_of: Annotated[datetime | None, typer.Option(help="default: now (UTC)")] = None,
) -> None:
    """List open requests whose SLA due date has passed: id, stage, member state, due, escalated."""
    now = as_of or datetime.now(UTC)
    now = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    rows = with_database(lambda sessions: overdue(sessions, now))
    if not rows:
        typer.echo("nothing is overdue")
        return
    typer.echo(f"{'request':<16} {'stage':<18} {'state':<5} {'due (UTC)':<17} {'late':>6}  escalated")
    for r in rows:
        assert r.sla_due_at is not None
        late = now - r.sla_due_at
        typer.echo(
            f"{r.id:<16} {r.stage:<18} {r.member_state:<5} {r.sla_due_at:%Y-%m-%d %H:%M} "
            f"{late.days:>5}d  {'yes' if r.escalated else ''}"
        )
