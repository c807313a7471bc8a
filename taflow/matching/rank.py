"""Ranking experts and proposing programmes for an approved TA request, with reasons a person reads.

Pure: no I/O, no ORM import. Callers turn rows into profiles once (``ExpertProfile.from_row``,
``ProgrammeProfile.from_row``); the profiles hold precomputed sets so one ranking is a single cheap
pass over the roster, and only the ``limit`` best candidates are turned into models with reasons.

Experts
    Hard exclusions (never proposed): the requesting member state's own administration (conflict of
    interest), an unavailable period overlapping any day of the meeting, no topic in common.
    Score in 0..1, the weighted sum of
      * topic fit   (``W_TOPIC``): share of the requested topics the expert covers;
      * category    (``W_CATEGORY``): the expert's category suits the modality (1), the modality
        has no preferred category (0.5), another category (0);
      * language    (``W_LANGUAGE``): speaks a local working language of the member state (1),
        English only, the baseline (0.6; 1 where English is the working language: PH, SG),
        neither (0: interpretation needed);
      * load        (``W_LOAD``): ``1 / (1 + n / LOAD_HALF)`` for n invitations in 12 months, so
        work spreads.
    Availability is a gate, not a weight: every proposed expert is available for the meeting.
    Ties (equal rounded score) go to the less-loaded expert, then to the smaller id.

Programmes
    Only programmes whose beneficiaries include the member state (``ASEAN``/``ALL`` = every
    member) and that share a topic. Score in 0..1: ``W_COVERAGE`` x share of requested topics
    covered + ``W_FOCUS`` x share of the programme's topics the request touches + ``W_TARGETING``
    x (1 for a programme aimed at a named subset of members, 0.5 for an ASEAN-wide one).
    Ties go to the smaller id.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from taflow.domain.enums import MemberState, Modality
from taflow.domain.models import MatchCandidate, Meeting

Period = tuple[date, date]

W_TOPIC = 0.6
W_CATEGORY = 0.15
W_LANGUAGE = 0.1
W_LOAD = 0.15
LOAD_HALF = 4.0
"""Invitations in 12 months at which the load factor is halved."""
LANGUAGE_LOCAL = 1.0
LANGUAGE_ENGLISH = 0.6
CATEGORY_SUITS = 1.0
CATEGORY_NEUTRAL = 0.5

W_COVERAGE = 0.6
W_FOCUS = 0.2
W_TARGETING = 0.2

MEMBER_STATES: frozenset[str] = frozenset(m.value for m in MemberState)
ALL_MEMBERS_CODES = frozenset({"ASEAN", "ALL"})

DIAGNOSTIC_FACILITATOR = "diagnostic facilitator"
ADVISOR = "technical and operational advisor"
TRAINER = "expert trainer"

CATEGORY_FOR_MODALITY: Mapping[str, str] = {
    Modality.diagnostic_mission.value: DIAGNOSTIC_FACILITATOR,
    Modality.expert_mission.value: ADVISOR,
    Modality.training.value: TRAINER,
    Modality.workshop.value: TRAINER,
    Modality.webinar.value: TRAINER,
}
"""The expert category a modality calls for; a modality not listed (study_visit) suits any category."""

LOCAL_LANGUAGES: Mapping[str, tuple[str, ...]] = {
    "BN": ("ms",),
    "KH": ("km",),
    "ID": ("id",),
    "LA": ("lo",),
    "MY": ("ms",),
    "MM": ("my",),
    "PH": (),
    "SG": (),
    "TH": ("th",),
    "VN": ("vi",),
    "TL": ("pt", "tet"),
}
"""Working languages of each member state's administration besides English (always acceptable)."""

LANGUAGE_NAMES: Mapping[str, str] = {
    "en": "English",
    "ms": "Malay",
    "km": "Khmer",
    "id": "Indonesian",
    "lo": "Lao",
    "my": "Burmese",
    "th": "Thai",
    "vi": "Vietnamese",
    "pt": "Portuguese",
    "tet": "Tetum",
}

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def working_languages(member_state: str) -> tuple[str, ...]:
    """Preferred working languages for a member state: its own, then English (the baseline)."""
    local = LOCAL_LANGUAGES.get(member_state.strip().upper(), ())
    return (*local, "en")


# ---------------------------------------------------------------------------------------------
# Profiles


def _as_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise ValueError(f"not a date: {value!r}")


def _period(start: object, end: object) -> Period:
    a, b = _as_date(start), _as_date(end)
    if b < a:
        raise ValueError(f"unavailable period ends ({b}) before it starts ({a})")
    return (a, b)


