"""Ranking experts and proposing programmes (taflow.matching): properties over generated rosters, examples."""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taflow.domain.enums import MemberState, Modality, Topic
from taflow.domain.models import MatchCandidate, Meeting
from taflow.matching import (
    ExpertProfile,
    ProgrammeProfile,
    exclusion_reason,
    parse_unavailable,
    propose_programmes,
    rank_experts,
    working_languages,
)
from taflow.reference import load_reference

STATES = [m.value for m in MemberState]
MODALITIES = [m.value for m in Modality]
TOPICS = [t.value for t in Topic][:8]  # a small pool, so rosters and requests overlap often
CATEGORIES = ["diagnostic facilitator", "technical and operational advisor", "expert trainer"]
HOMES = [*STATES, "WCO", "JP", "AU", "FR"]
LANGS = ["en", "km", "lo", "vi", "th", "id", "ms", "my", "pt", "fr", "ja"]
DAY0 = date(2027, 1, 1)
FACTORS = ("topic fit:", "category:", "language:", "availability:", "load:", "conflict of interest:")

PROPS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

days = st.integers(min_value=0, max_value=120).map(lambda n: DAY0 + timedelta(days=n))


@st.composite
def periods(draw: st.DrawFn) -> tuple[date, date]:
    start = draw(days)
    return (start, start + timedelta(days=draw(st.integers(0, 20))))


@st.composite
def experts(draw: st.DrawFn, ident: int) -> ExpertProfile:
    return ExpertProfile(
        id=f"EXP-{ident:04d}",
        name=f"Expert {ident}",
        category=draw(st.sampled_from(CATEGORIES)),
        topics=frozenset(draw(st.lists(st.sampled_from(TOPICS), min_size=1, max_size=4))),
        languages=frozenset(draw(st.lists(st.sampled_from(LANGS), min_size=1, max_size=3))),
        home_administration=draw(st.sampled_from(HOMES)),
        unavailable=tuple(draw(st.lists(periods(), max_size=3))),
        invitations_12m=draw(st.integers(0, 12)),
    )


@st.composite
def rosters(draw: st.DrawFn) -> list[ExpertProfile]:
    n = draw(st.integers(0, 25))
    return [draw(experts(i)) for i in range(n)]


@st.composite
def meetings(draw: st.DrawFn) -> Meeting:
    start = draw(days)
    number = draw(st.integers(40, 60))
    return Meeting(
        id=f"CCWG-{number}",
        body="CCWG",
        number=number,
        starts_on=start,
        ends_on=start + timedelta(days=draw(st.integers(0, 4))),
        place="Manila, Philippines",
        agenda_cutoff=start - timedelta(days=30),
    )


@dataclass(frozen=True)
class Req:
    topics: frozenset[str]
    modality: str
    member_state: str
    meeting: Meeting | None
    limit: int


requests = st.builds(
    Req,
    topics=st.frozensets(st.sampled_from(TOPICS), min_size=1, max_size=4),
    modality=st.sampled_from(MODALITIES),
    member_state=st.sampled_from(STATES),
    meeting=st.none() | meetings(),
    limit=st.integers(1, 10),
)


def rank(roster: list[ExpertProfile], req: Req) -> list[MatchCandidate]:
    return rank_experts(
        roster,
        topics=req.topics,
        modality=req.modality,
        member_state=req.member_state,
        meeting=req.meeting,
        limit=req.limit,
    )


def by_id(roster: list[ExpertProfile]) -> dict[str, ExpertProfile]:
    return {e.id: e for e in roster}


# --- properties: experts -------------------------------------------------------------------------


@PROPS
@given(roster=rosters(), req=requests)
def test_conflict_of_interest_never_violated(roster: list[ExpertProfile], req: Req) -> None:
    experts_ = by_id(roster)
    for c in rank(roster, req):
        assert experts_[c.expert_id].home_administration != req.member_state


@PROPS
@given(roster=rosters(), req=requests.filter(lambda r: r.meeting is not None))
def test_unavailable_expert_never_proposed_for_the_meeting(roster: list[ExpertProfile], req: Req) -> None:
    assert req.meeting is not None
    experts_ = by_id(roster)
    for c in rank(roster, req):
        for a, b in experts_[c.expert_id].unavailable:
            day = req.meeting.starts_on
            while day <= req.meeting.ends_on:
                assert not a <= day <= b, f"{c.expert_id} unavailable {a}..{b} proposed for {day}"
                day += timedelta(days=1)


