"""Catalogue import: IATI XML (our sample and the IATI conformance files) and JSONL, idempotent and robust."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.catalogue import ImportReport, import_catalogue, parse_catalogue, parse_iati
from taflow.db.models import CatalogueActivityRow
from taflow.domain.enums import MemberState, Modality, Topic

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "iati" / "sample-activities.xml"
IATI_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "iati"
CONFORMANCE = sorted(IATI_REFERENCE.rglob("*.xml")) if IATI_REFERENCE.is_dir() else []
ALL_STATES = [m.value for m in MemberState]


async def _rows(sm: async_sessionmaker[AsyncSession], ids: list[str]) -> list[CatalogueActivityRow]:
    async with sm() as s:
        stmt = select(CatalogueActivityRow).where(CatalogueActivityRow.id.in_(ids))
        return list((await s.execute(stmt)).scalars())


async def _count(sm: async_sessionmaker[AsyncSession]) -> int:
    async with sm() as s:
        return int((await s.execute(select(func.count()).select_from(CatalogueActivityRow))).scalar_one())


# ------------------------------------------------------------------------------------ (a) our IATI


async def test_sample_iati_file_imports_the_usable_activity_twice_idempotently(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first = await import_catalogue(sessionmaker, SAMPLE)
    count = await _count(sessionmaker)
    second = await import_catalogue(sessionmaker, SAMPLE)
    assert await _count(sessionmaker) == count
    assert first == second
    assert first.format == "iati"
    assert first.imported == ["XI-TAFLOW-TEST-DP1-2027-001"]
    refused = {r.ref: r.reason for r in first.refused}
    assert set(refused) == {"XI-TAFLOW-TEST-DP1-2027-002", "XI-TAFLOW-TEST-DP1-2027-003"}
    assert "no ASEAN member state" in refused["XI-TAFLOW-TEST-DP1-2027-002"]
    assert "KE" in refused["XI-TAFLOW-TEST-DP1-2027-002"]
    assert refused["XI-TAFLOW-TEST-DP1-2027-003"] == "no title"

    rows = await _rows(sessionmaker, ["XI-TAFLOW-TEST-DP1-2027-001", *refused])
    assert [r.id for r in rows] == ["XI-TAFLOW-TEST-DP1-2027-001"]
    row = rows[0]
    assert row.provider == "Example Development Partner Agency"
    assert row.title.startswith("Time Release Study and Risk Management Support")
    assert "land border crossings" in row.description
    assert row.beneficiaries == ["KH", "LA"]
    assert {"time-release-study", "risk-management"} <= set(row.topics)
    assert row.start == date(2027, 2, 15)  # actual start wins over planned
    assert row.end == date(2027, 12, 31)
    assert row.status == "implementation"
    assert row.modality == Modality.expert_mission.value
    assert row.source == "iati"


# ------------------------------------------------------------------------------ (b) conformance set


@pytest.mark.parametrize(
    "path",
    CONFORMANCE or [pytest.param(None, marks=pytest.mark.skip(reason=f"{IATI_REFERENCE} not present"))],
    ids=lambda p: str(p.relative_to(IATI_REFERENCE)) if isinstance(p, Path) else "absent",
)
def test_every_iati_conformance_file_parses_or_is_refused_with_a_reason(path: Path) -> None:
    records, refusals = parse_iati(path.read_bytes())
    assert records or refusals
    for r in refusals:
        assert r.ref and r.reason.strip() and "\n" not in r.reason and "Traceback" not in r.reason
    for rec in records:
        assert rec.id and rec.title and set(rec.beneficiaries) <= set(ALL_STATES)


@pytest.mark.skipif(not CONFORMANCE, reason="IATI conformance files not present")
def test_conformance_activities_with_an_identifier_and_asean_country_import() -> None:
    """The conformance files use empty identifiers; filled in, the usable ones import, none crash."""
    imported = 0
    for n, path in enumerate(CONFORMANCE):
        raw = path.read_bytes().replace(
            b"<iati-identifier></iati-identifier>",
            b'<iati-identifier>XX-CONF-%d</iati-identifier><recipient-country code="TL"/>' % n,
        )
        records, refusals = parse_iati(raw)
        assert records or refusals, path
        imported += len(records)
        assert all(r.reason for r in refusals)
    assert imported > len(CONFORMANCE) // 2


def test_version_1_worked_example_is_attempted() -> None:
    if not (IATI_REFERENCE / "worked-example-v1.xml").is_file():
        pytest.skip("worked example not present")
    records, refusals = parse_iati((IATI_REFERENCE / "worked-example-v1.xml").read_bytes())
    assert records == []
    assert [(r.ref, r.reason) for r in refusals] == [
        (
            "http://www.example.org/activities/12345.xml",
            "no ASEAN member state among recipient countries (HT)",
        )
    ]
    usable = (
        (IATI_REFERENCE / "worked-example-v1.xml")
        .read_bytes()
        .replace(b'code="HT">Haiti', b'code="KH">Cambodia')
        .replace(
            b"</iati-identifier>",
            b'</iati-identifier><reporting-org ref="XM-EX">Example Agency</reporting-org>',
        )
    )
    records, refusals = parse_iati(usable)
    assert refusals == []
    (rec,) = records
    assert rec.title == "Worked example of an activity report"  # the English one of two
    assert rec.provider == "Example Agency"
    assert rec.beneficiaries == ["KH"]
    assert (rec.start, rec.end) == (date(2010, 4, 1), date(2011, 3, 31))


def _doc(activity: str, root: str = '<iati-activities version="2.03">') -> bytes:
    return f'<?xml version="1.0"?>\n{root}{activity}</iati-activities>'.encode()


def _act(inner: str, ident: str = "XX-1") -> str:
    return (
        f"<iati-activity><iati-identifier>{ident}</iati-identifier>"
        '<reporting-org ref="XX"><narrative>Donor</narrative></reporting-org>'
        "<title><narrative>Support to customs</narrative></title>"
        f"{inner}</iati-activity>"
    )


def test_hostile_and_broken_xml_is_refused_with_one_reason() -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
        b"<iati-activities><iati-activity><iati-identifier>&lol2;</iati-identifier></iati-activity>"
        b"</iati-activities>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x SYSTEM "http://example.org/x.dtd">'
        b"<iati-activities><iati-activity/></iati-activities>"
    )
    cases = {
        laughs: "DOCTYPE",
        external: "DOCTYPE",
        b"": "empty file",
        b"<iati-activities><iati-activity>": "not well-formed XML",
        b"<html><body>hello</body></html>": "not an IATI activity file",
        b'<iati-activities version="2.03"></iati-activities>': "no iati-activity",
        b"\x00\x01garbage": "not well-formed XML",
    }
    for raw, expect in cases.items():
        records, refusals = parse_iati(raw)
        assert records == []
        assert len(refusals) == 1 and expect in refusals[0].reason, (raw[:40], refusals)
        assert refusals[0].ref == "(file)"


def test_activity_level_refusals_and_heuristics() -> None:
    kh = '<recipient-country code="KH"/>'
    cases = [
        (_act('<recipient-region code="789"/>'), "a recipient-region alone is not enough"),
        (_act(""), "no recipient-country"),
        (
            _act(kh + '<activity-date type="2" iso-date="31/12/2027"/>'),
            "unparseable activity-date start-actual",
        ),
        (
            _act(
                kh
                + '<activity-date type="1" iso-date="2027-05-01"/>'
                + '<activity-date type="3" iso-date="2027-01-01"/>'
            ),
            "before start date",
        ),
        (_act(kh, ident=""), "missing iati-identifier"),
        (_act(kh, ident="X" * 201), "longer than 200"),
    ]
    for activity, expect in cases:
        records, refusals = parse_iati(_doc(activity))
        assert records == [] and len(refusals) == 1 and expect in refusals[0].reason, (expect, refusals)

    # 33120 with no keyword -> wto-tfa; keywords win; unknown status code -> None; dates with a time zone
    records, refusals = parse_iati(
        _doc(
            _act(
                '<activity-status code="9"/><activity-date type="1" iso-date="2027-01-05Z"/>'
                '<recipient-country code="kh"/><recipient-country code="FR"/><sector code="33120"/>'
            )
            + _act(
                "<description><narrative>Webinar series on post-clearance audit</narrative></description>"
                '<activity-status code="6"/><recipient-country code="TL"/><sector code="33120"/>',
                ident="XX-2",
            )
            + _act('<recipient-country code="VN"/><sector code="12220"/>', ident="XX-3")
        )
    )
    assert refusals == []
    one, two, three = records
    assert one.topics == [Topic.wto_tfa] and one.beneficiaries == ["KH"] and one.status is None
    assert one.start == date(2027, 1, 5)
    assert two.topics == [Topic.post_clearance_audit] and two.status == "suspended"
    assert two.modality is Modality.webinar
    assert three.topics == []


def test_utf16_iati_is_read() -> None:
    raw = (
        _doc(_act('<recipient-country code="MY"/>'))
        .decode()
        .replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    )
    records, refusals = parse_iati(raw.encode("utf-16"))
    assert refusals == [] and records[0].beneficiaries == ["MY"]


# ------------------------------------------------------------------------------------------ (c) JSONL


def _line(ident: str, **over: object) -> str:
    base: dict[str, object] = {
        "id": ident,
        "provider": "ROCB A/P",
        "title": "Sub-regional workshop on AEO validation",
        "description": "Validation practice for new AEO programmes.",
        "topics": ["aeo-mra"],
        "beneficiaries": ["KH", "LA"],
        "start": "2027-05-03",
        "end": "2027-05-06",
        "modality": "workshop",
    }
    base.update(over)
    return json.dumps(base)


async def test_jsonl_imports_good_lines_and_reports_bad_ones(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    path = tmp_path / "activities.jsonl"
    lines = [
        _line("ACT-TEST-JSONL-1"),
        _line("ACT-TEST-JSONL-2", topics=["aeo-mra", "astrology"]),
        "",
        _line(
            "ACT-TEST-JSONL-3", beneficiaries=["ASEAN"], modality="study visit", start="2027-06-01", end=None
        ),
        '{"id": "ACT-TEST-JSONL-4", "title": ',
        _line("ACT-TEST-JSONL-5", start="2027-07-01", end="2027-06-01"),
        "[1, 2]",
    ]
    path.write_text("\n".join(lines) + "\n")
    report = await import_catalogue(sessionmaker, path)
    assert report.format == "jsonl"
    assert report.imported == ["ACT-TEST-JSONL-1", "ACT-TEST-JSONL-3"]
    refused = {r.ref: r.reason for r in report.refused}
    assert set(refused) == {"ACT-TEST-JSONL-2", "line 5", "ACT-TEST-JSONL-5", "line 7"}
    assert refused["ACT-TEST-JSONL-2"].startswith("line 2: topics.1")
    assert refused["line 5"].startswith("line 5: invalid JSON")
    assert "line 6" in refused["ACT-TEST-JSONL-5"] and "before start" in refused["ACT-TEST-JSONL-5"]
    assert refused["line 7"] == "line 7: not a JSON object"

    rows = {r.id: r for r in await _rows(sessionmaker, [f"ACT-TEST-JSONL-{i}" for i in range(1, 6)])}
    assert set(rows) == {"ACT-TEST-JSONL-1", "ACT-TEST-JSONL-3"}
    assert rows["ACT-TEST-JSONL-3"].beneficiaries == ALL_STATES
    assert rows["ACT-TEST-JSONL-3"].modality == "study_visit" and rows["ACT-TEST-JSONL-3"].end is None
    assert rows["ACT-TEST-JSONL-1"].source == "taflow"

    again = await import_catalogue(sessionmaker, path)
    assert again == report
    path.write_text(_line("ACT-TEST-JSONL-1", title="Renamed workshop") + "\n")
    await import_catalogue(sessionmaker, path)
    (row,) = await _rows(sessionmaker, ["ACT-TEST-JSONL-1"])
    assert row.title == "Renamed workshop"


async def test_unreadable_or_unknown_files_are_reported(
    sessionmaker: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    missing = await import_catalogue(sessionmaker, tmp_path / "nope.xml")
    assert missing.imported == [] and "cannot read" in missing.refused[0].reason
    odd = tmp_path / "notes.txt"
    odd.write_text("hello")
    assert (await import_catalogue(sessionmaker, odd)).refused[0].reason.startswith("unrecognised format")
    assert parse_catalogue(b"[]", "x.json")[0] == "json"
    assert isinstance(missing, ImportReport)
