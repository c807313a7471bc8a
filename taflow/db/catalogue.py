"""The catalogue importer (`taflow catalogue import FILE`): our JSONL format or IATI activity XML.

Third-party input is never trusted: every activity either imports whole or is refused with a
one-line reason, and a file that is not usable at all gives one refusal for the whole file, never
a traceback. XML goes through the stdlib parser only after a pre-pass has refused any DOCTYPE or
ENTITY declaration (no entity expansion, no external entities). Imports are upserts on the
activity id (the IATI identifier), all in one transaction.
"""

from __future__ import annotations

import asyncio
import json
import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import CatalogueActivityRow
from taflow.db.seed import activity_row, upsert
from taflow.domain.enums import MemberState, Modality, Topic
from taflow.reference import ActivityRecord

__all__ = [
    "MAX_FILE_BYTES",
    "ImportReport",
    "Refusal",
    "import_catalogue",
    "parse_catalogue",
    "parse_iati",
    "parse_jsonl",
]

MAX_FILE_BYTES = 50 * 1024 * 1024
FILE_REF = "(file)"
IATI_SOURCE = "iati"
JSONL_SOURCE = "taflow"
TRADE_FACILITATION = "33120"
"""OECD DAC 5-digit sector code for trade facilitation."""

FileFormat = Literal["iati", "jsonl", "json", "unknown"]


class Refusal(BaseModel):
    """One thing that was not imported: an activity (by id, line or position) or the whole file."""

    ref: str
    reason: str


class ImportReport(BaseModel):
    format: FileFormat
    imported: list[str] = []
    refused: list[Refusal] = []


class _Refused(Exception):
    """An activity (or file) that cannot be used; the message is the one-line reason."""


# --------------------------------------------------------------------------------------------- IATI

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_ASEAN = frozenset(m.value for m in MemberState)
_STATUS = {
    "1": "pipeline",
    "2": "implementation",
    "3": "finalisation",
    "4": "closed",
    "5": "cancelled",
    "6": "suspended",
}
# activity-date/@type: 2.0x codes, then the version-1 names (1.0x used start/end/completion).
_START_PLANNED = {"1", "start-planned", "start"}
_START_ACTUAL = {"2", "start-actual"}
_END_PLANNED = {"3", "end-planned", "end", "completion"}
_END_ACTUAL = {"4", "end-actual"}
_DATE = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})(?:T[0-9:.]+)?(?:Z|[+-]\d{2}:\d{2})?\s*$")
_DAC5 = {None, "", "1", "DAC"}