@PROPS
@given(roster=rosters(), req=requests)
def test_proposals_are_exactly_the_best_eligible(roster: list[ExpertProfile], req: Req) -> None:
    """Every proposal passes the hard rules, shares a topic, and nobody eligible left out outranks it."""
    result = rank(roster, req)
    eligible = [
        e
        for e in roster
        if exclusion_reason(e, topics=req.topics, member_state=req.member_state, meeting=req.meeting) is None
    ]
    assert len(result) == min(req.limit, len(eligible))
    experts_ = by_id(roster)
    for c in result:
        assert experts_[c.expert_id].topics & req.topics
        assert 0.0 <= c.score <= 1.0
    keys = [(-c.score, experts_[c.expert_id].invitations_12m, c.expert_id) for c in result]
    assert keys == sorted(keys)
    if result and len(eligible) > len(result):
        chosen = {c.expert_id for c in result}
        best_left = rank_experts(
            [e for e in eligible if e.id not in chosen],
            topics=req.topics,
            modality=req.modality,
            member_state=req.member_state,
            meeting=req.meeting,
            limit=1,
        )[0]
        last = result[-1]
        assert (-last.score, experts_[last.expert_id].invitations_12m, last.expert_id) < (
            -best_left.score,
            experts_[best_left.expert_id].invitations_12m,
            best_left.expert_id,
        )


@PROPS
@given(roster=rosters(), req=requests, seed=st.integers(0, 2**32 - 1))
def test_ranking_ignores_input_order(roster: list[ExpertProfile], req: Req, seed: int) -> None:
    shuffled = roster[:]
    random.Random(seed).shuffle(shuffled)
    assert rank(shuffled, req) == rank(roster, req)


@PROPS
@given(
    roster=rosters(),
    req=requests,
    twin=experts(9000),
    loads=st.lists(st.integers(0, 30), min_size=2, max_size=2, unique=True).map(sorted),
)
def test_equal_fit_less_loaded_ranks_first(
    roster: list[ExpertProfile], req: Req, twin: ExpertProfile, loads: list[int]
) -> None:
    light = replace(twin, id="EXP-9999", invitations_12m=loads[0])  # larger id: only load can put it first
    heavy = replace(twin, id="EXP-9001", invitations_12m=loads[1])
    ranked = [c.expert_id for c in rank([*roster, heavy, light], req)]
    if heavy.id in ranked:
        assert light.id in ranked
        assert ranked.index(light.id) < ranked.index(heavy.id)


@PROPS
@given(roster=rosters(), req=requests)
def test_reasons_name_the_factors(roster: list[ExpertProfile], req: Req) -> None:
    experts_ = by_id(roster)
    for c in rank(roster, req):
        e = experts_[c.expert_id]
        for factor in FACTORS:
            assert sum(r.startswith(factor) for r in c.reasons) == 1, (factor, c.reasons)
        topic = next(r for r in c.reasons if r.startswith("topic fit:"))
        assert all(t in topic for t in e.topics & req.topics)
        load = next(r for r in c.reasons if r.startswith("load:"))
        assert f"load: {e.invitations_12m} invitation" in load
        assert e.category in next(r for r in c.reasons if r.startswith("category:"))
        availability = next(r for r in c.reasons if r.startswith("availability:"))
        if req.meeting is not None:
            assert f"available for CCWG {req.meeting.number} (" in availability
        coi = next(r for r in c.reasons if r.startswith("conflict of interest:"))
        assert e.home_administration in coi and req.member_state in coi


# --- properties: programmes ----------------------------------------------------------------------


@st.composite
def programmes(draw: st.DrawFn) -> list[ProgrammeProfile]:
    n = draw(st.integers(0, 30))
    return [
        ProgrammeProfile(
            id=f"PRG-{i:03d}",
            name=f"Programme {i}",
            provider=draw(st.sampled_from(["WCO", "ROCB A/P"])),
            funding_partner=draw(st.sampled_from([None, "Japan", "Korea", "China", "Australia"])),
            topics=frozenset(draw(st.lists(st.sampled_from(TOPICS), min_size=1, max_size=5))),
            beneficiaries=tuple(
                draw(st.just(["ASEAN"]) | st.lists(st.sampled_from(STATES), min_size=1, max_size=5))
            ),
        )
        for i in range(n)
    ]


