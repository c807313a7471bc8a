"""Duplicate-detection scoring engine: pure functions, no I/O.

Two questions are asked about a new TA request (a ``Need``):

* is it a **duplicate**: of an earlier, still open request of the same member state submitted at most
  183 days before, or of a catalogue activity that lists the state (or ASEAN), overlaps the desired
  window and had not ended when the request was submitted? It points to the canonical item: the
  covering activity, else the first request of the need (a candidate that we judged a duplicate
  ourselves is resolved to its own target);
* else, should it be **consolidated** with earlier requests of other member states that express the
  same need with overlapping windows (never with a request that is itself a duplicate)?

The structural rules are hard filters (``*_rule`` functions); the text decides "same need". The
score (``score_pair``) is the mean of four similarities: TF-IDF cosines of the whole texts, of the
titles and of the need cores (title + the sentences that ask for help), and the overlap of topics;
terms are stems and glossary concepts (acronyms, expansions, synonyms: see ``text.py`` and
``glossary.toml``). A request that says it restates an earlier one gets a bonus against its own
state's requests; two needs that name different members of a glossary family (e-waste vs plastic
waste, express cargo vs passengers) are marked down.

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

from taflow.dedup.text import (
    CONCEPT_PREFIX,
    Glossary,
    analyze,
    default_glossary,
    family_conflicts,
    need_core,
    says_resubmitted,
)

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
    desired_start: date
    desired_end: date
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
    start: date
    end: date
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
    core_similarity: float  # title + the sentences that ask for help
    shared_topics: list[str]
    period_overlap_days: int  # desired window vs candidate window (0 when disjoint or unknown)
    same_beneficiary: bool  # same member state (request) / state listed or ASEAN (activity)
    matched_terms: list[str]  # shared terms after glossary expansion, most telling first
    reasons: list[str] = []


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
    consolidate_with: list[str]
    candidates: list[RankedCandidate]


class PriorOutcome(_Frozen):
    """What was concluded for an earlier request (by us or by ASEC): used to fold duplicates."""

    duplicate_of: str | None = None
    consolidate_with: tuple[str, ...] = ()
    closed: bool = False  # no longer open (withdrawn, rejected, completed, ...)


class Settings(_Frozen):
    """Thresholds on ``Evidence.score``: few and round on purpose (one for duplicates, requests and
    activities alike, one for consolidation); chosen on the dev set, see the test module."""

    duplicate_request: float = 0.45
    duplicate_activity: float = 0.45
    consolidation: float = 0.5
    shown: float = 0.25  # candidates below this are not listed
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
        """Count one document (``title + "\\n" + description``, as ``Need.text``)."""
        self.n_docs += 1
        self.doc_freq.update(set(_terms_cached(text, glossary or default_glossary())))

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


# ----------------------------------------------------------------------------------------------- scoring
RESUBMISSION_BONUS = 0.1  # a request that says it restates an earlier one, vs its own state's requests
CONFLICT_FACTOR = 0.5  # the two needs name different members of a glossary family
MODALITY_PENALTY = 0.1  # the two ask for different kinds of help (group learning vs advisory mission)


_Weights = tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class _Profile:
    """Analysed terms of one request or activity, with sublinear term frequencies (cached by text)."""

    title: _Weights
    full: _Weights
    core: _Weights
    core_terms: frozenset[str]
    resubmitted: bool


def _tf(terms: Sequence[str]) -> _Weights:
    return tuple((t, 1.0 + math.log(c)) for t, c in Counter(terms).items())


@lru_cache(maxsize=8192)
def _profile_cached(title: str, description: str, glossary: Glossary) -> _Profile:
    core = analyze(need_core(title, description), glossary)
    text = f"{title}\n{description}"
    return _Profile(
        title=_tf(analyze(title, glossary)),
        full=_tf(_terms_cached(text, glossary)),
        core=_tf(core),
        core_terms=frozenset(core),
        resubmitted=says_resubmitted(text, glossary),
    )


def _profile(item: Candidate, glossary: Glossary) -> _Profile:
    return _profile_cached(item.title, item.description, glossary)


class _Idf:
    """IDF lookups memoised for one decision (the statistics do not change meanwhile)."""

    def __init__(self, stats: CorpusStats) -> None:
        self._stats = stats
        self.memo: dict[str, float] = {}

    def __call__(self, term: str) -> float:
        v = self.memo.get(term)
        if v is None:
            v = self.memo[term] = self._stats.idf(term)
        return v


@dataclass(frozen=True)
class _Query:
    """The need's TF-IDF vectors, normalised and multiplied by IDF once more, so that the cosine with
    a candidate is one pass over the candidate's terms: sum(tf_c * q) / |c|."""

    title: dict[str, float]
    full: dict[str, float]
    core: dict[str, float]