_TOPIC_KEYWORDS: list[tuple[Topic, str]] = [
    (Topic.risk_management, r"risk[- ](management|profil|assessment|based|targeting)|selectivity"),
    (Topic.post_clearance_audit, r"post[- ]clearance audit|\bPCA\b"),
    (Topic.aeo_mra, r"authori[sz]ed economic operator|\bAEOs?\b|mutual recognition"),
    (Topic.ipr_enforcement, r"intellectual property|\bIPR\b|counterfeit"),
    (Topic.e_commerce, r"e-?commerce|low[- ]value (consignment|shipment)|postal"),
    (Topic.green_customs, r"green customs|circular economy|climate|environmental goods"),
    (
        Topic.environmental_crime,
        r"environmental crime|ozone[- ]depleting|\bODS\b|hazardous waste|basel convention"
        r"|plastic waste|\bwaste\b",
    ),
    (
        Topic.digitalization,
        r"digitali[sz]|paperless|electronic (customs|declaration|payment)|automat(ion|ed)",
    ),
    (Topic.asean_single_window, r"single window|\bASW\b"),
    (Topic.smart_customs_ai, r"artificial intelligence|machine learning|smart customs|\bAI\b"),
    (Topic.data_analytics, r"data analytic|big data|data science|analytics"),
    (Topic.illicit_trade, r"illicit trade|smuggl|contraband"),
    (Topic.drug_trafficking, r"\bdrugs?\b|narcotic"),
    (Topic.precursors, r"precursor"),
    (Topic.wildlife_trafficking, r"wildlife|\bCITES\b|ivory|pangolin|timber trafficking"),
    (Topic.hs_classification, r"harmoni[sz]ed system|tariff classification|\bHS\b|nomenclature"),
    (Topic.customs_valuation, r"valuation"),
    (Topic.rules_of_origin, r"rules? of origin|certificates? of origin|preferential origin"),
    (Topic.time_release_study, r"time release stud|\bTRS\b"),
    (Topic.coordinated_border_management, r"coordinated border|border agenc|one[- ]stop border"),
    (Topic.revised_kyoto_convention, r"kyoto convention|\bRKC\b"),
    (Topic.wto_tfa, r"trade facilitation agreement|\bWTO\b|\bTFA\b"),
    (Topic.integrity, r"integrity|corruption"),
    (Topic.strategic_trade_controls, r"strategic trade|dual[- ]use|export control"),
    (Topic.passenger_risk, r"passenger|\bPNR\b|\bAPI\b"),
    (Topic.nii_scanners, r"non[- ]intrusive|scanner|\bNII\b|x-ray"),
    (Topic.timor_leste_accession, r"timor[- ]leste.{0,80}accession|accession.{0,80}timor[- ]leste"),
    (Topic.transit, r"\btransit\b"),
]
_TOPIC_RES = [(t, re.compile(p, re.IGNORECASE | re.DOTALL)) for t, p in _TOPIC_KEYWORDS]
_MODALITY_RES = [
    (Modality.webinar, re.compile(r"webinar|online seminar", re.I)),
    (Modality.study_visit, re.compile(r"study (visit|tour)", re.I)),
    (Modality.diagnostic_mission, re.compile(r"diagnostic|needs assessment|gap analysis", re.I)),
    (Modality.workshop, re.compile(r"workshop|seminar", re.I)),
    (Modality.training, re.compile(r"training|course", re.I)),
    (
        Modality.expert_mission,
        re.compile(r"expert mission|advisory mission|technical assistance mission", re.I),
    ),
]


class _Stop(Exception):
    pass


def _guard_xml(data: bytes) -> None:
    """Refuse DTDs before the real parse: no internal subset means no entity to expand."""

    def doctype(*_: object) -> None:
        raise _Refused("DOCTYPE declarations are not accepted (possible entity expansion attack)")

    def entity(*_: object) -> None:
        raise _Refused("ENTITY declarations are not accepted (possible entity expansion attack)")

    def root(*_: object) -> None:
        raise _Stop  # a DOCTYPE can only come before the root element

    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = entity
    parser.UnparsedEntityDeclHandler = entity
    parser.StartElementHandler = root
    try:
        parser.Parse(data, True)
    except _Stop:
        return
    except xml.parsers.expat.ExpatError as e:
        raise _Refused(
            f"not well-formed XML: {xml.parsers.expat.errors.messages.get(e.code, str(e))}"
            f" (line {e.lineno}, column {e.offset})"
        ) from None
    raise _Refused("not XML: no root element")


def _local(tag: object) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _text(el: ET.Element) -> str:
    return _clean("".join(el.itertext()))


def _texts(elements: Iterable[ET.Element], default_lang: str | None) -> list[tuple[str | None, str]]:
    """(language, text) of each element: its narratives (2.0x) or its own text (1.0x)."""
    out: list[tuple[str | None, str]] = []
    for el in elements:
        lang = el.get(_XML_LANG) or default_lang
        narratives = el.findall("narrative")
        if narratives:
            out.extend((n.get(_XML_LANG) or lang, _text(n)) for n in narratives)
        else:
            out.append((lang, _text(el)))
    return [(lang.lower() if lang else None, t) for lang, t in out if t]