def parse_unavailable(value: object) -> tuple[Period, ...]:
    """Unavailable periods from any stored shape, sorted.

    Accepts ``None``, ``{}``, ``{"periods": [...]}`` (the seeded JSONB), a list of
    ``{"from": "YYYY-MM-DD", "to": "YYYY-MM-DD"}`` (reference.json), a single such mapping, a list
    of ``(from, to)`` pairs, or objects with ``from_``/``to`` (``taflow.reference.Period``).
    Raises ``ValueError`` on anything else.
    """
    if value is None:
        return ()
    if isinstance(value, Mapping):
        if "periods" in value:
            return parse_unavailable(value["periods"])
        if "from" in value or "to" in value:
            return (_period(value.get("from"), value.get("to")),)
        if not value:
            return ()
        raise ValueError(f"unrecognised unavailable periods: {value!r}")
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"unrecognised unavailable periods: {value!r}")
    periods: list[Period] = []
    for item in value:
        if isinstance(item, Mapping):
            periods.append(_period(item.get("from"), item.get("to")))
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            periods.append(_period(item[0], item[1]))
        elif hasattr(item, "from_") and hasattr(item, "to"):
            periods.append(_period(getattr(item, "from_"), getattr(item, "to")))  # noqa: B009
        else:
            raise ValueError(f"unrecognised unavailable period: {item!r}")
    return tuple(sorted(periods))


class ExpertRowLike(Protocol):
    """What ``ExpertProfile.from_row`` reads: ``taflow.db.models.ExpertRow`` or a reference entry.

    ``accreditation`` is read when the row has it.
    """

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def category(self) -> str: ...
    @property
    def topics(self) -> Iterable[str]: ...
    @property
    def languages(self) -> Iterable[str]: ...
    @property
    def home_administration(self) -> str: ...
    @property
    def unavailable(self) -> object: ...
    @property
    def invitations_12m(self) -> int: ...


class ProgrammeRowLike(Protocol):
    """What ``ProgrammeProfile.from_row`` reads: ``taflow.db.models.ProgrammeRow``."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def provider(self) -> str: ...
    @property
    def funding_partner(self) -> str | None: ...
    @property
    def topics(self) -> Iterable[str]: ...
    @property
    def beneficiaries(self) -> Iterable[str]: ...


@dataclass(frozen=True, slots=True)
class ExpertProfile:
    """An expert as matching sees it; sets are normalised once, here."""

    id: str
    name: str
    category: str
    topics: frozenset[str]
    languages: frozenset[str]
    home_administration: str
    unavailable: tuple[Period, ...] = ()
    invitations_12m: int = 0
    accreditation: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "category", self.category.strip().lower())
        object.__setattr__(self, "topics", frozenset(str(t) for t in self.topics))
        object.__setattr__(self, "languages", frozenset(str(x).strip().lower() for x in self.languages))
        object.__setattr__(self, "home_administration", self.home_administration.strip().upper())
        object.__setattr__(self, "unavailable", tuple(sorted(_period(a, b) for a, b in self.unavailable)))
        object.__setattr__(self, "invitations_12m", max(0, int(self.invitations_12m)))

    @classmethod
    def from_row(cls, row: ExpertRowLike) -> ExpertProfile:
        """From an ``ExpertRow``; ``unavailable`` may be any shape ``parse_unavailable`` accepts."""
        try:
            unavailable = parse_unavailable(row.unavailable)
        except ValueError as exc:
            raise ValueError(f"expert {row.id}: {exc}") from exc
        return cls(
            id=row.id,
            name=row.name,
            category=row.category,
            topics=frozenset(row.topics),
            languages=frozenset(row.languages),
            home_administration=row.home_administration,
            unavailable=unavailable,
            invitations_12m=row.invitations_12m or 0,
            accreditation=getattr(row, "accreditation", "") or "",
        )

    def available(self, start: date, end: date) -> bool:
        """No unavailable period overlaps any day of ``start..end`` (inclusive)."""
        return all(not (a <= end and start <= b) for a, b in self.unavailable)


def _expand(beneficiaries: Iterable[str]) -> frozenset[str]:
    out: set[str] = set()
    for code in beneficiaries:
        out |= MEMBER_STATES if code in ALL_MEMBERS_CODES else {code}
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ProgrammeProfile:
    """A programme or fund as matching sees it; ``eligible`` is the expanded set of member states."""

    id: str
    name: str
    provider: str
    funding_partner: str | None
    topics: frozenset[str]
    beneficiaries: tuple[str, ...]
    eligible: frozenset[str] = field(init=False, repr=False, compare=False)
    targeted: bool = field(init=False, repr=False, compare=False)
    """Aimed at a named subset of member states rather than all of ASEAN."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", frozenset(str(t) for t in self.topics))
        codes = tuple(str(b).strip().upper() for b in self.beneficiaries)
        object.__setattr__(self, "beneficiaries", codes)
        eligible = _expand(codes)
        object.__setattr__(self, "eligible", eligible)
        object.__setattr__(self, "targeted", not MEMBER_STATES <= eligible)

    @classmethod
    def from_row(cls, row: ProgrammeRowLike) -> ProgrammeProfile:
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            funding_partner=row.funding_partner or None,
            topics=frozenset(row.topics),
            beneficiaries=tuple(row.beneficiaries),
        )


