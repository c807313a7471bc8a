"""The dedup check: retrieve candidates by index, judge them with the engine, attach the evidence.

It never rejects: it ranks earlier requests and catalogue activities and ASEC decides.
`run_dedup_check` is exactly what the workflow's activity runs; `taflow dedup-eval` calls it too.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio import activity

from taflow.db.candidates import (
    ActivityCandidate,
    NeedWindow,
    RequestCandidate,
    RequestScope,
    activities_by_id,
    activity_candidates,
    engine_of,
    request_candidates,
    requests_by_id,
)
from taflow.db.prepared import pooled
from taflow.db.term_stats import corpus_stats
from taflow.dedup.engine import CatalogueItem, Decision, Need, PriorOutcome, Relation, decide
from taflow.dedup.engine import Settings as EngineSettings
from taflow.dedup.text import analyze
from taflow.domain.enums import CandidateKind, DedupVerdict
from taflow.domain.models import DedupCheckInput, DedupResult, DuplicateCandidate

OPEN_START = date(1900, 1, 1)
OPEN_END = date(9999, 12, 31)
RELATIONS = {
    Relation.duplicate_request: DedupVerdict.duplicate_suspected,
    Relation.duplicate_activity: DedupVerdict.duplicate_suspected,
    Relation.consolidation: DedupVerdict.consolidation_suggested,
}


def need_of(inp: DedupCheckInput) -> Need:
    d = inp.draft
    return Need(
        id=inp.request_id,
        member_state=inp.member_state.value,
        submitted_at=inp.submitted_at,
        title=d.title,
        description=d.description,
        topics=[t.value for t in d.topics],
        modality=d.modality.value,
        desired_start=d.desired_start,
        desired_end=d.desired_end,
        beneficiaries=[b.value for b in d.beneficiaries],
    )


def _need(r: RequestCandidate) -> Need:
    return Need(
        id=r.id,
        member_state=r.member_state,
        submitted_at=r.submitted_at,
        title=r.title,
        description=r.description,
        topics=r.topics,
        modality=r.modality,
        desired_start=r.desired_start,
        desired_end=r.desired_end,
        beneficiaries=r.beneficiaries,
    )


def _item(a: ActivityCandidate) -> CatalogueItem:
    return CatalogueItem(
        id=a.id,
        provider=a.provider,
        title=a.title,
        description=a.description,
        topics=a.topics,
        beneficiaries=a.beneficiaries,
        start=a.start or OPEN_START,
        end=a.end or OPEN_END,
        modality=a.modality or "",
    )


def _prior(r: RequestCandidate) -> PriorOutcome:
    return PriorOutcome(
        duplicate_of=r.duplicate_of, consolidate_with=tuple(r.consolidate_with), closed=r.closed
    )


def result_of(
    decision: Decision, requests: dict[str, RequestCandidate], activities: dict[str, ActivityCandidate]
) -> DedupResult:
    """The engine's decision as reviewers read it: eligible candidates only, with their evidence."""
    shown: list[DuplicateCandidate] = []
    for rc in decision.candidates:
        relation = RELATIONS.get(rc.relation)
        if relation is None or not rc.eligible:
            continue
        target = rc.resolved_to or rc.candidate_id
        if any(c.id == target for c in shown):
            continue  # several folded duplicates lead to the same original: show it once, at its best
        request, act = requests.get(target), activities.get(target)
        ev = rc.evidence
        shown.append(
            DuplicateCandidate(
                kind=CandidateKind.activity if act else CandidateKind.request,
                id=target,
                title=(act.title if act else request.title if request else target),
                relation=relation,
                score=round(ev.score, 4),
                member_state=request.member_state if request else None,
                provider=act.provider if act else None,
                evidence={
                    "text_similarity": round(ev.text_similarity, 4),
                    "title_similarity": round(ev.title_similarity, 4),
                    "shared_topics": ev.shared_topics,
                    "period_overlap_days": ev.period_overlap_days,
                    "same_beneficiary": ev.same_beneficiary,
                    "matched_terms": ev.matched_terms,
                    "reasons": ev.reasons,
                    "via": rc.candidate_id if rc.resolved_to else None,
                },
            )
        )
    return DedupResult(
        verdict=DedupVerdict(decision.verdict.value),
        candidates=shown,
        duplicate_of=decision.duplicate_of,
        consolidate_with=decision.consolidate_with,
    )


async def run_dedup_check(engine: AsyncEngine, inp: DedupCheckInput, window_days: int) -> DedupResult:
    """Retrieve by index, add the canonical targets of folded duplicates, let the engine decide.

    The three retrievals are independent, so they run at once, each on its own connection: a check
    waits for the slowest of them, not for their sum. Every read is one prepared statement on a
    connection straight from the pool (`pooled`): no BEGIN and ROLLBACK around it, no SQLAlchemy
    Connection, no snapshot shared between reads (none is needed).
    """
    need = need_of(inp)
    own = analyze(f"{need.title}\n{need.description}")
    async with pooled(engine) as connection:
        own_stats = await corpus_stats(connection, own)
    # ask the index for the request's rarest terms: selective, and what a duplicate shares
    terms = sorted({t for t in own if own_stats.doc_freq.get(t, 0) > 0}, key=lambda t: own_stats.doc_freq[t])
    dismissed = set(inp.dismissed)
    window = NeedWindow(need.id, need.member_state, need.desired_start, need.desired_end, need.submitted_at)

    async def requests_in(scope: RequestScope) -> list[RequestCandidate]:
        async with pooled(engine) as s:
            return await request_candidates(s, window, terms, window_days, scope)

    async def activities_in() -> list[ActivityCandidate]:
        async with pooled(engine) as s:
            return await activity_candidates(
                s,
                member_state=need.member_state,
                terms=terms,
                desired_start=need.desired_start,
                desired_end=need.desired_end,
            )

    same_state, other_states, found = await asyncio.gather(
        requests_in(RequestScope.same_state), requests_in(RequestScope.other_states), activities_in()
    )
    requests = {r.id: r for r in [*same_state, *other_states]}
    activities = {a.id: a for a in found}
    targets = (
        {r.duplicate_of for r in requests.values() if r.duplicate_of} - requests.keys() - activities.keys()
    )
    async with pooled(engine) as connection:
        for r in await requests_by_id(connection, sorted(targets)):
            requests.setdefault(r.id, r)
        for a in await activities_by_id(connection, sorted(targets - requests.keys())):
            activities.setdefault(a.id, a)
        known: set[str] = set()
        for r in requests.values():
            known.update(r.search_text.split())
        for a in activities.values():
            known.update(a.search_text.split())
        stats = await corpus_stats(connection, known - set(own))
    stats.doc_freq.update(own_stats.doc_freq)
    decision = decide(
        need,
        [_need(r) for r in requests.values() if r.id not in dismissed and r.submitted_at < need.submitted_at],
        [_item(a) for a in activities.values() if a.id not in dismissed],
        {r.id: _prior(r) for r in requests.values()},
        stats=stats if stats.n_docs else None,
        settings=EngineSettings(request_window=timedelta(days=window_days)),
    )
    return result_of(decision, requests, activities)


class DedupActivities:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], window_days: int = 183) -> None:
        self._engine = engine_of(sessionmaker)
        self._window_days = window_days

    @activity.defn
    async def check_duplicates(self, inp: DedupCheckInput) -> DedupResult:
        return await run_dedup_check(self._engine, inp, self._window_days)