def _pick(texts: list[tuple[str | None, str]]) -> str:
    """The English text if there is one, else the first."""
    for lang, text in texts:
        if lang is None or lang.startswith("en"):
            return text
    return texts[0][1] if texts else ""


def _parse_date(raw: str, what: str) -> date:
    m = _DATE.match(raw)
    if m:
        try:
            return date.fromisoformat(m.group(1))
        except ValueError:
            pass
    shown = raw.strip()[:40] or "(empty)"
    raise _Refused(f"unparseable {what} date {shown!r} (expected YYYY-MM-DD)")


def _dates(activity: ET.Element) -> tuple[date | None, date | None]:
    found: dict[str, date] = {}
    for el in activity.findall("activity-date"):
        kind = (el.get("type") or "").strip().lower()
        for name, codes in (
            ("start-planned", _START_PLANNED),
            ("start-actual", _START_ACTUAL),
            ("end-planned", _END_PLANNED),
            ("end-actual", _END_ACTUAL),
        ):
            if kind in codes and name not in found:
                raw = el.get("iso-date")
                found[name] = _parse_date(
                    raw if raw is not None else (el.text or ""), f"activity-date {name}"
                )
    start = found.get("start-actual") or found.get("start-planned")
    end = found.get("end-actual") or found.get("end-planned")
    if start and end and end < start:
        raise _Refused(f"end date {end} is before start date {start}")
    return start, end


def _countries(activity: ET.Element) -> tuple[list[str], list[str]]:
    """(ASEAN member states, all country codes) from recipient-country, else from transactions."""
    codes = [(el.get("code") or "").strip().upper() for el in activity.findall("recipient-country")]
    if not any(codes):
        codes = [
            (el.get("code") or "").strip().upper() for el in activity.findall("transaction/recipient-country")
        ]
    codes = [c for c in codes if c]
    asean: list[str] = []
    for c in codes:
        if c in _ASEAN and c not in asean:
            asean.append(c)
    return asean, codes


def _sectors(activity: ET.Element) -> set[str]:
    elements = activity.findall("sector") or activity.findall("transaction/sector")
    return {(el.get("code") or "").strip() for el in elements if el.get("vocabulary") in _DAC5}


def _topics(text: str, sectors: set[str]) -> list[Topic]:
    topics = [t for t, rx in _TOPIC_RES if rx.search(text)]
    if not topics and TRADE_FACILITATION in sectors:
        topics = [Topic.wto_tfa]
    return topics


def _modality(title: str) -> Modality | None:
    return next((m for m, rx in _MODALITY_RES if rx.search(title)), None)


def _provider(activity: ET.Element, default_lang: str | None) -> str:
    """The reporting-org's name (else its ref); version-1 files without one: the funding participating-org."""
    candidates = activity.findall("reporting-org")[:1] + [
        el
        for el in activity.findall("participating-org")
        if (el.get("role") or "").lower() in ("1", "funding")
    ]
    for el in candidates:
        name = _pick(_texts([el], default_lang)) or (el.get("ref") or "").strip()
        if name:
            return name
    return ""