class ProgrammeCandidate(BaseModel):
    """A proposed programme or fund, with its score and the reasons a person reads."""

    model_config = ConfigDict(frozen=True)

    programme_id: str
    name: str
    provider: str
    funding_partner: str | None = None
    score: float
    reasons: list[str] = []


# ---------------------------------------------------------------------------------------------
# Reasons


def _day_range(start: date, end: date) -> str:
    """``15-17 Jun 2027``, ``30 Jun - 2 Jul 2027``, ``30 Dec 2027 - 2 Jan 2028``."""
    if start == end:
        return f"{start.day} {_MONTHS[start.month - 1]} {start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"{start.day}-{end.day} {_MONTHS[end.month - 1]} {end.year}"
    if start.year == end.year:
        return f"{start.day} {_MONTHS[start.month - 1]} - {end.day} {_MONTHS[end.month - 1]} {end.year}"
    return f"{_day_range(start, start)} - {_day_range(end, end)}"


def meeting_label(meeting: Meeting) -> str:
    return f"{meeting.body} {meeting.number} ({_day_range(meeting.starts_on, meeting.ends_on)})"


def _language_name(code: str) -> str:
    return LANGUAGE_NAMES.get(code, code)


def _a(words: str) -> str:
    """``words`` with its indefinite article: "an expert trainer", "a workshop"."""
    return f"an {words}" if words[:1] in ("a", "e", "i", "o", "u") else f"a {words}"


def _modality_words(modality: str) -> str:
    words = modality.replace("_", " ").strip()
    if not words:
        return "this modality"
    return words if words == "training" else _a(words)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _normal_modality(modality: str) -> str:
    return str(modality).strip().lower().replace(" ", "_").replace("-", "_")


def _expert_reasons(
    e: ExpertProfile,
    *,
    req_topics: frozenset[str],
    modality: str,
    member_state: str,
    local: tuple[str, ...],
    meeting: Meeting | None,
) -> list[str]:
    shared = sorted(e.topics & req_topics)
    reasons = [f"topic fit: {', '.join(shared)} ({len(shared)} of {len(req_topics)} requested topics)"]

    wanted = CATEGORY_FOR_MODALITY.get(modality)
    if wanted is None:
        reasons.append(f"category: {e.category} (any category suits {_modality_words(modality)})")
    elif e.category == wanted:
        reasons.append(f"category: {e.category} suits {_modality_words(modality)}")
    else:
        reasons.append(f"category: {e.category} ({_modality_words(modality)} calls for {_a(wanted)})")

    spoken_local = [code for code in local if code in e.languages]
    local_names = [_language_name(c) for c in local]
    if spoken_local:
        reasons.append(
            f"language: speaks {_language_name(spoken_local[0])}, a working language of {member_state}"
        )
    elif "en" in e.languages and not local:
        reasons.append(f"language: English, the working language of {member_state}")
    elif "en" in e.languages:
        reasons.append(f"language: English, the baseline (does not speak {' or '.join(local_names)})")
    else:
        if local:
            reasons.append(
                f"language: speaks neither English nor {' nor '.join(local_names)}; needs interpretation"
            )
        else:
            reasons.append("language: does not speak English; needs interpretation")

    if meeting is None:
        reasons.append("availability: not checked, no meeting fixed yet")
    else:
        reasons.append(f"availability: available for {meeting_label(meeting)}")

    reasons.append(f"load: {_plural(e.invitations_12m, 'invitation')} in 12 months")
    reasons.append(
        f"conflict of interest: none (home administration {e.home_administration}, "
        f"request from {member_state})"
    )
    if e.accreditation:
        reasons.append(f"accreditation: {e.accreditation}")
    return reasons


# ---------------------------------------------------------------------------------------------
# Ranking


def exclusion_reason(
    expert: ExpertProfile, *, topics: Iterable[str], member_state: str, meeting: Meeting | None
) -> str | None:
    """Why an expert is never proposed for this request, or ``None`` if they may be."""
    state = str(member_state).strip().upper()
    if expert.home_administration == state:
        return f"conflict of interest: from the requesting administration ({state})"
    if expert.topics.isdisjoint(str(t) for t in topics):
        return "topic fit: no requested topic in common"
    if meeting is not None and not expert.available(meeting.starts_on, meeting.ends_on):
        return f"availability: unavailable for {meeting_label(meeting)}"
    return None


