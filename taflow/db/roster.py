"""Catalogue reads for matching: experts, programmes and the next meeting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import String, any_, cast, literal, or_, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import ExpertRow, MeetingRow, ProgrammeRow


async def experts_for_topics(
    session: AsyncSession, topics: list[str], exclude_home: str
) -> Sequence[ExpertRow]:
    """Experts sharing a topic, never from the requesting administration (conflict of interest)."""
    stmt = (
        select(ExpertRow)
        .where(ExpertRow.topics.overlap(cast(topics, ARRAY(String))))
        .where(ExpertRow.home_administration != exclude_home)
    )
    return (await session.execute(stmt)).scalars().all()


async def programmes_for(
    session: AsyncSession, topics: list[str], member_state: str
) -> Sequence[ProgrammeRow]:
    stmt = (
        select(ProgrammeRow)
        .where(ProgrammeRow.topics.overlap(cast(topics, ARRAY(String))))
        .where(literal(member_state) == any_(ProgrammeRow.beneficiaries))
    )
    return (await session.execute(stmt)).scalars().all()


async def next_meeting(session: AsyncSession, as_of: date, body: str | None = None) -> MeetingRow | None:
    """The next meeting whose agenda cut-off has not passed."""
    stmt = select(MeetingRow).where(MeetingRow.agenda_cutoff >= as_of)
    if body:
        stmt = stmt.where(MeetingRow.body == body)
    stmt = stmt.order_by(MeetingRow.agenda_cutoff, MeetingRow.starts_on).limit(1)
    return (await session.execute(stmt)).scalar_one_or_none()


async def expert_ids_exist(session: AsyncSession, ids: list[str]) -> set[str]:
    rows = await session.execute(select(ExpertRow.id).where(or_(*(ExpertRow.id == i for i in ids))))
    return set(rows.scalars())
