"""The versioned reference data file (`reference.json`) and its pydantic schema.

Pure: no database imports, so the API, the activities and the CLI can read topic labels, SPCD
priorities, experts or meetings without an engine. `taflow.db.seed` writes it to PostgreSQL.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from taflow.domain.enums import MemberState, Modality, Organisation, SpcdPriority, Topic

REFERENCE_PATH = Path(__file__).with_name("reference.json")

ASEAN = "ASEAN"
"""In `beneficiaries`: all eleven member states (Timor-Leste included)."""
MEMBER_STATE_CODES: tuple[str, ...] = tuple(m.value for m in MemberState)

MeetingBody = Literal["CCWG", "CCC", "CPTFWG", "CECWG", "CCBWG"]
ExpertCategory = Literal["diagnostic facilitator", "technical and operational advisor", "expert trainer"]
FundingPartner = Literal["Australia", "Japan", "China", "Korea"]
OrganisationKind = Literal["member_state", "secretariat", "regional_office", "international_organisation"]

Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]
AdministrationCode = Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z-]{1,15}$")]
Beneficiary = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=2, max_length=8)
]


class ReferenceDataError(ValueError):
    """The reference file is missing, not JSON or does not match the schema. Nothing was written."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def expand_beneficiaries(codes: list[str]) -> list[str]:
    """`ASEAN` (or `all`) becomes the eleven member state codes; order kept, duplicates dropped."""
    out: list[str] = []
    for code in codes:
        for c in MEMBER_STATE_CODES if code.upper() in (ASEAN, "ALL") else (code.upper(),):
            if c not in out:
                out.append(c)
    return out


def _check_beneficiaries(codes: list[str]) -> list[str]:
    bad = [c for c in codes if c not in MEMBER_STATE_CODES and c not in (ASEAN, "ALL")]
    if bad:
        raise ValueError(f"unknown beneficiaries {bad}: use member state codes or 'ASEAN'")
    if not codes:
        raise ValueError("at least one beneficiary is needed")
    return codes


class OrganisationRef(_Model):
    id: Annotated[str, StringConstraints(min_length=2, max_length=16)]
    name: Label
    kind: OrganisationKind
    calendar: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None


class LabelledSpcd(_Model):
    id: SpcdPriority
    label: Label


class LabelledTopic(_Model):
    id: Topic
    label: Label


class LabelledModality(_Model):
    id: Modality
    label: Label


