"""The roster: experts, programmes and meetings, imported from CSV or JSON and edited from the CLI.

A file is read and validated in full before anything is written. Each record is checked with the
reference data's own models (`ExpertRef`, `ProgrammeRef`, `MeetingRef`), so the roster obeys the
same rules as the seeded reference file: topics from the taxonomy, member state codes, one of the
three expert categories, one of the five meeting bodies, agenda cut-off before the meeting, end not
before start. Every refused record gets a one-line reason naming where it is (CSV line or JSON
item) and which field is wrong. Unless `partial` is asked for, one refused record means nothing is
written; the upserts (on the id) run in one transaction, so importing a file twice changes nothing.

For experts, `unavailable` and `invitations_12m` that a file does not give (column or key absent;
for `invitations_12m` also an empty cell) keep their stored values on update, so a roster exported
before the engine counted invitations does not reset the counts.
"""

from __future__ import annotations

import asyncio
import csv
import difflib
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, StringConstraints, ValidationError, field_validator
from sqlalchemy import Table, any_, delete, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import ExpertRow, InvitationTokenRow, MeetingRow, ProgrammeRow, RequestRow
from taflow.db.seed import upsert
from taflow.domain.enums import ORGANISATION_IDS, Stage, Topic
from taflow.matching.rank import parse_unavailable
from taflow.reference import (
    MEMBER_STATE_CODES,
    ExpertRef,
    MeetingRef,
    ProgrammeRef,
    expand_beneficiaries,
)
from taflow.reference import (
    ExpertCategory as _ExpertCategory,
)
from taflow.reference import (
    FundingPartner as _FundingPartner,
)
from taflow.reference import (
    MeetingBody as _MeetingBody,
)

__all__ = [
    "KINDS",
    "MAX_FILE_BYTES",
    "ExpertImport",
    "Kind",
    "Parsed",
    "Refusal",
    "RemoveRefused",
    "RosterFileError",
    "RosterReport",
    "add_unavailable",
    "clear_unavailable",
    "expert_record",
    "import_roster",
    "list_experts",
    "list_meetings",
    "list_programmes",
    "meeting_record",
    "parse_roster",
    "programme_record",
    "remove_expert",
    "to_csv",
]

Kind = Literal["experts", "programmes", "meetings"]
KINDS: tuple[Kind, ...] = get_args(Kind)
FileFormat = Literal["csv", "json"]
MAX_FILE_BYTES = 20 * 1024 * 1024
LIST_SEP = ";"
RANGE_SEP = ".."

_ASEAN_ALPHA3 = {
    "BRN": "BN",
    "KHM": "KH",
    "IDN": "ID",
    "LAO": "LA",
    "MYS": "MY",
    "MMR": "MM",
    "PHL": "PH",
    "SGP": "SG",
    "THA": "TH",
    "VNM": "VN",
    "TLS": "TL",
}


class ExpertImport(ExpertRef):
    """An expert as imported: the reference rules, a real e-mail address allowed (the reference
    file only holds fictional `@example.org` ones), and a home administration that is a country's
    two-letter code or one of ASEC, ROCB-AP, WCO (the conflict-of-interest rule compares it with
    the requesting member state's code)."""

    email: Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=200)] | None = (
        None
    )

    @field_validator("home_administration")
    @classmethod
    def _administration(cls, v: str) -> str:
        if v in ORGANISATION_IDS or (len(v) == 2 and v.isalpha()):
            return v
        if v in _ASEAN_ALPHA3:
            raise ValueError(f"use the two-letter code {_ASEAN_ALPHA3[v]}, not {v}")
        raise ValueError(
            f"{v!r} is not an administration code: use a two-letter country code (TH, JP) "
            "or ASEC, ROCB-AP, WCO"
        )


_MODELS: dict[Kind, type[BaseModel]] = {
    "experts": ExpertImport,
    "programmes": ProgrammeRef,
    "meetings": MeetingRef,
}
_LIST_FIELDS = {"topics", "languages", "beneficiaries"}
_KEPT_IF_ABSENT = ("unavailable", "invitations_12m")
"""Expert fields that keep their stored value when a file does not give them."""


class RosterFileError(ValueError):
    """The whole file is unusable (unreadable, not CSV/JSON, wrong columns). Nothing was written."""


class Refusal(BaseModel):
    ref: str
    reason: str