def _query_vector(weights: _Weights, idf: _Idf) -> dict[str, float]:
    vec = {t: w * idf(t) for t, w in weights}
    norm = math.sqrt(sum(v * v for v in vec.values()))
    return {t: v * idf(t) / norm for t, v in vec.items()} if norm else {}


def _query(p: _Profile, idf: _Idf) -> _Query:
    return _Query(_query_vector(p.title, idf), _query_vector(p.full, idf), _query_vector(p.core, idf))


def _cosine(query: Mapping[str, float], weights: _Weights, idf: _Idf) -> tuple[float, dict[str, float]]:
    """Cosine between the need (``query``) and a candidate's weights, and each shared term's part.

    The hottest loop of a check (three calls per candidate): lookups are bound to locals and the
    IDF memo is read directly, falling back to the call only for a term not seen yet."""
    dot = 0.0
    sq = 0.0
    shared: dict[str, float] = {}
    known = idf.memo.get
    in_query = query.get
    for t, w in weights:
        i = known(t)
        if i is None:
            i = idf(t)
        wi = w * i
        sq += wi * wi
        q = in_query(t)
        if q is not None:
            part = w * q
            shared[t] = part
            dot += part
    if not sq:
        return 0.0, {}
    norm = math.sqrt(sq)
    return dot / norm, {t: v / norm for t, v in shared.items()}


def _window(c: Candidate) -> tuple[date, date]:
    if isinstance(c, CatalogueItem):
        return c.start, c.end
    return c.desired_start, c.desired_end


def overlap_days(a: tuple[date, date], b: tuple[date, date]) -> int:
    """Days shared by two inclusive date ranges (0 if disjoint)."""
    return max(0, (min(a[1], b[1]) - max(a[0], b[0])).days + 1)


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
    """How much ``candidate`` expresses the same need as ``need``: text, topics, who asks.

    The score is the mean of four similarities in 0..1: TF-IDF cosine of the whole texts, of the
    titles, of the need cores (title and help-wanted sentences) and the Jaccard overlap of topics;
    plus ``RESUBMISSION_BONUS`` when the need says it restates an earlier request and the candidate
    is a request of the same state; times ``CONFLICT_FACTOR`` when the two cores name different
    members of a glossary family (e-waste vs plastic waste, express cargo vs passengers, ...).
    Structural rules (states, dates) are not applied here: see ``decide``.
    """
    g = glossary or default_glossary()
    if stats is None:
        stats = CorpusStats.from_texts([need.text, candidate.text], g)
    idf = _Idf(stats)
    return _score(need, _profile(need, g), _query(_profile(need, g), idf), candidate, idf, g)


