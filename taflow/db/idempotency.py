"""Idempotency-Key records: one row per (caller, key), claimed by the first request and then replayed.

The claim is a single `INSERT .. ON CONFLICT DO UPDATE .. WHERE` so two concurrent requests can never
both own a key: PostgreSQL serialises them on the primary key, the loser sees the winner's row. A row
left `in_progress` by a crashed process is taken over once `locked_until` has passed; a finished one
is replayed until `expires_at`, after which the key is free again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import IdempotencyKeyRow

IN_PROGRESS = "in_progress"
DONE = "done"


@dataclass(frozen=True)
class Acquired:
    """This request owns the key: run it, then `finish` (success) or `release` (anything else)."""


@dataclass(frozen=True)
class Replay:
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Conflict:
    """The key was used for another call (other path or body)."""

    status_code: int | None
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class InProgress:
    """Another request with this key is running; wait and claim again."""


Claim = Acquired | Replay | Conflict | InProgress


async def claim(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    fingerprint: str,
    now: datetime,
    lock: timedelta,
    ttl: timedelta,
) -> Claim:
    """Try to own `key` for `scope`; commits, so competitors see the outcome at once."""
    values: dict[str, Any] = {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "state": IN_PROGRESS,
        "locked_until": now + lock,
        "expires_at": now + ttl,
        "status_code": None,
        "response_headers": None,
        "response_body": None,
    }
    stmt = insert(IdempotencyKeyRow).values(**values)
    table = IdempotencyKeyRow.__table__.c
    upsert = stmt.on_conflict_do_update(
        index_elements=[IdempotencyKeyRow.scope, IdempotencyKeyRow.key],
        set_={k: stmt.excluded[k] for k in values if k not in ("scope", "key")},
        where=or_(
            table.expires_at < now,
            (table.state == IN_PROGRESS) & (table.locked_until < now),
        ),
    ).returning(IdempotencyKeyRow.scope)
    won = (await session.execute(upsert)).scalar_one_or_none()
    if won is not None:
        await session.execute(
            delete(IdempotencyKeyRow).where(
                IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.expires_at < now
            )
        )
        await session.commit()
        return Acquired()
    row = (
        await session.execute(
            select(IdempotencyKeyRow).where(IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.key == key)
        )
    ).scalar_one_or_none()
    await session.commit()
    if row is None:
        return InProgress()  # deleted between the two statements (released): claim again
    if row.fingerprint != fingerprint:
        return Conflict(row.status_code, dict(row.response_headers or {}), row.response_body or b"")
    if row.state == DONE and row.status_code is not None:
        return Replay(row.status_code, dict(row.response_headers or {}), row.response_body or b"")
    return InProgress()


async def extend(session: AsyncSession, *, scope: str, key: str, until: datetime) -> None:
    """Keep an in-progress claim exclusive while its call runs (a heartbeat); commits."""
    await session.execute(
        update(IdempotencyKeyRow)
        .where(
            IdempotencyKeyRow.scope == scope,
            IdempotencyKeyRow.key == key,
            IdempotencyKeyRow.state == IN_PROGRESS,
        )
        .values(locked_until=until)
    )
    await session.commit()


async def finish(
    session: AsyncSession, *, scope: str, key: str, status_code: int, headers: dict[str, str], body: bytes
) -> None:
    """Record the answer to replay; commits."""
    await session.execute(
        update(IdempotencyKeyRow)
        .where(IdempotencyKeyRow.scope == scope, IdempotencyKeyRow.key == key)
        .values(state=DONE, status_code=status_code, response_headers=headers, response_body=body)
    )
    await session.commit()


async def release(session: AsyncSession, *, scope: str, key: str) -> None:
    """Forget an unfinished claim (the call failed): the key may be used again at once; commits."""
    await session.execute(
        delete(IdempotencyKeyRow).where(
            IdempotencyKeyRow.scope == scope,
            IdempotencyKeyRow.key == key,
            IdempotencyKeyRow.state == IN_PROGRESS,
        )
    )
    await session.commit()