@PROPS
@given(progs=programmes(), req=requests)
def test_programmes_only_for_eligible_beneficiaries(progs: list[ProgrammeProfile], req: Req) -> None:
    index = {p.id: p for p in progs}
    result = propose_programmes(progs, topics=req.topics, member_state=req.member_state, limit=req.limit)
    for c in result:
        p = index[c.programme_id]
        assert req.member_state in p.beneficiaries or "ASEAN" in p.beneficiaries
        assert p.topics & req.topics
        assert c.funding_partner == p.funding_partner
        assert 0.0 <= c.score <= 1.0
        assert [r.split(":")[0] for r in c.reasons] == ["topic fit", "beneficiaries", "funding partner"]
    assert [(-c.score, c.programme_id) for c in result] == sorted((-c.score, c.programme_id) for c in result)
    eligible = [p for p in progs if p.topics & req.topics and req.member_state in p.eligible]
    assert len(result) == min(req.limit, len(eligible))


# --- examples -----------------------------------------------------------------------------------


def _expert(ident: str, **kw: Any) -> ExpertProfile:
    base: dict[str, Any] = {
        "id": ident,
        "name": ident,
        "category": "expert trainer",
        "topics": frozenset({"post-clearance-audit"}),
        "languages": frozenset({"en"}),
        "home_administration": "JP",
        "unavailable": (),
        "invitations_12m": 0,
    }
    return ExpertProfile(**(base | kw))


CCWG_44 = Meeting(
    id="CCWG-44",
    body="CCWG",
    number=44,
    starts_on=date(2027, 3, 16),
    ends_on=date(2027, 3, 18),
    place="Vientiane, Lao PDR",
    agenda_cutoff=date(2027, 2, 9),
)


def test_hard_exclusions_and_their_reasons() -> None:
    own = _expert("A", home_administration="kh")
    busy = _expert("B", unavailable=((date(2027, 3, 18), date(2027, 3, 30)),))  # last meeting day only
    off_topic = _expert("C", topics=frozenset({"green-customs"}))
    fine = _expert("D", unavailable=((date(2027, 3, 19), date(2027, 3, 30)),))  # the day after
    kw: dict[str, Any] = {"topics": ["post-clearance-audit"], "member_state": "KH", "meeting": CCWG_44}
    assert exclusion_reason(own, **kw) == "conflict of interest: from the requesting administration (KH)"
    assert exclusion_reason(busy, **kw) == "availability: unavailable for CCWG 44 (16-18 Mar 2027)"
    assert exclusion_reason(off_topic, **kw) == "topic fit: no requested topic in common"
    assert exclusion_reason(fine, **kw) is None
    ranked = rank_experts([own, busy, off_topic, fine], modality="training", limit=5, **kw)
    assert [c.expert_id for c in ranked] == ["D"]
    assert "availability: available for CCWG 44 (16-18 Mar 2027)" in ranked[0].reasons


def test_factors_move_the_score() -> None:
    kw: dict[str, Any] = {
        "topics": [Topic.post_clearance_audit, Topic.customs_valuation],
        "modality": Modality.training,
        "member_state": MemberState.KH,
        "meeting": None,
        "limit": 10,
    }
    experts_ = [
        _expert("both-topics", topics=frozenset({"post-clearance-audit", "customs-valuation"})),
        _expert("khmer", languages=frozenset({"km", "en"})),
        _expert("baseline"),
        _expert("advisor", category="technical and operational advisor"),
        _expert("loaded", invitations_12m=6),
        _expert("no-english", languages=frozenset({"fr"})),
    ]
    scores = {c.expert_id: c.score for c in rank_experts(experts_, **kw)}
    assert scores["both-topics"] > scores["khmer"] > scores["baseline"]
    assert scores["baseline"] > scores["advisor"]
    assert scores["baseline"] > scores["loaded"]
    assert scores["baseline"] > scores["no-english"]
    reasons = {c.expert_id: c.reasons for c in rank_experts(experts_, **kw)}
    assert "language: speaks Khmer, a working language of KH" in reasons["khmer"]
    assert "language: English, the baseline (does not speak Khmer)" in reasons["baseline"]
    assert "category: expert trainer suits training" in reasons["baseline"]
    assert (
        "category: technical and operational advisor (training calls for an expert trainer)"
        in (reasons["advisor"])
    )
    assert "load: 6 invitations in 12 months" in reasons["loaded"]
    assert "availability: not checked, no meeting fixed yet" in reasons["baseline"]


def test_working_languages() -> None:
    assert working_languages("KH") == ("km", "en")
    assert working_languages("TL") == ("pt", "tet", "en")
    assert working_languages("PH") == ("en",)
    assert working_languages("SG") == ("en",)


def test_english_is_the_working_language_for_ph() -> None:
    ranked = rank_experts(
        [_expert("A")],
        topics=["post-clearance-audit"],
        modality="workshop",
        member_state="PH",
        meeting=None,
        limit=1,
    )
    assert "language: English, the working language of PH" in ranked[0].reasons


