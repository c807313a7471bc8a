"""Duplicate-detection scoring engine: pure functions, no I/O.

Two questions are asked about a new TA request (a ``Need``):

* is it a **duplicate**: of an earlier, still open request of the same member state submitted at most
  183 days before, or of a catalogue activity that lists the state (or ASEAN), overlaps the desired
  window and had not ended when the request was submitted? It points to the canonical item: the
  covering activity, else the first request of the need (a candidate that we judged a duplicate
  ourselves is resolved to its own target);
* else, should it be **consolidated** with earlier requests of other member states that express the
  same need with overlapping windows (never with a request that is itself a duplicate)?

The structural rules are hard filters (``eligibility``); text decides "same need". The text score
compares bags of analysed terms (stems and glossary concepts, see ``text.py``) with TF-IDF cosines,
title and whole text, plus the share of specific glossary concepts.

Corpus statistics: IDF comes from a ``CorpusStats`` object the caller supplies (document frequencies
over the catalogue and the requests known so far; ``CorpusStats.from_texts`` or ``add``). When none is
given, ``decide`` builds one from the need and its candidates only, which is good enough when the
caller passes a few hundred retrieved candidates, but the supplied one is preferred. Nothing else
needs the full corpus, so a DB-backed caller can first retrieve candidates by index (full text /
trigram on the expanded text, filtered by state and period) and then call ``decide`` on those.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, field_validator

from taflow.dedup.text import CONCEPT_PREFIX, Glossary, analyze, default_glossary

ASEAN = "ASEAN"
REQUEST_WINDOW = timedelta(days=183)


# ------------------------------------------------------------------------------------------------ types
class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Need(_Frozen):
    """A TA request as the dedup check sees it (``beneficiaries`` empty means the requesting state)."""

    id: str
    member_state: str
    submitted_at: datetime
    title: str
    description: str
    topics: list[str] = []
    modality: str = ""
    desired_start: date | None = None
    desired_end: date | None = None
    beneficiaries: list[str] = []

    @field_validator("modality")
    @classmethod
    def _modality(cls, v: str) -> str:
        return v.replace("_", " ").strip().lower()

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.description}"


class CatalogueItem(_Frozen):
    """An activity planned, running or recently completed (WCO, ROCB A/P, dialogue partners, ASEC)."""

    id: str
    provider: str
    title: str
    description: str
    topics: list[str] = []
    beneficiaries: list[str] = []
    start: date | None = None
    end: date | None = None
    modality: str = ""

    @property
    def text(self) -> str:
        return f"{self.title}\n{self.description}"

    def lists(self, member_state: str) -> bool:
        return ASEAN in self.beneficiaries or member_state in self.beneficiaries


Candidate = Need | CatalogueItem


class Relation(StrEnum):
    duplicate_request = "duplicate_request"  # same state, earlier, still open, same need
    duplicate_activity = "duplicate_activity"  # activity already covers the need for this state
    consolidation = "consolidation"  # other state, overlapping windows, same need
    none = "none"  # shown for context only (fails a structural rule or too dissimilar)


class Verdict(StrEnum):
    clear = "clear"
    duplicate_suspected = "duplicate_suspected"
    consolidation_suggested = "consolidation_suggested"


class Evidence(_Frozen):
    """Why a candidate resembles a need: what a reviewer sees next to the score."""

    candidate_id: str
    score: float  # 0..1, the "same need" score
    text_similarity: float  # TF-IDF cosine over whole texts (0..1)
    title_similarity: float
    shared_topics: tuple[str, ...]
    period_overlap_days: int  # desired window vs candidate window (0 when disjoint or unknown)
    same_beneficiary: bool  # same member state (request) / state listed or ASEAN (activity)
    matched_terms: tuple[str, ...]  # shared terms after glossary expansion, most telling first
    reasons: tuple[str, ...] = ()


class RankedCandidate(_Frozen):
    candidate_id: str
    kind: str  # "request" | "activity"
    relation: Relation
    eligible: bool  # passes the structural rules for ``relation``
    evidence: Evidence
    resolved_to: str | None = None  # canonical target when the candidate is itself a duplicate


class Decision(_Frozen):
    need_id: str
    verdict: Verdict
    duplicate_of: str | None
    consolidate_with: tuple[str, ...]
    candidates: tuple[RankedCandidate, ...]


class PriorOutcome(_Frozen):
    """What was concluded for an earlier request (by us or by ASEC): used to fold duplicates."""

    duplicate_of: str | None = None
    consolidate_with: tuple[str, ...] = ()
    closed: bool = False  # no longer open (withdrawn, rejected, completed, ...)


class Settings(_Frozen):
    """Thresholds on ``Evidence.score``: few and round on purpose."""

    duplicate_request: float = 0.5
    duplicate_activity: float = 0.5
    consolidation: float = 0.5
    shown: float = 0.2  # candidates below this are not listed
    max_shown: int = 10
    request_window: timedelta = REQUEST_WINDOW


# ------------------------------------------------------------------------------------------ corpus stats
@dataclass
class CorpusStats:
    """Document frequencies of analysed terms: the only corpus-wide input of the scorer.

    Build it from the catalogue and the requests known so far (``from_texts``), keep it up to date
    with ``add``; a DB-backed caller can persist ``n_docs`` and ``doc_freq``.
    """

    n_docs: int = 0
    doc_freq: Counter[str] = field(default_factory=Counter)

    def add(self, text: str, glossary: Glossary | None = None) -> None:
        self.n_docs += 1
        self.doc_freq.update(set(_terms(text, glossary or default_glossary())))

    @classmethod
    def from_texts(cls, texts: Iterable[str], glossary: Glossary | None = None) -> CorpusStats:
        stats = cls()
        for t in texts:
            stats.add(t, glossary)
        return stats

    def idf(self, term: str) -> float:
        return math.log((self.n_docs + 1) / (self.doc_freq.get(term, 0) + 1)) + 1.0


@lru_cache(maxsize=8192)
def _terms_cached(text: str, glossary: Glossary) -> tuple[str, ...]:
    return tuple(analyze(text, glossary))


def _terms(text: str, glossary: Glossary) -> tuple[str, ...]:
    return _terms_cached(text, glossary)


# ----------------------------------------------------------------------------------------------- scoring
def _vector(terms: Sequence[str], stats: CorpusStats) -> dict[str, float]:
    tf = Counter(terms)
    vec = {t: (1.0 + math.log(c)) * stats.idf(t) for t, c in tf.items()}
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {t: v / norm for t, v in vec.items()} if norm else {}


def _cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return sum(v * b.get(t, 0.0) for t, v in a.items())


def _window(c: Candidate) -> tuple[date | None, date | None]:
    if isinstance(c, CatalogueItem):
        return c.start, c.end
    return c.desired_start, c.desired_end


def overlap_days(a: tuple[date | None, date | None], b: tuple[date | None, date | None]) -> int:
    """Days shared by two inclusive date ranges (0 if disjoint or unknown)."""
    if None in a or None in b:
        return 0
    start = max(a[0], b[0])  # type: ignore[type-var]
    end = min(a[1], b[1])  # type: ignore[type-var]
    return max(0, (end - start).days + 1)  # type: ignore[operator]


def _same_beneficiary(need: Need, c: Candidate) -> bool:
    if isinstance(c, CatalogueItem):
        return c.lists(need.member_state)
    return c.member_state == need.member_state


def score_pair(
    need: Need,
    candidate: Candidate,
    stats: CorpusStats | None = None,
    glossary: Glossary | None = None,
) -> Evidence:
    """How much ``candidate`` expresses the same need as ``need`` (text and topics; no structural rule)."""
    g = glossary or default_glossary()
    if stats is None:
        stats = CorpusStats.from_texts([need.text, candidate.text], g)
    n_title, n_all = _terms(need.title, g), _terms(need.text, g)
    c_title, c_all = _terms(candidate.title, g), _terms(candidate.text, g)
    v_need, v_cand = _vector(n_all, stats), _vector(c_all, stats)
    text_sim = _cosine(v_need, v_cand)
    title_sim = _cosine(_vector(n_title, stats), _vector(c_title, stats))
    shared_topics = tuple(t for t in need.topics if t in candidate.topics)
    topic_union = set(need.topics) | set(candidate.topics)
    topic_sim = len(shared_topics) / len(topic_union) if topic_union else 0.0

    shared = set(v_need) & set(v_cand)
    ranked = sorted(shared, key=lambda t: -(v_need[t] * v_cand[t]))
    matched = tuple(g.label(t) for t in ranked[:8])

    score = _combine(text_sim, title_sim, topic_sim)
    ov = overlap_days((need.desired_start, need.desired_end), _window(candidate))
    same_ben = _same_beneficiary(need, candidate)

    reasons: list[str] = []
    reasons.append(f"text similarity {text_sim:.2f} (titles {title_sim:.2f})")
    concepts = [g.label(t) for t in ranked if t.startswith(CONCEPT_PREFIX)][:4]
    if concepts:
        reasons.append("shared concepts: " + ", ".join(concepts))
    if shared_topics:
        reasons.append("shared topics: " + ", ".join(shared_topics))
    else:
        reasons.append("no shared topic")
    reasons.append(f"windows overlap {ov} days" if ov else "windows do not overlap")
    return Evidence(
        candidate_id=candidate.id,
        score=score,
        text_similarity=round(text_sim, 4),
        title_similarity=round(title_sim, 4),
        shared_topics=shared_topics,
        period_overlap_days=ov,
        same_beneficiary=same_ben,
        matched_terms=matched,
        reasons=tuple(reasons),
    )


def _combine(text_sim: float, title_sim: float, topic_sim: float) -> float:
    s = 0.6 * text_sim + 0.25 * title_sim + 0.15 * topic_sim
    return round(min(1.0, max(0.0, s)), 4)


# --------------------------------------------------------------------------------------- structural rules
def request_duplicate_rule(need: Need, earlier: Need, window: timedelta = REQUEST_WINDOW) -> str | None:
    """None when ``earlier`` may be a request duplicate target for ``need``, else why not."""
    if earlier.member_state != need.member_state:
        return "another member state"
    if earlier.submitted_at >= need.submitted_at:
        return "not submitted before"
    if need.submitted_at - earlier.submitted_at > window:
        return f"submitted more than {window.days} days before"
    return None


def activity_duplicate_rule(need: Need, item: CatalogueItem) -> str | None:
    """None when ``item`` may cover ``need`` (lists the state, overlaps, not ended), else why not."""
    if not item.lists(need.member_state):
        return f"does not list {need.member_state}"
    if item.end is not None and item.end < need.submitted_at.date():
        return "ended before the request was submitted"
    if overlap_days((need.desired_start, need.desired_end), (item.start, item.end)) <= 0:
        return "does not overlap the desired window"
    return None


def consolidation_rule(need: Need, earlier: Need) -> str | None:
    """None when ``earlier`` may be consolidated with ``need``, else why not."""
    if earlier.member_state == need.member_state:
        return "same member state"
    if earlier.submitted_at >= need.submitted_at:
        return "not submitted before"
    if overlap_days((need.desired_start, need.desired_end), (earlier.desired_start, earlier.desired_end)) <= 0:
        return "desired windows do not overlap"
    return None


# ---------------------------------------------------------------------------------------------- decision
def decide(
    need: Need,
    earlier_needs: Sequence[Need],
    catalogue: Sequence[CatalogueItem],
    prior_outcomes: Mapping[str, PriorOutcome] | None = None,
    *,
    stats: CorpusStats | None = None,
    settings: Settings | None = None,
    glossary: Glossary | None = None,
) -> Decision:
    """Judge ``need`` against earlier requests and catalogue activities (already retrieved candidates).

    ``prior_outcomes`` maps earlier request ids to what was concluded for them (our own earlier
    decisions in a replay, or ASEC's); a duplicate is never a target and resolves to its canonical item.
    """
    g = glossary or default_glossary()
    cfg = settings or Settings()
    prior = prior_outcomes or {}
    earlier = [r for r in earlier_needs if r.id != need.id and r.submitted_at < need.submitted_at]
    if stats is None:
        stats = CorpusStats.from_texts([need.text, *(r.text for r in earlier), *(a.text for a in catalogue)], g)
    by_id: dict[str, Candidate] = {r.id: r for r in earlier}
    by_id.update({a.id: a for a in catalogue})

    ranked: list[RankedCandidate] = []
    dup_options: list[tuple[float, int, str]] = []  # (score, priority, target id)
    con_options: list[tuple[float, str]] = []

    for item in catalogue:
        ev = score_pair(need, item, stats, g)
        why_not = activity_duplicate_rule(need, item)
        eligible = why_not is None
        if eligible and ev.score >= cfg.duplicate_activity:
            dup_options.append((ev.score, 1, item.id))
        if why_not:
            ev = _with_reason(ev, f"not a duplicate target: {why_not}")
        rel = Relation.duplicate_activity if eligible else Relation.none
        ranked.append(
            RankedCandidate(candidate_id=item.id, kind="activity", relation=rel, eligible=eligible, evidence=ev)
        )

    for r in earlier:
        outcome = prior.get(r.id)
        ev = score_pair(need, r, stats, g)
        if outcome is not None and outcome.duplicate_of:
            target = _canonical(r.id, prior)
            resolved = by_id.get(target)
            ev = _with_reason(ev, f"{r.id} was judged a duplicate of {target}")
            ok = False
            if r.member_state == need.member_state and resolved is not None and ev.score >= cfg.duplicate_request:
                if isinstance(resolved, CatalogueItem):
                    ok = activity_duplicate_rule(need, resolved) is None
                else:
                    ok = request_duplicate_rule(need, resolved, cfg.request_window) is None and not _closed(
                        resolved.id, prior
                    )
            if ok:
                dup_options.append((ev.score, 0, target))
            rel = Relation.duplicate_request if ok else Relation.none
            ranked.append(
                RankedCandidate(
                    candidate_id=r.id, kind="request", relation=rel, eligible=ok, evidence=ev, resolved_to=target
                )
            )
            continue
        if r.member_state == need.member_state:
            why_not = request_duplicate_rule(need, r, cfg.request_window)
            if why_not is None and _closed(r.id, prior):
                why_not = "no longer open"
            eligible = why_not is None
            if eligible and ev.score >= cfg.duplicate_request:
                dup_options.append((ev.score, 0, r.id))
            if why_not:
                ev = _with_reason(ev, f"not a duplicate target: {why_not}")
            rel = Relation.duplicate_request if eligible else Relation.none
        else:
            why_not = consolidation_rule(need, r)
            eligible = why_not is None
            if eligible and ev.score >= cfg.consolidation:
                con_options.append((ev.score, r.id))
            if why_not:
                ev = _with_reason(ev, f"not for consolidation: {why_not}")
            rel = Relation.consolidation if eligible else Relation.none
        ranked.append(
            RankedCandidate(candidate_id=r.id, kind="request", relation=rel, eligible=eligible, evidence=ev)
        )

    duplicate_of: str | None = None
    if dup_options:
        # the covering activity is canonical over a request; then the best score
        dup_options.sort(key=lambda o: (-o[1], -o[0]))
        duplicate_of = dup_options[0][2]

    consolidate: list[str] = []
    if duplicate_of is None and con_options:
        con_options.sort(key=lambda o: -o[0])
        chosen = {cid for _, cid in con_options}
        # groups are complete: bring in the earlier members of a chosen request's group
        for cid in list(chosen):
            for other in prior.get(cid, PriorOutcome()).consolidate_with:
                cand = by_id.get(other)
                if isinstance(cand, Need) and consolidation_rule(need, cand) is None:
                    chosen.add(other)
        consolidate = sorted(chosen)

    ranked.sort(key=lambda rc: (-rc.eligible, -rc.evidence.score))
    shown = tuple(rc for rc in ranked if rc.evidence.score >= cfg.shown)[: cfg.max_shown]
    if duplicate_of:
        verdict = Verdict.duplicate_suspected
    elif consolidate:
        verdict = Verdict.consolidation_suggested
    else:
        verdict = Verdict.clear
    return Decision(
        need_id=need.id,
        verdict=verdict,
        duplicate_of=duplicate_of,
        consolidate_with=tuple(consolidate),
        candidates=shown,
    )


def _canonical(rid: str, prior: Mapping[str, PriorOutcome]) -> str:
    seen = {rid}
    cur = rid
    while (o := prior.get(cur)) is not None and o.duplicate_of and o.duplicate_of not in seen:
        cur = o.duplicate_of
        seen.add(cur)
    return cur


def _closed(rid: str, prior: Mapping[str, PriorOutcome]) -> bool:
    o = prior.get(rid)
    return o is not None and o.closed


def _with_reason(ev: Evidence, reason: str) -> Evidence:
    return ev.model_copy(update={"reasons": (*ev.reasons, reason)})
