"""Index-backed retrieval of dedup candidates: earlier requests and catalogue activities."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import Float, and_, any_, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import String

from taflow.db.models import CatalogueActivityRow, RequestRow
from taflow.domain.enums import TERMINAL_STAGES, Stage


@dataclass(frozen=True)
class CandidateRow:
    kind: str
    id: str
    title: str
    description: str
    topics: list[str]
    member_state: str | None
    provider: str | None
    beneficiaries: list[str]
    start: date | None
    end: date | None
    modality: str | None
    stage: str | None
    submitted_at: datetime | None
    duplicate_of: str | None
    title_similarity: float


OPEN_STAGES = [s.value for s in Stage if s not in TERMINAL_STAGES]


async def request_candidates(
    session: AsyncSession,
    *,
    request_id: str,
    member_state: str,
    title: str,
    topics: list[str],
    desired_start: date,
    desired_end: date,
    submitted_at: datetime,
    window_days: int,
    limit: int = 200,
) -> list[CandidateRow]:
    """Same-state requests in the window (open, or closed recently) and other states' requests overlapping."""
    sim = func.similarity(RequestRow.title, title)
    since = submitted_at - timedelta(days=window_days)
    same_state = and_(
        RequestRow.member_state == member_state,
        RequestRow.submitted_at >= since,
        or_(RequestRow.stage.in_(OPEN_STAGES), RequestRow.updated_at >= since),
    )
    other_state = and_(
        RequestRow.member_state != member_state,
        RequestRow.stage.in_(OPEN_STAGES),
        RequestRow.desired_start <= desired_end,
        RequestRow.desired_end >= desired_start,
    )
    related = or_(RequestRow.topics.overlap(cast(topics, ARRAY(String))), RequestRow.title.op("%")(title))
    stmt = (
        select(RequestRow, cast(sim, Float).label("sim"))
        .where(RequestRow.id != request_id, RequestRow.submitted_at < submitted_at)
        .where(or_(same_state, other_state), related)
        .where(RequestRow.stage.notin_([Stage.duplicate.value, Stage.consolidated.value]))
        .order_by(sim.desc())
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [
        CandidateRow(
            kind="request",
            id=r.id,
            title=r.title,
            description=r.description,
            topics=list(r.topics),
            member_state=r.member_state,
            provider=None,
            beneficiaries=list(r.beneficiaries),
            start=r.desired_start,
            end=r.desired_end,
            modality=r.modality,
            stage=r.stage,
            submitted_at=r.submitted_at,
            duplicate_of=r.duplicate_of,
            title_similarity=float(s),
        )
        for r, s in rows
    ]


async def activity_candidates(
    session: AsyncSession,
    *,
    member_state: str,
    title: str,
    topics: list[str],
    desired_start: date,
    desired_end: date,
    submitted_on: date,
    limit: int = 100,
) -> list[CandidateRow]:
    """Activities covering this member state, overlapping the period, not ended before submission."""
    a = CatalogueActivityRow
    sim = func.similarity(a.title, title)
    stmt = (
        select(a, cast(sim, Float).label("sim"))
        .where(literal(member_state) == any_(a.beneficiaries))
        .where(or_(a.start.is_(None), a.start <= desired_end))
        .where(or_(a.end.is_(None), and_(a.end >= desired_start, a.end >= submitted_on)))
        .where(or_(a.topics.overlap(cast(topics, ARRAY(String))), a.title.op("%")(title)))
        .order_by(sim.desc())
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    return [
        CandidateRow(
            kind="activity",
            id=r.id,
            title=r.title,
            description=r.description,
            topics=list(r.topics),
            member_state=None,
            provider=r.provider,
            beneficiaries=list(r.beneficiaries),
            start=r.start,
            end=r.end,
            modality=r.modality,
            stage=None,
            submitted_at=None,
            duplicate_of=None,
            title_similarity=float(s),
        )
        for r, s in rows
    ]
