"""Proposes experts, a programme/funding partner and a meeting for an approved request."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.models import ExpertRow, MeetingRow, ProgrammeRow
from taflow.db.roster import experts_for_topics, next_meeting, programmes_for
from taflow.domain.models import MatchCandidate, MatchInput, MatchProposal, Meeting


def rank_experts(
    experts: list[ExpertRow], topics: set[str], member_state: str, limit: int
) -> list[MatchCandidate]:
    """Topic fit first, then lighter load (invitations in the last 12 months) so work spreads."""
    ranked: list[MatchCandidate] = []
    for e in experts:
        if e.home_administration == member_state:
            continue  # conflict of interest: never propose the requester's own administration
        shared = sorted(topics & set(e.topics))
        if not shared:
            continue
        fit = len(shared) / len(topics)
        load_penalty = min(e.invitations_12m, 10) * 0.02
        reasons = [f"covers {', '.join(shared)} ({len(shared)}/{len(topics)} topics)"]
        reasons.append(f"{e.invitations_12m} invitation(s) in the last 12 months")
        reasons.append(f"not from the requesting administration ({e.home_administration})")
        ranked.append(
            MatchCandidate(expert_id=e.id, name=e.name, score=round(fit - load_penalty, 4), reasons=reasons)
        )
    ranked.sort(key=lambda c: (-c.score, c.expert_id))
    return ranked[:limit]


def best_programme(programmes: list[ProgrammeRow], topics: set[str]) -> ProgrammeRow | None:
    scored = sorted(programmes, key=lambda p: (-len(topics & set(p.topics)), p.id))
    return scored[0] if scored else None


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


class MatchingActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessionmaker

    @activity.defn
    async def propose_match(self, inp: MatchInput) -> MatchProposal:
        topics = [t.value for t in inp.draft.topics]
        state = inp.member_state.value
        async with self._sessions() as session:
            experts = list(await experts_for_topics(session, topics, exclude_home=state))
            programmes = list(await programmes_for(session, topics, state))
            meeting = await next_meeting(session, inp.as_of.date())
        programme = best_programme(programmes, set(topics))
        return MatchProposal(
            candidates=rank_experts(experts, set(topics), state, inp.limit),
            programme_id=programme.id if programme else None,
            funding_partner=programme.funding_partner if programme else None,
            meeting=meeting_of(meeting),
        )