class Period(_Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    from_: date = Field(alias="from")
    to: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.to < self.from_:
            raise ValueError(f"period ends ({self.to}) before it starts ({self.from_})")
        return self

    def covers(self, day: date) -> bool:
        return self.from_ <= day <= self.to

    def overlaps(self, start: date, end: date) -> bool:
        return self.from_ <= end and start <= self.to


class ExpertRef(_Model):
    id: Annotated[str, StringConstraints(pattern=r"^EXP-\d{3,}$")]
    name: Label
    accreditation: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    category: ExpertCategory
    topics: Annotated[list[Topic], Field(min_length=2, max_length=5)]
    languages: Annotated[list[Language], Field(min_length=1)]
    home_administration: AdministrationCode
    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@example\.org$")] | None = None
    unavailable: list[Period] = []
    invitations_12m: Annotated[int, Field(ge=0)] = 0

    def available(self, start: date, end: date) -> bool:
        return not any(p.overlaps(start, end) for p in self.unavailable)


class ProgrammeRef(_Model):
    id: Id
    name: Label
    provider: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    funding_partner: FundingPartner | None = None
    topics: Annotated[list[Topic], Field(min_length=1)]
    beneficiaries: list[Beneficiary]
    description: str = ""

    _beneficiaries = field_validator("beneficiaries")(_check_beneficiaries)


class MeetingRef(_Model):
    id: Id
    body: MeetingBody
    number: Annotated[int, Field(ge=1)]
    starts_on: date
    ends_on: date
    place: Label
    agenda_cutoff: date

    @model_validator(mode="after")
    def _dates(self) -> MeetingRef:
        if self.ends_on < self.starts_on:
            raise ValueError(f"meeting {self.id} ends before it starts")
        if self.agenda_cutoff >= self.starts_on:
            raise ValueError(f"meeting {self.id}: agenda_cutoff must be before starts_on")
        return self


class ActivityRecord(_Model):
    """A catalogue activity: a line of our JSONL format, a `catalogue` entry, or an IATI activity."""

    id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    provider: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    description: str = ""
    topics: list[Topic] = []
    beneficiaries: list[Beneficiary]
    start: date | None = None
    end: date | None = None
    modality: Modality | None = None
    status: Annotated[str, StringConstraints(max_length=16)] | None = None
    source: Annotated[str, StringConstraints(min_length=1, max_length=16)] = "taflow"

    _beneficiaries = field_validator("beneficiaries")(_check_beneficiaries)

    @field_validator("id", "provider", "title", "description", "status")
    @classmethod
    def _no_nul(cls, v: str | None) -> str | None:
        if v is not None and "\x00" in v:
            raise ValueError("contains a NUL character")
        return v

    @field_validator("modality", mode="before")
    @classmethod
    def _modality(cls, v: object) -> object:
        return Modality.parse(v) if isinstance(v, str) and v.strip() else (None if v == "" else v)

    @model_validator(mode="after")
    def _period(self) -> ActivityRecord:
        if self.start and self.end and self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    def covers(self) -> list[str]:
        """The member state codes this activity is for (`ASEAN` expanded)."""
        return expand_beneficiaries(self.beneficiaries)


def _unique(kind: str, ids: list[str]) -> None:
    dup = sorted(i for i, n in Counter(ids).items() if n > 1)
    if dup:
        raise ValueError(f"duplicate {kind} ids: {', '.join(dup)}")


class ReferenceData(_Model):
    """The whole reference file. Cross-checks: unique ids, every member state, every topic labelled."""

    version: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    description: str = ""
    organisations: list[OrganisationRef]
    spcd_priorities: list[LabelledSpcd]
    topics: list[LabelledTopic]
    modalities: list[LabelledModality] = []
    experts: list[ExpertRef]
    programmes: list[ProgrammeRef]
    meetings: list[MeetingRef]
    catalogue: list[ActivityRecord] = []

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceData:
        _unique("organisation", [o.id for o in self.organisations])
        _unique("expert", [e.id for e in self.experts])
        _unique("programme", [p.id for p in self.programmes])
        _unique("meeting", [m.id for m in self.meetings])
        _unique("catalogue activity", [a.id for a in self.catalogue])
        _unique("topic", [t.id.value for t in self.topics])
        _unique("SPCD priority", [p.id.value for p in self.spcd_priorities])
        org_ids = {o.id for o in self.organisations}
        missing_orgs = [
            o for o in (*MEMBER_STATE_CODES, *(x.value for x in Organisation)) if o not in org_ids
        ]
        if missing_orgs:
            raise ValueError(f"organisations missing: {', '.join(missing_orgs)}")
        unlabelled = [t.value for t in Topic if t not in {x.id for x in self.topics}]
        if unlabelled:
            raise ValueError(f"topics without a label: {', '.join(unlabelled)}")
        missing_spcd = [p.value for p in SpcdPriority if p not in {x.id for x in self.spcd_priorities}]
        if missing_spcd:
            raise ValueError(f"SPCD priorities without a label: {', '.join(missing_spcd)}")
        return self

    def topic_label(self, topic: Topic | str) -> str:
        return next((t.label for t in self.topics if t.id == topic), str(topic))

    def spcd_label(self, priority: SpcdPriority | str) -> str:
        return next((p.label for p in self.spcd_priorities if p.id == priority), str(priority))

    def experts_for(self, topic: Topic | str) -> list[ExpertRef]:
        return [e for e in self.experts if topic in e.topics]


def parse_reference(raw: bytes | str, *, source: str = "reference data") -> ReferenceData:
    """Validate a reference document; any problem becomes one `ReferenceDataError` naming where it is."""
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReferenceDataError(f"{source}: not valid JSON: {e}") from None
    try:
        return ReferenceData.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in e.errors()[:20]
        )
        raise ReferenceDataError(f"{source}: {e.error_count()} problem(s): {problems}") from None


def load_reference(path: Path | None = None) -> ReferenceData:
    """Read and validate the reference file (the packaged `reference.json` by default)."""
    if path is None:
        return _packaged()
    return _read(path)


def _read(path: Path) -> ReferenceData:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ReferenceDataError(f"{path}: cannot read: {e.strerror or e}") from None
    return parse_reference(raw, source=str(path))


@lru_cache(maxsize=1)
def _packaged() -> ReferenceData:
    return _read(REFERENCE_PATH)


__all__ = [
    "ASEAN",
    "MEMBER_STATE_CODES",
    "REFERENCE_PATH",
    "ActivityRecord",
    "ExpertRef",
    "LabelledModality",
    "LabelledSpcd",
    "LabelledTopic",
    "MeetingRef",
    "OrganisationRef",
    "Period",
    "ProgrammeRef",
    "ReferenceData",
    "ReferenceDataError",
    "expand_beneficiaries",
    "load_reference",
    "parse_reference",
]
