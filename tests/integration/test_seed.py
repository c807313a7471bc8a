"""Reference data: the packaged file is complete, seeding is idempotent, a bad file writes nothing."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import (
    Base,
    CatalogueActivityRow,
    ExpertRow,
    MeetingRow,
    OrganisationRow,
    ProgrammeRow,
)
from taflow.db.seed import ReferenceDataError, load_reference, seed
from taflow.domain.enums import MemberState, SpcdPriority, Topic
from taflow.reference import REFERENCE_PATH

TABLES: dict[str, type[Base]] = {
    "organisations": OrganisationRow,
    "experts": ExpertRow,
    "programmes": ProgrammeRow,
    "meetings": MeetingRow,
    "catalogue_activities": CatalogueActivityRow,
}
ALL_STATES = [m.value for m in MemberState]


async def _count(sm: async_sessionmaker[AsyncSession], model: type[Base]) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(REFERENCE_PATH.read_text())
    return data


def test_reference_file_is_complete() -> None:
    ref = load_reference()
    assert ref.version
    assert {o.id for o in ref.organisations} >= {*ALL_STATES, "ASEC", "ROCB-AP", "WCO"}
    assert {t.id for t in ref.topics} == set(Topic)
    assert {p.id for p in ref.spcd_priorities} == set(SpcdPriority)
    assert 35 <= len(ref.experts) <= 50
    per_topic = Counter(t for e in ref.experts for t in e.topics)
    thin = {t.value: per_topic[t] for t in Topic if per_topic[t] < 2}
    assert not thin, f"topics with fewer than two experts: {thin}"
    from_members = [e for e in ref.experts if e.home_administration in ALL_STATES]
    assert len({e.home_administration for e in from_members}) >= 5
    assert all(e.email and e.email.endswith("@example.org") for e in ref.experts)
    for m in ref.meetings:
        assert 21 <= (m.starts_on - m.agenda_cutoff).days <= 42, m.id
    assert min(m.starts_on for m in ref.meetings).isoformat() >= "2026-12-01"
    assert {p.funding_partner for p in ref.programmes} >= {"Australia", "Japan", "China", "Korea", None}
    assert len(ref.catalogue) >= 12
    assert ref.topic_label("aeo-mra") != "aeo-mra"


async def test_seed_twice_gives_the_same_rows(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    ref = load_reference()
    first = await seed(sessionmaker)
    before = {name: await _count(sessionmaker, model) for name, model in TABLES.items()}
    second = await seed(sessionmaker)
    after = {name: await _count(sessionmaker, model) for name, model in TABLES.items()}
    assert (
        first
        == second
        == {
            "organisations": len(ref.organisations),
            "experts": len(ref.experts),
            "programmes": len(ref.programmes),
            "meetings": len(ref.meetings),
            "catalogue_activities": len(ref.catalogue),
        }
    )
    assert before == after
    async with sessionmaker() as s:
        experts = {e.id: e for e in (await s.execute(select(ExpertRow))).scalars()}
        asean_activity = next(a for a in ref.catalogue if a.beneficiaries == ["ASEAN"])
        row = await s.get(CatalogueActivityRow, asean_activity.id)
        all_programme = next(p for p in ref.programmes if p.beneficiaries == ["ASEAN"])
        prow = await s.get(ProgrammeRow, all_programme.id)
        kh = await s.get(OrganisationRow, "KH")
    assert {e.id for e in ref.experts} <= set(experts)
    for topic in Topic:
        assert sum(topic.value in e.topics for e in experts.values()) >= 2, topic
    assert row is not None and row.beneficiaries == ALL_STATES and row.source == "reference"
    assert prow is not None and prow.beneficiaries == ALL_STATES
    assert kh is not None and kh.kind == "member_state" and kh.calendar == "KH"
    busy = next(e for e in ref.experts if e.unavailable)
    assert experts[busy.id].unavailable == {
        "periods": [{"from": p.from_.isoformat(), "to": p.to.isoformat()} for p in busy.unavailable]
    }


async def test_seed_updates_changed_rows(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    data = _raw()
    data["meetings"][0]["place"] = "Luang Prabang, Lao PDR"
    changed = tmp_path / "reference.json"
    changed.write_text(json.dumps(data))
    mid = data["meetings"][0]["id"]
    try:
        await seed(sessionmaker, changed)
        async with sessionmaker() as s:
            row = await s.get(MeetingRow, mid)
            assert row is not None and row.place == "Luang Prabang, Lao PDR"
    finally:
        await seed(sessionmaker)
    async with sessionmaker() as s:
        row = await s.get(MeetingRow, mid)
        assert row is not None and row.place == load_reference().meetings[0].place


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []

    def add(name: str, data: dict[str, Any] | str, expect: str) -> None:
        p = tmp_path / name
        p.write_text(data if isinstance(data, str) else json.dumps(data))
        out.append((p, expect))

    add("not-json.json", "{ this is not json", "not valid JSON")
    d = _raw()
    d["organisations"].append(
        {"id": "ZZ", "name": "Nowhere Customs", "kind": "member_state", "calendar": "ZZ"}
    )
    d["experts"][-1]["topics"] = ["risk-management", "astrology"]
    add("bad-topic.json", d, "experts")
    d = _raw()
    d["organisations"].append(
        {"id": "ZZ", "name": "Nowhere Customs", "kind": "member_state", "calendar": "ZZ"}
    )
    d["topics"] = d["topics"][1:]
    add("unlabelled-topic.json", d, "topics without a label")
    d = _raw()
    d["organisations"].append(
        {"id": "ZZ", "name": "Nowhere Customs", "kind": "member_state", "calendar": "ZZ"}
    )
    d["experts"].append(dict(d["experts"][0]))
    add("duplicate-expert.json", d, "duplicate expert ids")
    d = _raw()
    d["organisations"].append(
        {"id": "ZZ", "name": "Nowhere Customs", "kind": "member_state", "calendar": "ZZ"}
    )
    d["meetings"][0]["agenda_cutoff"] = d["meetings"][0]["starts_on"]
    add("late-cutoff.json", d, "agenda_cutoff")
    return out


async def test_a_bad_reference_file_is_refused_and_writes_nothing(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    before = {name: await _count(sessionmaker, model) for name, model in TABLES.items()}
    for path, expect in _bad_files(tmp_path):
        with pytest.raises(ReferenceDataError) as info:
            await seed(sessionmaker, path)
        assert expect in str(info.value), (path.name, str(info.value))
        assert str(path) in str(info.value)
    with pytest.raises(ReferenceDataError, match="cannot read"):
        await seed(sessionmaker, tmp_path / "missing.json")
    after = {name: await _count(sessionmaker, model) for name, model in TABLES.items()}
    assert before == after
    async with sessionmaker() as s:
        assert await s.get(OrganisationRow, "ZZ") is None
