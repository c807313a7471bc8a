"""`taflow catalogue experts|programmes|meetings`: CSV/JSON import, validation, editing, on the test database.

The database is shared by the whole test session: everything here uses its own ids (experts
`EXP-99xxxx`, programmes `T-PRG-*`, meetings `T-*` in 2099) and is deleted before and after each test.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from taflow.cli_catalogue import app
from taflow.db.models import ExpertRow
from taflow.db.roster_import import Kind, parse_roster
from taflow.db.session import make_engine, make_sessionmaker
from taflow.domain.enums import MemberState, Topic
from taflow.matching.rank import ExpertProfile

DATA = Path(__file__).resolve().parents[1] / "data" / "roster"
ALL_STATES = [m.value for m in MemberState]
CLEANUP = (
    "delete from invitation_tokens where expert_id like 'EXP-99%'",
    "delete from experts where id like 'EXP-99%'",
    "delete from programmes where id like 'T-PRG-%'",
    "delete from meetings where id like 'T-%' and starts_on >= '2099-01-01'",
)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sql(url: str, *statements: str, args: tuple[Any, ...] = ()) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(_dsn(url))
        try:
            out: list[asyncpg.Record] = []
            for s in statements:
                out = await conn.fetch(s, *args)
            return out
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.fixture
def db(database_url: str) -> Iterator[str]:
    _sql(database_url, *CLEANUP)
    yield database_url
    _sql(database_url, *CLEANUP)


def _run(db: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"TAFLOW_DATABASE_URL": db}, catch_exceptions=False)


def _json(db: str, *args: str) -> list[dict[str, Any]]:
    out = _run(db, *args, "--format", "json")
    assert out.exit_code == 0, out.output
    return [r for r in json.loads(out.stdout) if r["id"].startswith(("EXP-99", "T-"))]


def _refusals(out: Result) -> dict[str, str]:
    """`refused line 3 (EXP-1): reason` lines as {"line 3": reason}."""
    found = {}
    for line in out.stdout.splitlines():
        if line.startswith("  refused "):
            ref, _, reason = line.removeprefix("  refused ").partition(": ")
            found[ref.split(" (")[0]] = reason
    return found


# ---------------------------------------------------------------------------------------- experts


def test_experts_csv_imports_normalised_and_reimports_idempotently(db: str) -> None:
    out = _run(db, "experts", "import", str(DATA / "experts.csv"))
    assert out.exit_code == 0, out.output
    assert "experts.csv (csv): 3 added, 0 updated, 0 refused" in out.stdout
    first = _json(db, "experts", "list")
    assert [e["id"] for e in first] == ["EXP-990101", "EXP-990102", "EXP-990103"]
    aroon, linh, maria = first
    assert aroon["topics"] == ["risk-management", "post-clearance-audit"]
    assert aroon["unavailable"] == [
        {"from": "2099-03-01", "to": "2099-03-15"},
        {"from": "2099-06-01", "to": "2099-06-10"},
    ]
    assert aroon["invitations_12m"] == 2
    # spreadsheet spelling: category, topic, language and administration case is normalised
    assert linh["category"] == "expert trainer"
    assert linh["topics"] == ["green-customs", "environmental-crime", "wildlife-trafficking"]
    assert (linh["languages"], linh["home_administration"], linh["email"]) == (["en", "vi"], "AU", None)
    assert maria["name"] == "Maria Test-Expert, PhD"
    assert maria["unavailable"] == [{"from": "2099-01-05", "to": "2099-01-05"}]  # a single day

    again = _run(db, "experts", "import", str(DATA / "experts.csv"))
    assert again.exit_code == 0, again.output
    assert "0 added, 3 updated, 0 refused" in again.stdout
    assert _json(db, "experts", "list") == first

    stored = _sql(db, "select unavailable from experts where id = 'EXP-990101'")
    assert json.loads(stored[0]["unavailable"]) == {
        "periods": [{"from": "2099-03-01", "to": "2099-03-15"}, {"from": "2099-06-01", "to": "2099-06-10"}]
    }


def test_imported_experts_are_read_by_matching(db: str) -> None:
    assert _run(db, "experts", "import", str(DATA / "experts.csv")).exit_code == 0

    async def profiles() -> list[ExpertProfile]:
        engine = make_engine(db)
        try:
            async with make_sessionmaker(engine)() as s:
                rows = (await s.execute(select(ExpertRow).where(ExpertRow.id.like("EXP-9901%")))).scalars()
                return sorted((ExpertProfile.from_row(r) for r in rows), key=lambda p: p.id)
        finally:
            await engine.dispose()

    aroon = asyncio.run(profiles())[0]
    assert aroon.unavailable == ((date(2099, 3, 1), date(2099, 3, 15)), (date(2099, 6, 1), date(2099, 6, 10)))
    assert not aroon.available(date(2099, 3, 15), date(2099, 3, 17))
    assert aroon.available(date(2099, 3, 16), date(2099, 3, 18))


def test_experts_json_keeps_stored_load_and_unavailability_when_the_file_omits_them(db: str) -> None:
    out = _run(db, "experts", "import", str(DATA / "experts.json"))
    assert out.exit_code == 0, out.output
    assert "experts.json (json): 2 added" in out.stdout
    kenji, siti = _json(db, "experts", "list")
    assert (kenji["invitations_12m"], kenji["unavailable"]) == (
        4,
        [{"from": "2099-02-01", "to": "2099-02-20"}],
    )
    assert (siti["invitations_12m"], siti["unavailable"]) == (0, [])

    _sql(db, "update experts set invitations_12m = 7 where id in ('EXP-990201', 'EXP-990202')")
    assert _run(db, "experts", "set-unavailable", "EXP-990202", "2099-05-01", "2099-05-03").exit_code == 0
    assert _run(db, "experts", "import", str(DATA / "experts.json")).exit_code == 0
    kenji, siti = _json(db, "experts", "list")
    assert kenji["invitations_12m"] == 4  # given in the file: replaced
    assert siti["invitations_12m"] == 7  # not given: kept
    assert siti["unavailable"] == [{"from": "2099-05-01", "to": "2099-05-03"}]


def test_bad_expert_rows_are_refused_with_line_and_field_and_nothing_is_written(db: str) -> None:
    out = _run(db, "experts", "import", str(DATA / "experts-bad.csv"))
    assert out.exit_code == 1
    assert "6 refused, nothing written (1 valid" in out.stdout
    refused = _refusals(out)
    assert set(refused) == {f"line {n}" for n in range(3, 9)}
    assert refused["line 3"] == "topics[1]: unknown topic 'risk-managment' (did you mean 'risk-management'?)"
    assert refused["line 4"].startswith("category: 'trainer' is not one of 'diagnostic facilitator'")
    assert refused["line 5"] == "home_administration: use the two-letter code TH, not THA"
    assert "unavailable: '2099-04-01/2099-04-02' is not FROM..TO" in refused["line 6"]
    assert "unavailable[1]: period ends (2099-03-01) before it starts (2099-03-15)" in refused["line 6"]
    assert refused["line 7"] == "id: EXP-990301 appears again (first at line 2)"
    for part in (
        "id: 'X-1'",
        "name: missing",
        "topics: at least 2",
        "languages[1]: 'english'",
        "invitations_12m",
    ):
        assert part in refused["line 8"]
    assert all("\n" not in r for r in refused.values())
    assert _json(db, "experts", "list") == []


def test_dry_run_writes_nothing_and_partial_writes_the_valid_rows(db: str) -> None:
    dry = _run(db, "experts", "import", "--dry-run", str(DATA / "experts.csv"))
    assert dry.exit_code == 0, dry.output
    assert "3 valid, 0 refused (dry run: nothing written)" in dry.stdout
    assert _json(db, "experts", "list") == []

    partial = _run(db, "experts", "import", "--partial", str(DATA / "experts-bad.csv"))
    assert partial.exit_code == 1, "something was refused: still a failure"
    assert "1 added, 0 updated, 6 refused" in partial.stdout
    assert [e["id"] for e in _json(db, "experts", "list")] == ["EXP-990301"]


def test_experts_list_filters_by_topic_and_rejects_an_unknown_one(db: str) -> None:
    assert _run(db, "experts", "import", str(DATA / "experts.csv")).exit_code == 0
    assert [e["id"] for e in _json(db, "experts", "list", "--topic", "customs-valuation")] == ["EXP-990103"]
    table = _run(db, "experts", "list", "--topic", "Green Customs")
    assert table.exit_code == 0, table.output
    assert "EXP-990102" in table.stdout and "EXP-990101" not in table.stdout
    assert "2099-03-01..2099-03-15" in _run(db, "experts", "list").stdout
    bad = _run(db, "experts", "list", "--topic", "risk-managment")
    assert bad.exit_code == 2
    assert "did you mean 'risk-management'" in bad.output


def test_csv_export_imports_back_unchanged(db: str, tmp_path: Path) -> None:
    assert _run(db, "experts", "import", str(DATA / "experts.csv")).exit_code == 0
    assert _run(db, "experts", "import", str(DATA / "experts.json")).exit_code == 0
    before = _json(db, "experts", "list")
    exported = _run(db, "experts", "list", "--format", "csv")
    assert exported.exit_code == 0
    header, *lines = exported.stdout.splitlines()
    ours = [line for line in lines if line.startswith("EXP-99")]
    (tmp_path / "roster.csv").write_text("\n".join([header, *ours]) + "\n", encoding="utf-8")
    out = _run(db, "experts", "import", str(tmp_path / "roster.csv"))
    assert out.exit_code == 0, out.output
    assert "0 added, 5 updated" in out.stdout
    assert _json(db, "experts", "list") == before


def test_set_and_clear_unavailable(db: str) -> None:
    assert _run(db, "experts", "import", str(DATA / "experts.csv")).exit_code == 0
    out = _run(db, "experts", "set-unavailable", "EXP-990101", "2099-01-10", "2099-01-12")
    assert out.exit_code == 0, out.output
    assert "2099-01-10..2099-01-12, 2099-03-01..2099-03-15, 2099-06-01..2099-06-10" in out.stdout
    assert _run(db, "experts", "set-unavailable", "EXP-990101", "2099-01-10", "2099-01-12").exit_code == 0
    assert len(_json(db, "experts", "list")[0]["unavailable"]) == 3, "the same period is kept once"

    assert _run(db, "experts", "set-unavailable", "EXP-990101", "2099-01-12", "2099-01-10").exit_code == 2
    assert _run(db, "experts", "set-unavailable", "EXP-990101", "12/01/2099", "2099-01-13").exit_code == 2
    missing = _run(db, "experts", "set-unavailable", "EXP-990999", "2099-01-10", "2099-01-12")
    assert missing.exit_code == 1
    assert "no expert EXP-990999" in missing.output

    cleared = _run(db, "experts", "clear-unavailable", "EXP-990101")
    assert cleared.exit_code == 0
    assert "3 unavailable period(s) removed" in cleared.stdout
    assert _json(db, "experts", "list")[0]["unavailable"] == []


def test_remove_refuses_an_expert_holding_a_live_invitation_unless_forced(db: str) -> None:
    assert _run(db, "experts", "import", str(DATA / "experts.csv")).exit_code == 0
    assert _run(db, "experts", "remove", "EXP-990103").exit_code == 0
    assert [e["id"] for e in _json(db, "experts", "list")] == ["EXP-990101", "EXP-990102"]
    assert _run(db, "experts", "remove", "EXP-990103").exit_code == 1

    _sql(
        db,
        "insert into invitation_tokens (digest, invitation_id, request_id, expert_id, expires_at)"
        " values ($1, $2, $3, $4, $5)",
        args=("t" * 64, "T-INV-990101", "T-REQ-990101", "EXP-990101", datetime.now(UTC) + timedelta(days=3)),
    )
    refused = _run(db, "experts", "remove", "EXP-990101")
    assert refused.exit_code == 1
    assert "T-REQ-990101" in refused.output and "--force" in refused.output
    assert _run(db, "experts", "remove", "EXP-990101", "--force").exit_code == 0
    assert [e["id"] for e in _json(db, "experts", "list")] == ["EXP-990102"]


# ------------------------------------------------------------------------------------- programmes


def test_programmes_csv_and_json_expand_asean_and_validate(db: str) -> None:
    out = _run(db, "programmes", "import", str(DATA / "programmes.csv"))
    assert out.exit_code == 0, out.output
    assert "3 added" in out.stdout
    out = _run(db, "programmes", "import", str(DATA / "programmes.json"))  # {"programmes": [...]}
    assert out.exit_code == 0, out.output
    stored = {
        r["id"]: (r["funding_partner"], list(r["beneficiaries"]))
        for r in _sql(db, "select id, funding_partner, beneficiaries from programmes where id like 'T-PRG-%'")
    }
    assert stored == {
        "T-PRG-AU-01": ("Australia", ALL_STATES),
        "T-PRG-JP-01": ("Japan", ["KH", "LA", "MM"]),
        "T-PRG-WCO-01": (None, ["TL"]),
        "T-PRG-KR-01": ("Korea", ALL_STATES),
        "T-PRG-CN-01": ("China", ["KH", "LA", "MM", "VN"]),
    }
    listed = {p["id"]: p for p in _json(db, "programmes", "list")}
    assert listed["T-PRG-AU-01"]["beneficiaries"] == ["ASEAN"]
    assert [p["id"] for p in _json(db, "programmes", "list", "--beneficiary", "tl")] == [
        "T-PRG-AU-01",
        "T-PRG-KR-01",
        "T-PRG-WCO-01",
    ]
    assert [p["id"] for p in _json(db, "programmes", "list", "--topic", "hs-classification")] == [
        "T-PRG-CN-01"
    ]
    assert _run(db, "programmes", "list", "--beneficiary", "KE").exit_code == 2


def test_bad_programmes_are_refused(db: str) -> None:
    out = _run(db, "programmes", "import", str(DATA / "programmes-bad.json"))
    assert out.exit_code == 1
    assert _refusals(out) == {
        "item 1": "beneficiaries: unknown beneficiaries ['KE']: use member state codes or 'ASEAN'",
        "item 2": "funding_partner: 'Germany' is not one of 'Australia', 'Japan', 'China' or 'Korea'",
        "item 3": "topics: at least 1 needed, 0 given",
        "item 4": "not an object but str",
    }
    assert _json(db, "programmes", "list") == []


# --------------------------------------------------------------------------------------- meetings


def test_meetings_import_list_and_date_rules(db: str, tmp_path: Path) -> None:
    assert _run(db, "meetings", "import", str(DATA / "meetings.csv")).exit_code == 0
    assert _run(db, "meetings", "import", str(DATA / "meetings.json")).exit_code == 0
    meetings = _json(db, "meetings", "list")
    assert [m["id"] for m in meetings] == ["T-CCWG-901", "T-CCC-901", "T-CPTFWG-901"]
    assert meetings[1]["body"] == "CCC"
    assert meetings[0] == {
        "id": "T-CCWG-901",
        "body": "CCWG",
        "number": 901,
        "starts_on": "2099-03-16",
        "ends_on": "2099-03-18",
        "place": "Vientiane, Lao PDR",
        "agenda_cutoff": "2099-02-09",
    }
    assert [m["id"] for m in _json(db, "meetings", "list", "--body", "ccwg", "--open")] == ["T-CCWG-901"]
    assert _run(db, "meetings", "list", "--body", "ASEM").exit_code == 2

    bad = _run(db, "meetings", "import", str(DATA / "meetings-bad.csv"))
    assert bad.exit_code == 1
    refused = _refusals(bad)
    assert refused["line 3"] == "agenda_cutoff: 2099-03-20 must be before starts_on 2099-03-16"
    assert refused["line 4"] == "ends_on: 2099-03-10 is before starts_on 2099-03-16"
    assert refused["line 5"].startswith("body: 'ASEM' is not one of 'CCWG'")
    assert refused["line 6"] == "number: CCWG 902 is already T-CCWG-902 in this file"
    assert "number: 'nine' is not a whole number" in refused["line 7"]
    assert "starts_on: '2099-13-16' is not a date" in refused["line 7"]
    assert "T-CCWG-902" not in {m["id"] for m in _json(db, "meetings", "list")}

    clash = tmp_path / "clash.csv"
    clash.write_text(
        "id,body,number,starts_on,ends_on,place,agenda_cutoff\n"
        "T-CCWG-901-BIS,CCWG,901,2099-03-16,2099-03-18,Vientiane,2099-02-09\n"
    )
    out = _run(db, "meetings", "import", str(clash))
    assert out.exit_code == 1
    assert _refusals(out) == {"line 2": "number: CCWG 901 is already meeting T-CCWG-901"}


# ------------------------------------------------------------------------------------ whole files


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("x.csv", "id,name,colour\n", "unknown column(s) 'colour'"),
        ("x.csv", "id,name,provider,topics\n", "missing column(s): beneficiaries"),
        ("x.csv", "", "empty file"),
        ("x.json", '[{"id": "T-PRG-1",]', "not valid JSON: line 1"),
        (
            "x.json",
            '{"experts": []}',
            'expected a JSON list of programmes (or an object with a "programmes" list)',
        ),
        ("x.csv", b"id,name\n\xff\xfe\n", "not UTF-8 text"),
    ],
)
def test_an_unusable_file_is_refused_in_one_line(
    db: str, tmp_path: Path, name: str, content: str | bytes, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = _run(db, "programmes", "import", str(path))
    assert out.exit_code == 1
    assert f"taflow: {name}: refused, nothing written: " in out.output
    assert reason in out.output
    assert "Traceback" not in out.output


def test_format_is_read_from_the_content_when_the_extension_says_nothing(db: str, tmp_path: Path) -> None:
    path = tmp_path / "meetings.txt"
    path.write_bytes((DATA / "meetings.json").read_bytes())
    out = _run(db, "meetings", "import", str(path))
    assert out.exit_code == 0, out.output
    assert "meetings.txt (json): 1 added" in out.stdout


def test_help_lists_the_activity_import_beside_the_roster(db: str) -> None:
    out = _run(db, "--help")
    assert out.exit_code == 0
    for command in ("import", "experts", "programmes", "meetings"):
        assert command in out.stdout
    out = _run(db, "experts", "--help")
    for command in ("import", "list", "set-unavailable", "clear-unavailable", "remove"):
        assert command in out.stdout


def test_the_examples_and_topics_in_the_officers_guide_are_valid() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "catalogue.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(csv|json)\n(.*?)```", guide, flags=re.S)
    kinds: dict[str, Kind] = {
        "accreditation": "experts",
        "provider": "programmes",
        "agenda_cutoff": "meetings",
    }
    checked = 0
    for fmt, text in blocks:
        if fmt == "csv" and "," not in text.splitlines()[0]:
            continue
        kind = next(k for column, k in kinds.items() if column in text)
        _, valid, refused = parse_roster(kind, text.encode(), name=f"example.{fmt}")
        assert valid and not refused, (text, refused)
        checked += 1
    assert checked >= 4
    listed = re.findall(r"`([a-z0-9-]+)`", guide.split("## Topics", 1)[1])
    assert listed == [t.value for t in Topic]