def test_limit_and_empty_request() -> None:
    roster = [_expert(f"E{i}") for i in range(5)]
    kw: dict[str, Any] = {"modality": "workshop", "member_state": "VN", "meeting": None}
    assert rank_experts(roster, topics=["post-clearance-audit"], limit=0, **kw) == []
    assert rank_experts(roster, topics=[], limit=3, **kw) == []
    assert [c.expert_id for c in rank_experts(roster, topics=["post-clearance-audit"], limit=3, **kw)] == [
        "E0",
        "E1",
        "E2",
    ]


@pytest.mark.parametrize(
    "stored",
    [
        {"periods": [{"from": "2027-01-11", "to": "2027-01-29"}]},  # what the seed writes
        [{"from": "2027-01-11", "to": "2027-01-29"}],  # what reference.json holds
        {"from": "2027-01-11", "to": "2027-01-29"},
        [("2027-01-11", date(2027, 1, 29))],
    ],
)
def test_parse_unavailable_shapes(stored: object) -> None:
    assert parse_unavailable(stored) == ((date(2027, 1, 11), date(2027, 1, 29)),)


@pytest.mark.parametrize("empty", [None, {}, [], {"periods": []}])
def test_parse_unavailable_empty(empty: object) -> None:
    assert parse_unavailable(empty) == ()


@pytest.mark.parametrize(
    "bad", [{"periods": [{"from": "2027-02-01", "to": "2027-01-01"}]}, [{"from": "soon"}], "2027-01-01", 3]
)
def test_parse_unavailable_refuses_nonsense(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_unavailable(bad)


def test_from_orm_rows() -> None:
    from taflow.db.models import ExpertRow, ProgrammeRow

    row = ExpertRow(
        id="EXP-001",
        name="Keiko Morisawa",
        accreditation="WCO accredited",
        category="Technical and operational advisor",
        topics=["risk-management", "data-analytics"],
        languages=["ja", "EN"],
        home_administration="JP",
        email=None,
        unavailable={"periods": [{"from": "2027-01-11", "to": "2027-01-29"}]},
        invitations_12m=3,
    )
    e = ExpertProfile.from_row(row)
    assert e.topics == {"risk-management", "data-analytics"}
    assert e.languages == {"ja", "en"}
    assert e.category == "technical and operational advisor"
    assert e.unavailable == ((date(2027, 1, 11), date(2027, 1, 29)),)
    assert not e.available(date(2027, 1, 29), date(2027, 2, 2))
    assert e.available(date(2027, 1, 30), date(2027, 2, 2))

    row.unavailable = {"periods": [{"from": "later"}]}
    with pytest.raises(ValueError, match="EXP-001"):
        ExpertProfile.from_row(row)

    p = ProgrammeProfile.from_row(
        ProgrammeRow(
            id="PRG-X",
            name="X",
            provider="WCO",
            funding_partner="",
            topics=["wto-tfa"],
            beneficiaries=["kh", "LA"],
            description="",
        )
    )
    assert p.funding_partner is None
    assert p.eligible == {"KH", "LA"} and p.targeted


def test_reference_roster_kh_request() -> None:
    """Seeded data: a Cambodian request at CCWG 44 skips both KH experts and the BN expert away 8-19 Mar."""
    ref = load_reference()
    roster = [ExpertProfile.from_row(e) for e in ref.experts]
    meeting = Meeting(**next(m for m in ref.meetings if m.id == "CCWG-44").model_dump())
    ranked = rank_experts(
        roster,
        topics=["rules-of-origin", "asean-single-window"],
        modality="expert_mission",
        member_state="KH",
        meeting=meeting,
        limit=50,
    )
    ids = [c.expert_id for c in ranked]
    assert ids
    assert not {"EXP-014", "EXP-042", "EXP-029"} & set(ids)
    eligible = [
        e.id
        for e in roster
        if exclusion_reason(
            e, topics=["rules-of-origin", "asean-single-window"], member_state="KH", meeting=meeting
        )
        is None
    ]
    assert sorted(ids) == sorted(eligible)


def test_reference_programmes_tl() -> None:
    ref = load_reference()
    progs = [ProgrammeProfile.from_row(p) for p in ref.programmes]
    proposed = propose_programmes(
        progs, topics=["timor-leste-accession", "hs-classification"], member_state="TL", limit=3
    )
    assert proposed[0].programme_id == "PRG-ROCB-TLAS"
    assert "beneficiaries: TL eligible (programme targets TL)" in proposed[0].reasons
    vn = propose_programmes(progs, topics=["timor-leste-accession"], member_state="VN", limit=3)
    assert vn == []  # only Timor-Leste is eligible for the accession programme
