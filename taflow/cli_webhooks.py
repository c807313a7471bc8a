"""`taflow webhooks list|deliveries|redeliver`: look after webhook subscriptions and dead letters."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.cli_support import with_database
from taflow.db import webhooks as db
from taflow.db.models import OutboxRow, WebhookDeliveryRow, WebhookSubscriptionRow

app = typer.Typer(
    help="Webhook subscriptions, their deliveries, and redelivery of dead letters.", no_args_is_help=True
)


def _fail(msg: str) -> typer.Exit:
    typer.secho(f"taflow webhooks: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


@app.command("list")
def list_(organisation: Annotated[str | None, typer.Option(help="only this organisation's")] = None) -> None:
    """Live subscriptions: id, organisation, URL, event types (never the secret)."""

    async def job(sessions: async_sessionmaker[AsyncSession]) -> list[WebhookSubscriptionRow]:
        async with sessions() as session:
            return await db.list_subscriptions(session, organisation)

    for row in with_database(job):
        typer.echo(f"{row.id}  {row.organisation_id:<8} {row.url}  {','.join(row.event_types)}")


@app.command()
def deliveries(
    webhook: Annotated[str, typer.Argument(help="the subscription id (wh_...)")],
    status: Annotated[str | None, typer.Option(help="pending, delivered, dead or cancelled")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """A subscription's deliveries, newest first."""
    if status is not None and status not in db.STATUSES:
        raise _fail(f"status must be one of {', '.join(db.STATUSES)}")

    async def job(sessions: async_sessionmaker[AsyncSession]) -> list[tuple[WebhookDeliveryRow, OutboxRow]]:
        async with sessions() as session:
            return (await db.list_deliveries(session, webhook, status=status, limit=limit)).items

    for d, event in with_database(job):
        error = f"  {d.last_error}" if d.last_error else ""
        kind = f"{event.event_type:<28}"
        typer.echo(f"{d.id:>8}  {d.status:<9} attempts {d.attempts:<3} {kind} {event.request_id}{error}")


@app.command()
def redeliver(
    delivery_ids: Annotated[list[int] | None, typer.Argument(help="delivery ids to send again")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="every dead letter (of --webhook, if given)")] = False,
    webhook: Annotated[str | None, typer.Option(help="with --dead: only this subscription's")] = None,
) -> None:
    """Queue deliveries again with a fresh retry budget; the running dispatcher picks them up."""
    if not delivery_ids and not dead:
        raise _fail("name delivery ids, or --dead")

    async def job(sessions: async_sessionmaker[AsyncSession]) -> tuple[list[int], list[str]]:
        queued: list[int] = []
        refused: list[str] = []
        now = datetime.now(UTC)
        async with sessions() as session:
            if dead:
                queued += await db.redeliver_dead(session, now, webhook)
            for delivery_id in delivery_ids or []:
                try:
                    if await db.redeliver(session, delivery_id, now) is None:
                        refused.append(f"{delivery_id}: no such delivery")
                    else:
                        queued.append(delivery_id)
                except db.NotRedeliverable as exc:
                    refused.append(f"{delivery_id}: {exc}")
            await session.commit()
        return queued, refused

    queued, refused = with_database(job)
    typer.echo(
        f"{len(queued)} deliver{'y' if len(queued) == 1 else 'ies'} queued"
        + (f": {', '.join(map(str, queued))}" if queued else "")
    )
    for line in refused:
        typer.secho(f"  not queued {line}", err=True, fg=typer.colors.YELLOW)
    if refused and not queued:
        raise typer.Exit(1)
