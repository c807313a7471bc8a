"""Proposes experts, a programme/funding partner and the next meeting for an approved request."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.models import ExpertRow, MeetingRow
from taflow.db.roster import experts_for_topics, next_meeting, programmes_for
from taflow.domain.models import MatchInput, MatchProposal, Meeting
from taflow.matching import ExpertProfile, ProgrammeProfile, propose_programmes, rank_experts

log = structlog.get_logger()


def meeting_of(row: MeetingRow | None) -> Meeting | None:
    if row is None:
        return None
    return Meeting(
        id=row.id,
        body=row.body,
        number=row.number,
        starts_on=row.starts_on,
        ends_on=row.ends_on,
        place=row.place,
        agenda_cutoff=row.agenda_cutoff,
    )


def profiles(rows: list[ExpertRow]) -> list[ExpertProfile]:
    """Experts whose catalogue entry is malformed are left out (and logged), never fatal to matching."""
    out: list[ExpertProfile] = []
    for row in rows:
        try:
            out.append(ExpertProfile.from_row(row))
        except ValueError as bad:
            log.warning("expert skipped", expert_id=row.id, reason=str(bad))
    return out


class MatchingActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessionmaker

    @activity.defn
    async def next_meeting(self, as_of: datetime) -> Meeting | None:
        """The next meeting whose agenda cut-off has not passed (after a missed one)."""
        async with self._sessions() as session:
            return meeting_of(await next_meeting(session, as_of.date() + timedelta(days=1)))

    @activity.defn
    async def propose_match(self, inp: MatchInput) -> MatchProposal:
        topics = [t.value for t in inp.draft.topics]
        state = inp.member_state.value
        async with self._sessions() as session:
            experts = list(await experts_for_topics(session, topics, exclude_home=state))
            programmes = list(await programmes_for(session, topics, state))
            meeting = meeting_of(await next_meeting(session, inp.as_of.date()))
        candidates = rank_experts(
            profiles(experts),
            topics=topics,
            modality=inp.draft.modality.value,
            member_state=state,
            meeting=meeting,
            limit=inp.limit,
        )
        funds = propose_programmes(
            [ProgrammeProfile.from_row(p) for p in programmes], topics=topics, member_state=state, limit=1
        )
        best = funds[0] if funds else None
        return MatchProposal(
            candidates=candidates,
            programme_id=best.programme_id if best else None,
            funding_partner=best.funding_partner if best else None,
            meeting=meeting,
        )
