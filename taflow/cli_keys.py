"""`taflow keys create|list|revoke|rotate`: API keys, shown once and stored as SHA-256 digests."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.cli_support import with_database
from taflow.db.credentials import (
    ApiKeyInfo,
    InvalidIdentity,
    create_key,
    ensure_organisations,
    list_keys,
    revoke_key,
    rotate_key,
)
from taflow.domain.enums import ORGANISATION_IDS, Role

app = typer.Typer(
    help="API keys: one organisation, one role, one subject each. The key is printed once; only its "
    "SHA-256 digest is stored.",
    no_args_is_help=True,
)

SHOWN_ONCE = "Store it now: it is shown this once and cannot be recovered (only its digest is kept)."


def _fail(msg: str) -> typer.Exit:
    typer.secho(f"taflow keys: {msg}", err=True, fg=typer.colors.RED)
    return typer.Exit(1)


def _line(k: ApiKeyInfo) -> str:
    state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
    label = f"  {k.label}" if k.label else ""
    return (
        f"{k.id:>6}  {k.prefix}...  {k.organisation:<8} {k.role:<14} {k.subject:<24} "
        f"{k.created_at:%Y-%m-%d}  {state}{label}"
    )


@app.command()
def create(
    organisation: Annotated[str, typer.Argument(help="KH, TH, ... ASEC, ROCB-AP or WCO")],
    role: Annotated[Role, typer.Argument(help="the role the key acts in")],
    subject: Annotated[str, typer.Argument(help="the person or system the key is for (audit trail)")],
    label: Annotated[str, typer.Option(help="a note, e.g. the system it is installed in")] = "",
) -> None:
    """Issue a key and print it once."""
    if organisation not in ORGANISATION_IDS:
        raise _fail(f"unknown organisation {organisation}; one of {', '.join(ORGANISATION_IDS)}")

    async def job(sessions: async_sessionmaker[AsyncSession]) -> str:
        async with sessions() as session:
            await ensure_organisations(session, [organisation])
            key = await create_key(session, organisation, role, subject, label)
            await session.commit()
            return key

    try:
        key = with_database(job)
    except InvalidIdentity as exc:
        raise _fail(str(exc)) from exc
    typer.echo(key)
    typer.secho(SHOWN_ONCE, err=True, fg=typer.colors.YELLOW)


@app.command("list")
def list_(
    organisation: Annotated[str | None, typer.Option(help="only this organisation's keys")] = None,
    active: Annotated[bool, typer.Option("--active", help="hide revoked keys")] = False,
) -> None:
    """Keys by id: prefix, organisation, role, subject, created, revoked (never the key itself)."""

    async def job(sessions: async_sessionmaker[AsyncSession]) -> list[ApiKeyInfo]:
        async with sessions() as session:
            return await list_keys(session, organisation, include_revoked=not active)

    for info in with_database(job):
        typer.echo(_line(info))


@app.command()
def revoke(key_id: Annotated[int, typer.Argument(help="the id `taflow keys list` shows")]) -> None:
    """Revoke a key at once (it is kept, revoked, so the audit trail keeps its subject)."""

    async def job(sessions: async_sessionmaker[AsyncSession]) -> bool:
        async with sessions() as session:
            done = await revoke_key(session, key_id)
            await session.commit()
            return done

    if not with_database(job):
        raise _fail(f"no active key {key_id}")
    typer.echo(f"key {key_id} revoked")


@app.command()
def rotate(
    key_id: Annotated[int, typer.Argument(help="the id `taflow keys list` shows")],
    keep_old: Annotated[
        bool, typer.Option("--keep-old", help="leave the old key active for a changeover; revoke it later")
    ] = False,
) -> None:
    """Issue a new key for the same organisation, role and subject, print it once, revoke the old one."""

    async def job(sessions: async_sessionmaker[AsyncSession]) -> tuple[str, ApiKeyInfo] | None:
        async with sessions() as session:
            rotated = await rotate_key(session, key_id, revoke_old=not keep_old)
            await session.commit()
            return rotated

    rotated = with_database(job)
    if rotated is None:
        raise _fail(f"no active key {key_id}")
    key, info = rotated
    typer.echo(key)
    old = "still active: revoke it with `taflow keys revoke`" if keep_old else "revoked"
    typer.secho(f"new key id {info.id}; key {key_id} {old}. {SHOWN_ONCE}", err=True, fg=typer.colors.YELLOW)
