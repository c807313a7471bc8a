"""Single-use invitation link tokens: only their SHA-256 digest is stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import InvitationTokenRow


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def issue_token(
    session: AsyncSession, *, invitation_id: str, request_id: str, expert_id: str, expires_at: datetime
) -> str | None:
    """A fresh token, or None when this invitation already has one (a retried activity)."""
    token = secrets.token_urlsafe(24)
    stmt = (
        insert(InvitationTokenRow)
        .values(
            digest=token_digest(token),
            invitation_id=invitation_id,
            request_id=request_id,
            expert_id=expert_id,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=[InvitationTokenRow.invitation_id])
        .returning(InvitationTokenRow.digest)
    )
    inserted = (await session.execute(stmt)).scalar_one_or_none()
    return token if inserted else None