class RosterReport(BaseModel):
    kind: Kind
    format: FileFormat
    added: list[str] = []
    updated: list[str] = []
    valid: list[str] = []
    refused: list[Refusal] = []
    written: bool = False


@dataclass(frozen=True)
class Parsed:
    """One valid record, where it came from and which fields the file gave."""

    ref: str
    model: BaseModel
    given: frozenset[str]


# ---------------------------------------------------------------------------------------- parsing


def parse_roster(
    kind: Kind, raw: bytes, *, name: str = "file"
) -> tuple[FileFormat, list[Parsed], list[Refusal]]:
    """Validate a roster file: CSV or JSON by extension, else by content. Raises `RosterFileError`."""
    if len(raw) > MAX_FILE_BYTES:
        raise RosterFileError(f"larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise RosterFileError(
            f"not UTF-8 text (byte {e.start}); save the spreadsheet as 'CSV UTF-8'"
        ) from None
    if "\x00" in text:
        raise RosterFileError("contains NUL characters: not a text file")
    suffix = Path(name).suffix.lower()
    fmt: FileFormat
    if suffix == ".csv":
        fmt = "csv"
    elif suffix == ".json":
        fmt = "json"
    else:
        fmt = "json" if text.lstrip()[:1] in ("[", "{") else "csv"
    items = _json_items(kind, text) if fmt == "json" else _csv_items(kind, text)
    valid: list[Parsed] = []
    refused: list[Refusal] = []
    first_seen: dict[str, str] = {}
    for ref, data, problems in items:
        record_id = str(data.get("id") or "").strip()
        label = f"{ref} ({record_id})" if record_id else ref
        model: BaseModel | None = None
        try:
            if data or not problems:
                model = _MODELS[kind].model_validate(_normalise(data))
        except ValidationError as e:
            problems = [*problems, *(_describe(err) or _record_reason(data) for err in e.errors())]
        if model is not None and not problems:
            model_id = str(getattr(model, "id"))  # noqa: B009
            if model_id in first_seen:
                problems.append(f"id: {model_id} appears again (first at {first_seen[model_id]})")
            else:
                first_seen[model_id] = ref
        if problems or model is None:
            refused.append(Refusal(ref=label, reason="; ".join(problems)))
        else:
            valid.append(Parsed(ref=label, model=model, given=frozenset(data)))
    if kind == "meetings":
        valid, clash = _unique_meeting_numbers(valid)
        order = {ref: n for n, (ref, _, _) in enumerate(items)}
        refused = sorted([*refused, *clash], key=lambda r: order.get(r.ref.split(" (")[0], 0))
    return fmt, valid, refused


_Item = tuple[str, dict[str, Any], list[str]]
"""Where a record is, its raw fields, and conversion problems found before validation."""


def _json_items(kind: Kind, text: str) -> list[_Item]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RosterFileError(f"not valid JSON: line {e.lineno} column {e.colno}: {e.msg}") from None
    if isinstance(doc, dict) and isinstance(doc.get(kind), list):
        doc = doc[kind]  # a reference-shaped document: {"experts": [...], ...}
    if not isinstance(doc, list):
        raise RosterFileError(f'expected a JSON list of {kind} (or an object with a "{kind}" list)')
    items: list[_Item] = []
    for n, item in enumerate(doc, start=1):
        if isinstance(item, dict):
            items.append((f"item {n}", item, []))
        else:
            items.append((f"item {n}", {}, [f"not an object but {type(item).__name__}"]))
    return items


def _csv_items(kind: Kind, text: str) -> list[_Item]:
    model = _MODELS[kind]
    allowed = list(model.model_fields)
    required = [f for f, info in model.model_fields.items() if info.is_required()]
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header_row = next(reader, None)
        if header_row is None:
            raise RosterFileError("empty file: the first line must name the columns")
        header = [h.strip().lower().replace(" ", "_").replace("-", "_") for h in header_row]
        if len(header) == 1 and LIST_SEP in header[0]:
            raise RosterFileError("columns must be separated by commas, not ';' (';' separates list items)")
        unknown = [h for h in header if h not in allowed]
        if unknown:
            raise RosterFileError(
                f"unknown column(s) {', '.join(repr(h) for h in unknown)}; {kind} columns are: "
                + ", ".join(allowed)
            )
        dup = sorted({h for h in header if header.count(h) > 1})
        if dup:
            raise RosterFileError(f"column(s) given twice: {', '.join(dup)}")
        missing = [f for f in required if f not in header]
        if missing:
            raise RosterFileError(f"missing column(s): {', '.join(missing)}")
        items: list[_Item] = []
        start = reader.line_num + 1
        for cells in reader:
            ref, start = f"line {start}", reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if len(cells) > len(header):
                items.append((ref, {}, [f"{len(cells)} cells but {len(header)} columns"]))
                continue
            data: dict[str, Any] = {}
            problems: list[str] = []
            for column, cell in zip(header, cells, strict=False):
                _csv_cell(column, cell.strip(), data, problems)
            for column in header[len(cells) :]:
                _csv_cell(column, "", data, problems)
            items.append((ref, data, problems))
        return items
    except csv.Error as e:
        raise RosterFileError(f"not valid CSV: line {reader.line_num}: {e}") from None


