"""The dedup check: retrieve candidates by index, score them, and attach the evidence ASEC reads.

It never rejects: it ranks earlier requests and catalogue activities and a person decides.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.candidates import CandidateRow, activity_candidates, request_candidates
from taflow.domain.enums import CandidateKind, DedupVerdict
from taflow.domain.models import DedupCheckInput, DedupResult, DuplicateCandidate

SUSPECT_AT = 0.45
CONSOLIDATE_AT = 0.45
MAX_CANDIDATES = 5


def _overlap_days(c: CandidateRow, inp: DedupCheckInput) -> int:
    if c.start is None or c.end is None:
        return 0
    lo = max(c.start, inp.draft.desired_start)
    hi = min(c.end, inp.draft.desired_end)
    return max((hi - lo).days + 1, 0)


def score(c: CandidateRow, inp: DedupCheckInput) -> DuplicateCandidate:
    """A first, honest score: title trigram similarity, shared topics, period overlap."""
    topics = {t.value for t in inp.draft.topics}
    shared = sorted(topics & set(c.topics))
    topic_fit = len(shared) / max(len(topics | set(c.topics)), 1)
    overlap = _overlap_days(c, inp)
    value = round(0.6 * c.title_similarity + 0.3 * topic_fit + (0.1 if overlap else 0.0), 4)
    same_state = c.member_state == inp.member_state.value or inp.member_state.value in c.beneficiaries
    relation = (
        DedupVerdict.duplicate_suspected
        if c.kind == "activity" or c.member_state == inp.member_state.value
        else DedupVerdict.consolidation_suggested
    )
    return DuplicateCandidate(
        kind=CandidateKind(c.kind),
        id=c.duplicate_of or c.id if c.kind == "request" else c.id,
        title=c.title,
        relation=relation,
        score=value,
        member_state=c.member_state,
        provider=c.provider,
        evidence={
            "text_similarity": round(c.title_similarity, 4),
            "shared_topics": shared,
            "period_overlap_days": overlap,
            "same_beneficiary": same_state,
        },
    )


def verdict(candidates: list[DuplicateCandidate]) -> DedupVerdict:
    if any(c.relation is DedupVerdict.duplicate_suspected and c.score >= SUSPECT_AT for c in candidates):
        return DedupVerdict.duplicate_suspected
    if any(
        c.relation is DedupVerdict.consolidation_suggested and c.score >= CONSOLIDATE_AT for c in candidates
    ):
        return DedupVerdict.consolidation_suggested
    return DedupVerdict.clear


class DedupActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], window_days: int = 183) -> None:
        self._sessions = sessionmaker
        self._window_days = window_days

    @activity.defn
    async def check_duplicates(self, inp: DedupCheckInput) -> DedupResult:
        d = inp.draft
        topics = [t.value for t in d.topics]
        async with self._sessions() as session:
            rows = await request_candidates(
                session,
                request_id=inp.request_id,
                member_state=inp.member_state.value,
                title=d.title,
                topics=topics,
                desired_start=d.desired_start,
                desired_end=d.desired_end,
                submitted_at=inp.submitted_at,
                window_days=self._window_days,
            )
            rows += await activity_candidates(
                session,
                member_state=inp.member_state.value,
                title=d.title,
                topics=topics,
                desired_start=d.desired_start,
                desired_end=d.desired_end,
                submitted_on=inp.submitted_at.date(),
            )
        scored = [score(r, inp) for r in rows]
        kept = sorted(
            (c for c in scored if c.id not in inp.dismissed and c.score >= min(SUSPECT_AT, CONSOLIDATE_AT)),
            key=lambda c: -c.score,
        )
        best: dict[str, DuplicateCandidate] = {}
        for c in kept:
            best.setdefault(c.id, c)
        unique = list(best.values())[:MAX_CANDIDATES]
        return DedupResult(verdict=verdict(unique), candidates=unique)