def _score(need: Need, np_: _Profile, nq: _Query, candidate: Candidate, idf: _Idf, g: Glossary) -> Evidence:
    cp = _profile(candidate, g)
    text_sim, parts = _cosine(nq.full, cp.full, idf)
    title_sim, _ = _cosine(nq.title, cp.title, idf)
    core_sim, _ = _cosine(nq.core, cp.core, idf)
    shared_topics = [t for t in need.topics if t in candidate.topics]
    topic_union = set(need.topics) | set(candidate.topics)
    topic_sim = len(shared_topics) / len(topic_union) if topic_union else 0.0
    score = (text_sim + title_sim + core_sim + topic_sim) / 4

    reasons: list[str] = [
        f"text similarity {text_sim:.2f}, titles {title_sim:.2f}, need cores {core_sim:.2f}"
    ]
    ranked = sorted(parts, key=lambda t: (-parts[t], t))
    concepts = [g.label(t) for t in ranked if t.startswith(CONCEPT_PREFIX)][:4]
    if concepts:
        reasons.append("shared concepts: " + ", ".join(concepts))
    reasons.append("shared topics: " + ", ".join(shared_topics) if shared_topics else "no shared topic")

    same_ben = _same_beneficiary(need, candidate)
    if isinstance(candidate, Need) and same_ben and np_.resubmitted:
        score += RESUBMISSION_BONUS
        reasons.append("the request says it restates an earlier one of the same state")
    conflicts = family_conflicts(np_.core_terms, cp.core_terms, g)
    if conflicts:
        score *= CONFLICT_FACTOR
        for fid in conflicts:
            mine = sorted(g.label(t) for t in np_.core_terms & g.families[fid])
            theirs = sorted(g.label(t) for t in cp.core_terms & g.families[fid])
            reasons.append(f"different need: {', '.join(mine)} vs {', '.join(theirs)}")

    if need.modality and candidate.modality:
        mine_kind, their_kind = g.modality_group(need.modality), g.modality_group(candidate.modality)
        if mine_kind != their_kind:
            score -= MODALITY_PENALTY
            reasons.append(f"different kind of help: {need.modality} vs {candidate.modality}")

    ov = overlap_days((need.desired_start, need.desired_end), _window(candidate))
    reasons.append(f"windows overlap {ov} days" if ov else "windows do not overlap")
    return Evidence.model_construct(  # built from our own computed values: no validation needed
        candidate_id=candidate.id,
        score=round(min(1.0, max(0.0, score)), 4),
        text_similarity=round(text_sim, 4),
        title_similarity=round(title_sim, 4),
        core_similarity=round(core_sim, 4),
        shared_topics=shared_topics,
        period_overlap_days=ov,
        same_beneficiary=same_ben,
        matched_terms=[g.label(t) for t in ranked[:8]],
        reasons=reasons,
    )


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
    if item.end < need.submitted_at.date():
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
    if (
        overlap_days((need.desired_start, need.desired_end), (earlier.desired_start, earlier.desired_end))
        <= 0
    ):
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
        stats = CorpusStats.from_texts(
            [need.text, *(r.text for r in earlier), *(a.text for a in catalogue)], g
        )
    idf = _Idf(stats)
    np_ = _profile(need, g)
    nq = _query(np_, idf)
    by_id: dict[str, Candidate] = {r.id: r for r in earlier}
    by_id.update({a.id: a for a in catalogue})

    ranked: list[RankedCandidate] = []
    dup_options: list[tuple[float, int, str]] = []  # (score, priority, target id)
    con_options: list[tuple[float, str]] = []

    for item in catalogue:
        ev = _score(need, np_, nq, item, idf, g)
        why_not = activity_duplicate_rule(need, item)
        eligible = why_not is None
        if eligible and ev.score >= cfg.duplicate_activity:
            dup_options.append((ev.score, 1, item.id))
        if why_not:
            ev = _with_reason(ev, f"not a duplicate target: {why_not}")
        rel = Relation.duplicate_activity if eligible else Relation.none
        ranked.append(
            RankedCandidate.model_construct(
                candidate_id=item.id, kind="activity", relation=rel, eligible=eligible, evidence=ev
            )
        )

    for r in earlier:
        outcome = prior.get(r.id)
        ev = _score(need, np_, nq, r, idf, g)
        if outcome is not None and outcome.duplicate_of:
            # folded into its canonical item: never a target itself, but its original may be
            target = _canonical(r.id, prior)
            resolved = by_id.get(target)
            ev = _with_reason(ev, f"{r.id} was judged a duplicate of {target}")
            rel, ok = Relation.none, False
            if isinstance(resolved, CatalogueItem):
                if r.member_state == need.member_state and activity_duplicate_rule(need, resolved) is None:
                    rel, ok = Relation.duplicate_activity, True
                    if ev.score >= cfg.duplicate_request:
                        dup_options.append((ev.score, 1, target))
            elif isinstance(resolved, Need) and not _closed(resolved.id, prior):
                if resolved.member_state == need.member_state:
                    if request_duplicate_rule(need, resolved, cfg.request_window) is None:
                        rel, ok = Relation.duplicate_request, True
                        if ev.score >= cfg.duplicate_request:
                            dup_options.append((ev.score, 0, target))
                elif consolidation_rule(need, resolved) is None:
                    rel, ok = Relation.consolidation, True
                    if ev.score >= cfg.consolidation:
                        con_options.append((ev.score, target))
            ranked.append(
                RankedCandidate.model_construct(
                    candidate_id=r.id,
                    kind="request",
                    relation=rel,
                    eligible=ok,
                    evidence=ev,
                    resolved_to=target,
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
            if why_not is None and _closed(r.id, prior):
                why_not = "no longer open"
            eligible = why_not is None
            if eligible and ev.score >= cfg.consolidation:
                con_options.append((ev.score, r.id))
            if why_not:
                ev = _with_reason(ev, f"not for consolidation: {why_not}")
            rel = Relation.consolidation if eligible else Relation.none
        ranked.append(
            RankedCandidate.model_construct(
                candidate_id=r.id, kind="request", relation=rel, eligible=eligible, evidence=ev
            )
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
                if (
                    isinstance(cand, Need)
                    and not _closed(other, prior)
                    and consolidation_rule(need, cand) is None
                ):
                    chosen.add(other)
        consolidate = sorted(chosen)

    ranked.sort(key=lambda rc: (-rc.eligible, -rc.evidence.score))
    shown = [rc for rc in ranked if rc.evidence.score >= cfg.shown][: cfg.max_shown]
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
        consolidate_with=consolidate,
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
    return ev.model_copy(update={"reasons": [*ev.reasons, reason]})