def _csv_cell(column: str, cell: str, data: dict[str, Any], problems: list[str]) -> None:
    if column in _LIST_FIELDS:
        data[column] = _split(cell)
    elif column == "unavailable":
        periods: list[dict[str, str]] = []
        for part in _split(cell):
            start, sep, end = part.partition(RANGE_SEP)
            if not sep:
                end = start  # a single day
            if not (_is_date(start.strip()) and _is_date(end.strip())):
                problems.append(f"unavailable: {_short(part)} is not FROM..TO (e.g. 2027-03-01..2027-03-15)")
                continue
            periods.append({"from": start.strip(), "to": end.strip()})
        data[column] = periods
    elif column in ("email", "funding_partner"):
        data[column] = cell or None
    elif cell or column == "description":
        data[column] = cell
    # any other empty cell: absent, so the model says `missing` or applies its default


def _split(cell: str) -> list[str]:
    return [p.strip() for p in cell.split(LIST_SEP) if p.strip()]


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _casefold_to(value: object, choices: Iterable[str]) -> object:
    if isinstance(value, str):
        folded = " ".join(value.split()).casefold()
        for choice in choices:
            if choice.casefold() == folded:
                return choice
    return value


def _normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """Spreadsheet-friendly spelling: case and spaces of codes and enum values; nothing else."""
    out = dict(data)
    if isinstance(out.get("topics"), list):
        out["topics"] = [
            t.strip().lower().replace("_", "-").replace(" ", "-") if isinstance(t, str) else t
            for t in out["topics"]
        ]
    if isinstance(out.get("languages"), list):
        out["languages"] = [x.strip().lower() if isinstance(x, str) else x for x in out["languages"]]
    if isinstance(out.get("home_administration"), str):
        out["home_administration"] = out["home_administration"].strip().upper()
    if isinstance(out.get("email"), str):
        out["email"] = out["email"].strip() or None
    out["category"] = _casefold_to(out.get("category"), get_args(_ExpertCategory))
    out["body"] = _casefold_to(out.get("body"), get_args(_MeetingBody))
    out["funding_partner"] = _casefold_to(out.get("funding_partner"), get_args(_FundingPartner))
    return {k: v for k, v in out.items() if k in data}


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _describe(err: Mapping[str, Any]) -> str:
    """One pydantic error as `field: reason`, one line, without pydantic's URLs."""
    loc = [str(p) for p in err.get("loc", ())]
    field = loc[0] if loc else ""
    where = field + "".join(f"[{int(p) + 1}]" for p in loc[1:2] if p.isdigit())
    typ = str(err.get("type", ""))
    value = err.get("input")
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    if typ == "missing":
        return f"{where}: missing"
    if typ == "extra_forbidden":
        return f"{where}: unknown field"
    if typ == "enum" and field == "topics":
        close = difflib.get_close_matches(str(value), [t.value for t in Topic], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{where}: unknown topic {_short(value)}{hint}"
    if typ == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        return f"{where}: {_short(value)} is not one of {expected}"
    if typ == "string_pattern_mismatch":
        return f"{where}: {_short(value)} {_PATTERN_HINTS.get(field, 'has the wrong form')}"
    if typ.startswith("date_"):
        return f"{where}: {_short(value)} is not a date (YYYY-MM-DD)"
    if typ.startswith("int_"):
        return f"{where}: {_short(value)} is not a whole number"
    ctx = err.get("ctx", {})
    if typ == "too_short":
        return f"{where}: at least {ctx.get('min_length')} needed, {ctx.get('actual_length')} given"
    if typ == "too_long":
        return f"{where}: at most {ctx.get('max_length')} allowed, {ctx.get('actual_length')} given"
    if typ == "greater_than_equal":
        return f"{where}: {_short(value)} is below {ctx.get('ge')}"
    if not where:
        return ""  # a whole-record rule: `_record_reason` names the fields
    return f"{where}: {msg}"


def _record_reason(data: Mapping[str, Any]) -> str:
    """A meeting's date rules, as `field: reason` with the dates (MeetingRef says it without them)."""
    starts, ends, cutoff = (str(data.get(k, "")).strip() for k in ("starts_on", "ends_on", "agenda_cutoff"))
    reasons = []
    if _is_date(starts) and _is_date(ends) and ends < starts:
        reasons.append(f"ends_on: {ends} is before starts_on {starts}")
    if _is_date(starts) and _is_date(cutoff) and cutoff >= starts:
        reasons.append(f"agenda_cutoff: {cutoff} must be before starts_on {starts}")
    return "; ".join(reasons) or "the record breaks a rule across its fields"


_PATTERN_HINTS = {
    "id": "is not an expert id like EXP-123",
    "languages": "is not a two-letter language code (ISO 639-1) like en, th, vi",
    "home_administration": "is not an administration code like TH, JP or WCO",
    "email": "is not an e-mail address",
}


def _unique_meeting_numbers(valid: list[Parsed]) -> tuple[list[Parsed], list[Refusal]]:
    seen: dict[tuple[str, int], str] = {}
    keep: list[Parsed] = []
    refused: list[Refusal] = []
    for p in valid:
        m = p.model
        assert isinstance(m, MeetingRef)
        key = (m.body, m.number)
        if key in seen:
            refused.append(
                Refusal(ref=p.ref, reason=f"number: {m.body} {m.number} is already {seen[key]} in this file")
            )
        else:
            seen[key] = m.id
            keep.append(p)
    return keep, refused


# ------------------------------------------------------------------------------------------ rows


def _periods_json(periods: Iterable[tuple[date, date]]) -> dict[str, Any]:
    return {"periods": [{"from": a.isoformat(), "to": b.isoformat()} for a, b in sorted(set(periods))]}


def _row(kind: Kind, model: BaseModel) -> dict[str, Any]:
    if isinstance(model, ExpertRef):
        return {
            "id": model.id,
            "name": model.name,
            "accreditation": model.accreditation,
            "category": model.category,
            "topics": [t.value for t in model.topics],
            "languages": list(model.languages),
            "home_administration": model.home_administration,
            "email": model.email,
            "unavailable": _periods_json((p.from_, p.to) for p in model.unavailable),
            "invitations_12m": model.invitations_12m,
        }
    if isinstance(model, ProgrammeRef):
        return {
            "id": model.id,
            "name": model.name,
            "provider": model.provider,
            "funding_partner": model.funding_partner,
            "topics": [t.value for t in model.topics],
            "beneficiaries": expand_beneficiaries(model.beneficiaries),
            "description": model.description,
        }
    assert isinstance(model, MeetingRef), kind
    return model.model_dump()


_TABLES: dict[Kind, type[ExpertRow] | type[ProgrammeRow] | type[MeetingRow]] = {
    "experts": ExpertRow,
    "programmes": ProgrammeRow,
    "meetings": MeetingRow,
}


async def _upsert_experts(session: AsyncSession, parsed: Sequence[Parsed]) -> None:
    """Upsert experts; a kept field the file did not give is left as stored on update."""
    groups: dict[frozenset[str], list[dict[str, Any]]] = {}
    for p in parsed:
        row = _row("experts", p.model)
        absent = frozenset(f for f in _KEPT_IF_ABSENT if f not in p.given)
        groups.setdefault(absent, []).append(row)
    table = ExpertRow.__table__
    assert isinstance(table, Table)
    for absent, rows in groups.items():
        stmt = insert(table).values(rows)
        updates = {
            c.name: stmt.excluded[c.name] for c in table.columns if c.name != "id" and c.name not in absent
        }
        await session.execute(stmt.on_conflict_do_update(index_elements=["id"], set_=updates))


async def _meeting_clashes(session: AsyncSession, parsed: Sequence[Parsed]) -> dict[str, str]:
    """Meetings whose body and number already belong to another stored meeting: ref -> reason."""
    wanted = [p for p in parsed if isinstance(p.model, MeetingRef)]
    if not wanted:
        return {}
    bodies = sorted({p.model.body for p in wanted if isinstance(p.model, MeetingRef)})
    found = await session.execute(
        select(MeetingRow.body, MeetingRow.number, MeetingRow.id).where(MeetingRow.body.in_(bodies))
    )
    stored = {(b, n): i for b, n, i in found.all()}
    in_file = {p.model.id for p in wanted if isinstance(p.model, MeetingRef)}
    clashes: dict[str, str] = {}
    for p in wanted:
        m = p.model
        assert isinstance(m, MeetingRef)
        other = stored.get((m.body, m.number))
        if other is not None and other != m.id and other not in in_file:
            clashes[p.ref] = f"number: {m.body} {m.number} is already meeting {other}"
    return clashes


async def import_roster(
    sessions: async_sessionmaker[AsyncSession],
    kind: Kind,
    path: Path,
    *,
    partial: bool = False,
    dry_run: bool = False,
) -> RosterReport:
    """Validate `path` and upsert its records in one transaction (see the module docstring)."""
    try:
        raw = await asyncio.to_thread(path.read_bytes)
    except OSError as e:
        raise RosterFileError(f"cannot read: {e.strerror or e}") from None
    fmt, valid, refused = parse_roster(kind, raw, name=path.name)
    report = RosterReport(kind=kind, format=fmt, refused=refused)
    model = _TABLES[kind]
    async with sessions() as session, session.begin():
        if kind == "meetings":
            clashes = await _meeting_clashes(session, valid)
            report.refused.extend(
                Refusal(ref=p.ref, reason=clashes[p.ref]) for p in valid if p.ref in clashes
            )
            valid = [p for p in valid if p.ref not in clashes]
        ids = [str(getattr(p.model, "id")) for p in valid]  # noqa: B009
        report.valid = ids
        if not ids or dry_run or (report.refused and not partial):
            return report
        existing = set((await session.execute(select(model.id).where(model.id.in_(ids)))).scalars())
        if kind == "experts":
            await _upsert_experts(session, valid)
        else:
            await upsert(session, model, [_row(kind, p.model) for p in valid])
        report.added = [i for i in ids if i not in existing]
        report.updated = [i for i in ids if i in existing]
        report.written = True
    return report


# -------------------------------------------------------------------------------------- records


def expert_record(row: ExpertRow) -> dict[str, Any]:
    """An expert in the reference file's shape (what JSON import reads back)."""
    return {
        "id": row.id,
        "name": row.name,
        "accreditation": row.accreditation,
        "category": row.category,
        "topics": list(row.topics),
        "languages": list(row.languages),
        "home_administration": row.home_administration,
        "email": row.email,
        "unavailable": [
            {"from": a.isoformat(), "to": b.isoformat()} for a, b in parse_unavailable(row.unavailable)
        ],
        "invitations_12m": row.invitations_12m,
    }


def _collapse(beneficiaries: Sequence[str]) -> list[str]:
    return ["ASEAN"] if set(beneficiaries) == set(MEMBER_STATE_CODES) else list(beneficiaries)


def programme_record(row: ProgrammeRow) -> dict[str, Any]:
    """A programme in the reference file's shape; all eleven member states are written `ASEAN`."""
    return {
        "id": row.id,
        "name": row.name,
        "provider": row.provider,
        "funding_partner": row.funding_partner,
        "topics": list(row.topics),
        "beneficiaries": _collapse(row.beneficiaries),
        "description": row.description,
    }


def meeting_record(row: MeetingRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "body": row.body,
        "number": row.number,
        "starts_on": row.starts_on.isoformat(),
        "ends_on": row.ends_on.isoformat(),
        "place": row.place,
        "agenda_cutoff": row.agenda_cutoff.isoformat(),
    }


def _cell(field: str, value: Any) -> str:
    if value is None:
        return ""
    if field == "unavailable":
        return LIST_SEP.join(f"{p['from']}{RANGE_SEP}{p['to']}" for p in value)
    if isinstance(value, list):
        return LIST_SEP.join(str(v) for v in value)
    return str(value)


def to_csv(kind: Kind, records: Sequence[Mapping[str, Any]]) -> str:
    """Records as the CSV that `import` reads (a round trip through a spreadsheet)."""
    fields = list(_MODELS[kind].model_fields)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(fields)
    for r in records:
        writer.writerow([_cell(f, r.get(f)) for f in fields])
    return out.getvalue()


# ------------------------------------------------------------------------------------- editing


async def list_experts(
    sessions: async_sessionmaker[AsyncSession], topic: str | None = None
) -> list[dict[str, Any]]:
    stmt = select(ExpertRow).order_by(ExpertRow.id)
    if topic:
        stmt = stmt.where(literal(topic) == any_(ExpertRow.topics))
    async with sessions() as session:
        return [expert_record(r) for r in (await session.execute(stmt)).scalars()]


async def list_programmes(
    sessions: async_sessionmaker[AsyncSession], topic: str | None = None, beneficiary: str | None = None
) -> list[dict[str, Any]]:
    stmt = select(ProgrammeRow).order_by(ProgrammeRow.id)
    if topic:
        stmt = stmt.where(literal(topic) == any_(ProgrammeRow.topics))
    if beneficiary:
        stmt = stmt.where(literal(beneficiary) == any_(ProgrammeRow.beneficiaries))
    async with sessions() as session:
        return [programme_record(r) for r in (await session.execute(stmt)).scalars()]


async def list_meetings(
    sessions: async_sessionmaker[AsyncSession], body: str | None = None, open_on: date | None = None
) -> list[dict[str, Any]]:
    """Meetings by date; `open_on`: only those whose agenda cut-off is on or after that day."""
    stmt = select(MeetingRow).order_by(MeetingRow.starts_on, MeetingRow.id)
    if body:
        stmt = stmt.where(MeetingRow.body == body)
    if open_on:
        stmt = stmt.where(MeetingRow.agenda_cutoff >= open_on)
    async with sessions() as session:
        return [meeting_record(r) for r in (await session.execute(stmt)).scalars()]


async def add_unavailable(
    sessions: async_sessionmaker[AsyncSession], expert_id: str, start: date, end: date
) -> list[tuple[date, date]] | None:
    """Add an unavailable period (kept sorted, exact repeats once); None when there is no such expert."""
    if end < start:
        raise ValueError(f"the period ends ({end}) before it starts ({start})")
    async with sessions() as session, session.begin():
        row = await session.get(ExpertRow, expert_id, with_for_update=True)
        if row is None:
            return None
        periods = sorted({*parse_unavailable(row.unavailable), (start, end)})
        row.unavailable = _periods_json(periods)
        return periods


async def clear_unavailable(sessions: async_sessionmaker[AsyncSession], expert_id: str) -> int | None:
    """Remove every unavailable period; returns how many there were, None when there is no such expert."""
    async with sessions() as session, session.begin():
        row = await session.get(ExpertRow, expert_id, with_for_update=True)
        if row is None:
            return None
        had = len(parse_unavailable(row.unavailable))
        row.unavailable = _periods_json([])
        return had


class RemoveRefused(Exception):
    """The expert is still engaged (an open request or a live invitation link); nothing was removed."""


_OPEN_STAGES = [s.value for s in Stage if s.is_open]


async def remove_expert(
    sessions: async_sessionmaker[AsyncSession], expert_id: str, *, force: bool = False
) -> bool:
    """Delete an expert; False when there is none. Raises `RemoveRefused` while the expert is engaged
    on an open request or holds an unused, unexpired invitation link, unless `force`."""
    async with sessions() as session, session.begin():
        if await session.get(ExpertRow, expert_id, with_for_update=True) is None:
            return False
        if not force:
            requests = (
                await session.execute(
                    select(RequestRow.id)
                    .where(RequestRow.expert_id == expert_id, RequestRow.stage.in_(_OPEN_STAGES))
                    .order_by(RequestRow.id)
                )
            ).scalars()
            tokens = (
                await session.execute(
                    select(InvitationTokenRow.request_id).where(
                        InvitationTokenRow.expert_id == expert_id,
                        InvitationTokenRow.used_at.is_(None),
                        InvitationTokenRow.expires_at > datetime.now(UTC),
                    )
                )
            ).scalars()
            engaged = sorted({*requests, *tokens})
            if engaged:
                raise RemoveRefused(
                    f"{expert_id} is engaged on open request(s) {', '.join(engaged[:10])}"
                    + (f" and {len(engaged) - 10} more" if len(engaged) > 10 else "")
                    + "; use --force to remove anyway"
                )
        await session.execute(delete(ExpertRow).where(ExpertRow.id == expert_id))
        return True