def rank_experts(
    experts: Iterable[ExpertProfile],
    *,
    topics: Iterable[str],
    modality: str,
    member_state: str,
    meeting: Meeting | None,
    limit: int,
) -> list[MatchCandidate]:
    """The ``limit`` best experts for a request, best first, each with a score in 0..1 and reasons.

    Never proposes an expert of the requesting administration, one unavailable on any day of
    ``meeting``, or one without a requested topic. Deterministic: ties go to the less-loaded
    expert, then to the smaller id, whatever the input order.
    """
    req_topics = frozenset(str(t) for t in topics)
    if limit <= 0 or not req_topics:
        return []
    n_req = len(req_topics)
    state = str(member_state).strip().upper()
    mod = _normal_modality(modality)
    wanted = CATEGORY_FOR_MODALITY.get(mod)
    local = LOCAL_LANGUAGES.get(state, ())
    local_set = frozenset(local)
    english_score = LANGUAGE_ENGLISH if local_set else LANGUAGE_LOCAL
    m_start = meeting.starts_on if meeting is not None else None
    m_end = meeting.ends_on if meeting is not None else None

    scored: list[tuple[float, int, str, int]] = []
    pool: list[ExpertProfile] = []
    for e in experts:
        shared = len(e.topics & req_topics)
        if not shared or e.home_administration == state:
            continue
        if m_start is not None and m_end is not None and e.unavailable:
            if any(a <= m_end and m_start <= b for a, b in e.unavailable):
                continue
        langs = e.languages
        if local_set and not langs.isdisjoint(local_set):
            language = LANGUAGE_LOCAL
        elif "en" in langs:
            language = english_score
        else:
            language = 0.0
        if wanted is None:
            category = CATEGORY_NEUTRAL
        else:
            category = CATEGORY_SUITS if e.category == wanted else 0.0
        load = e.invitations_12m
        raw = (
            W_TOPIC * shared / n_req
            + W_CATEGORY * category
            + W_LANGUAGE * language
            + W_LOAD / (1.0 + load / LOAD_HALF)
        )
        scored.append((-round(raw, 4), load, e.id, len(pool)))
        pool.append(e)

    best = heapq.nsmallest(limit, scored)
    return [
        MatchCandidate(
            expert_id=pool[i].id,
            name=pool[i].name,
            score=-neg_score,
            reasons=_expert_reasons(
                pool[i], req_topics=req_topics, modality=mod, member_state=state, local=local, meeting=meeting
            ),
        )
        for neg_score, _, _, i in best
    ]


def _programme_reasons(p: ProgrammeProfile, *, req_topics: frozenset[str], member_state: str) -> list[str]:
    shared = sorted(p.topics & req_topics)
    reasons = [
        f"topic fit: {', '.join(shared)} ({len(shared)} of {len(req_topics)} requested topics, "
        f"{len(shared)} of the programme's {len(p.topics)})"
    ]
    if p.targeted:
        targets = ", ".join(sorted(p.eligible))
        reasons.append(f"beneficiaries: {member_state} eligible (programme targets {targets})")
    else:
        reasons.append(f"beneficiaries: {member_state} eligible (open to all ASEAN member states)")
    if p.funding_partner:
        reasons.append(f"funding partner: {p.funding_partner} (through {p.provider})")
    else:
        reasons.append(f"funding partner: none, a {p.provider} programme")
    return reasons


def propose_programmes(
    programmes: Iterable[ProgrammeProfile], *, topics: Iterable[str], member_state: str, limit: int
) -> list[ProgrammeCandidate]:
    """The ``limit`` best programmes or funds the member state is eligible for, by thematic fit."""
    req_topics = frozenset(str(t) for t in topics)
    if limit <= 0 or not req_topics:
        return []
    n_req = len(req_topics)
    state = str(member_state).strip().upper()

    scored: list[tuple[float, str, int]] = []
    pool: list[ProgrammeProfile] = []
    for p in programmes:
        if state not in p.eligible:
            continue
        shared = len(p.topics & req_topics)
        if not shared:
            continue
        raw = (
            W_COVERAGE * shared / n_req
            + W_FOCUS * shared / len(p.topics)
            + W_TARGETING * (1.0 if p.targeted else 0.5)
        )
        scored.append((-round(raw, 4), p.id, len(pool)))
        pool.append(p)

    best = heapq.nsmallest(limit, scored)
    return [
        ProgrammeCandidate(
            programme_id=pool[i].id,
            name=pool[i].name,
            provider=pool[i].provider,
            funding_partner=pool[i].funding_partner,
            score=-neg_score,
            reasons=_programme_reasons(pool[i], req_topics=req_topics, member_state=state),
        )
        for neg_score, _, i in best
    ]
