"""Accepting a submission: business id allocation and Idempotency-Key replay.

The row in `submissions` is written and committed before the workflow starts. A client retrying
after any failure (same key, same body) gets the same id, and the API starts the workflow again
with USE_EXISTING, so a crash between the two steps never loses or doubles a request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import SubmissionRow
from taflow.domain.models import RequestDraft


class IdempotencyConflict(Exception):
    """The Idempotency-Key was already used by this member state for a different body."""

    def __init__(self, request_id: str) -> None:
        super().__init__(f"Idempotency-Key already used for request {request_id} with another body")
        self.request_id = request_id


@dataclass(frozen=True)
class Submission:
    request_id: str
    member_state: str
    submitted_by: str
    submitted_at: datetime
    created: bool
    """False when an earlier submission with the same Idempotency-Key and body was found."""


def body_digest(draft: RequestDraft) -> str:
    """SHA-256 of the validated draft's canonical JSON: formatting and key order do not matter."""
    canonical = json.dumps(draft.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


async def allocate_request_id(session: AsyncSession, year: int) -> str:
    """`TA-<year>-<nnnnnn>` from the `request_number` sequence (gaps are harmless, reuse never happens)."""
    number = (await session.execute(text("SELECT nextval('request_number')"))).scalar_one()
    return f"TA-{year}-{int(number):06d}"


async def record_submission(
    session: AsyncSession,
    *,
    member_state: str,
    idempotency_key: str | None,
    draft: RequestDraft,
    submitted_by: str,
    now: datetime,
) -> Submission:
    """Insert the submission or find its earlier twin; commits, so concurrent retries see it.

    Concurrency: INSERT .. ON CONFLICT DO NOTHING blocks on the unique index until a competing
    transaction commits, then the re-read (a fresh READ COMMITTED snapshot) finds the winner.
    Raises IdempotencyConflict when the key was used with another body.
    """
    digest = body_digest(draft)
    for _ in range(3):
        request_id = await allocate_request_id(session, now.year)
        inserted = (
            await session.execute(
                insert(SubmissionRow)
                .values(
                    request_id=request_id,
                    member_state=member_state,
                    idempotency_key=idempotency_key,
                    body_digest=digest,
                    submitted_by=submitted_by,
                    created_at=now,
                )
                .on_conflict_do_nothing()
                .returning(SubmissionRow.request_id, SubmissionRow.created_at)
            )
        ).one_or_none()
        if inserted is not None:
            await session.commit()
            return Submission(request_id, member_state, submitted_by, inserted.created_at, created=True)
        if idempotency_key is None:  # pragma: no cover - only a request-id collision gets here
            continue
        existing = (
            await session.execute(
                select(SubmissionRow).where(
                    SubmissionRow.member_state == member_state,
                    SubmissionRow.idempotency_key == idempotency_key,
                )
            )
        ).scalar_one_or_none()
        await session.commit()
        if existing is None:
            continue  # the competitor rolled back after all: try again
        if existing.body_digest != digest:
            raise IdempotencyConflict(existing.request_id)
        return Submission(
            existing.request_id,
            existing.member_state,
            existing.submitted_by,
            existing.created_at,
            created=False,
        )
    raise RuntimeError("could not record the submission after three attempts")


async def find_submission(session: AsyncSession, request_id: str) -> SubmissionRow | None:
    return await session.get(SubmissionRow, request_id)