def _activity(activity: ET.Element, default_lang: str | None) -> ActivityRecord:
    default_lang = activity.get(_XML_LANG) or default_lang
    ids = [_text(el) for el in activity.findall("iati-identifier")]
    ids = [i for i in ids if i]
    if not ids:
        raise _Refused("missing iati-identifier")
    identifier = ids[0]
    if len(set(ids)) > 1:
        raise _Refused(f"more than one iati-identifier ({', '.join(ids[:3])})")
    if len(identifier) > 200:
        raise _Refused("iati-identifier longer than 200 characters")
    title = _pick(_texts(activity.findall("title"), default_lang))
    if not title:
        raise _Refused("no title")
    descriptions = activity.findall("description")
    general = [d for d in descriptions if d.get("type") in (None, "", "1", "general")] or descriptions
    description = _pick(_texts(general, default_lang))
    asean, codes = _countries(activity)
    if not codes:
        has_region = activity.find("recipient-region") is not None
        raise _Refused(
            "no recipient-country (a recipient-region alone is not enough)"
            if has_region
            else "no recipient-country"
        )
    if not asean:
        shown = ", ".join(sorted(set(codes))[:8])
        raise _Refused(f"no ASEAN member state among recipient countries ({shown})")
    provider = _provider(activity, default_lang)
    if not provider:
        raise _Refused("no reporting-org (nor a funding participating-org) to name the provider")
    start, end = _dates(activity)
    status_el = activity.find("activity-status")
    status = _STATUS.get((status_el.get("code") or "").strip()) if status_el is not None else None
    try:
        return ActivityRecord(
            id=identifier,
            provider=provider[:200],
            title=title,
            description=description,
            topics=_topics(f"{title}\n{description}", _sectors(activity)),
            beneficiaries=asean,
            start=start,
            end=end,
            modality=_modality(title) or _modality(description),
            status=status,
            source=IATI_SOURCE,
        )
    except ValidationError as e:
        raise _Refused(_first_errors(e)) from None


def parse_iati(xml_bytes: bytes) -> tuple[list[ActivityRecord], list[Refusal]]:
    """Parse an IATI activity document (2.0x, or 1.0x including a bare `iati-activity` root).

    Never raises for bad input: whatever cannot be used comes back as a `Refusal` with a reason.
    """
    if not xml_bytes.strip():
        return [], [Refusal(ref=FILE_REF, reason="empty file")]
    if len(xml_bytes) > MAX_FILE_BYTES:
        return [], [Refusal(ref=FILE_REF, reason=f"file larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")]
    try:
        _guard_xml(xml_bytes)
        root = ET.fromstring(xml_bytes)
    except _Refused as e:
        return [], [Refusal(ref=FILE_REF, reason=str(e))]
    except (ET.ParseError, ValueError, LookupError) as e:
        return [], [Refusal(ref=FILE_REF, reason=f"not well-formed XML: {e}")]
    except Exception as e:  # e.g. RecursionError on absurd nesting: still a reason, never a traceback
        return [], [Refusal(ref=FILE_REF, reason=f"unreadable XML ({type(e).__name__})")]
    name = _local(root.tag)
    if name == "iati-activities":
        activities = [el for el in root if el.tag == "iati-activity"]
        if not activities:
            return [], [Refusal(ref=FILE_REF, reason="iati-activities holds no iati-activity element")]
    elif name == "iati-activity":
        activities = [root]  # a version-1 single-activity document
    else:
        return [], [
            Refusal(
                ref=FILE_REF,
                reason=f"not an IATI activity file: root element is <{name}>, "
                "expected <iati-activities> or <iati-activity>",
            )
        ]
    default_lang = root.get(_XML_LANG)
    records: list[ActivityRecord] = []
    refusals: list[Refusal] = []
    for n, el in enumerate(activities, start=1):
        ident = next((t for t in (_text(i) for i in el.findall("iati-identifier")) if t), "")
        ref = ident[:200] if ident else f"activity #{n}"
        try:
            records.append(_activity(el, default_lang))
        except _Refused as e:
            refusals.append(Refusal(ref=ref, reason=str(e)))
        except Exception as e:  # third-party input must never end in a traceback
            refusals.append(Refusal(ref=ref, reason=f"unusable activity ({type(e).__name__}: {e})"[:300]))
    return records, refusals


# -------------------------------------------------------------------------------------------- JSONL


def _first_errors(e: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in e.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    more = f" (+{e.error_count() - limit} more)" if e.error_count() > limit else ""
    return "; ".join(parts) + more


def _record(obj: Any, where: str) -> ActivityRecord:
    if not isinstance(obj, dict):
        raise _Refused(f"{where}: not a JSON object")
    try:
        return ActivityRecord.model_validate({**obj, "source": JSONL_SOURCE})
    except ValidationError as e:
        raise _Refused(f"{where}: {_first_errors(e)}") from None


def _ref(obj: Any, where: str) -> str:
    ident = obj.get("id") if isinstance(obj, dict) else None
    ok = isinstance(ident, str) and ident.strip() and "\x00" not in ident
    return ident.strip()[:200] if ok and isinstance(ident, str) else where


def parse_jsonl(data: bytes) -> tuple[list[ActivityRecord], list[Refusal]]:
    """One activity per line in our catalogue format; bad lines are refused with their line number."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [], [Refusal(ref=FILE_REF, reason=f"not UTF-8 text: {e.reason} at byte {e.start}")]
    records: list[ActivityRecord] = []
    refusals: list[Refusal] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            refusals.append(Refusal(ref=where, reason=f"{where}: invalid JSON: {msg}"))
            continue
        try:
            records.append(_record(obj, where))
        except _Refused as e:
            refusals.append(Refusal(ref=_ref(obj, where), reason=str(e)))
    if not records and not refusals:
        refusals.append(Refusal(ref=FILE_REF, reason="no activities in file"))
    return records, refusals


def _parse_json_array(data: bytes) -> tuple[list[ActivityRecord], list[Refusal]]:
    try:
        items = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        return [], [Refusal(ref=FILE_REF, reason=f"invalid JSON: {getattr(e, 'msg', type(e).__name__)}")]
    if not isinstance(items, list):
        return [], [Refusal(ref=FILE_REF, reason="a JSON file must hold an array of activities")]
    records: list[ActivityRecord] = []
    refusals: list[Refusal] = []
    for n, obj in enumerate(items, start=1):
        where = f"item {n}"
        try:
            records.append(_record(obj, where))
        except _Refused as e:
            refusals.append(Refusal(ref=_ref(obj, where), reason=str(e)))
    return records, refusals


# ------------------------------------------------------------------------------------------- import


def _sniff(data: bytes, name: str) -> FileFormat:
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "iati"
    if head == b"{":
        return "jsonl"
    if head == b"[":
        return "json"
    suffixes: dict[str, FileFormat] = {".xml": "iati", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
    return suffixes.get(Path(name).suffix.lower(), "unknown")


def parse_catalogue(data: bytes, name: str = "") -> tuple[FileFormat, list[ActivityRecord], list[Refusal]]:
    """Dispatch on the content (then the file name): IATI XML, JSONL, or a JSON array of activities."""
    fmt = _sniff(data, name)
    if fmt == "iati":
        return (fmt, *parse_iati(data))
    if fmt == "jsonl":
        return (fmt, *parse_jsonl(data))
    if fmt == "json":
        return (fmt, *_parse_json_array(data))
    reason = (
        "empty file" if not data.strip() else "unrecognised format: expected IATI XML or JSONL activities"
    )
    return fmt, [], [Refusal(ref=FILE_REF, reason=reason)]


async def import_catalogue(sessionmaker: async_sessionmaker[AsyncSession], path: Path) -> ImportReport:
    """Import a catalogue file; upserts on the activity id in one transaction. Bad input is reported."""
    try:
        size = (await asyncio.to_thread(path.stat)).st_size
        if size > MAX_FILE_BYTES:
            return ImportReport(
                format="unknown",
                refused=[
                    Refusal(ref=FILE_REF, reason=f"file larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
                ],
            )
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as e:
        return ImportReport(
            format="unknown", refused=[Refusal(ref=FILE_REF, reason=f"cannot read {path}: {e.strerror or e}")]
        )
    fmt, records, refusals = await asyncio.to_thread(parse_catalogue, data, path.name)
    rows = [activity_row(r) for r in records]
    if rows:
        async with sessionmaker() as session, session.begin():
            await upsert(session, CatalogueActivityRow, rows)
    imported = list(dict.fromkeys(r.id for r in records))
    return ImportReport(format=fmt, imported=imported, refused=refusals)
