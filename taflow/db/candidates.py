"""Index-backed retrieval of dedup candidates: earlier requests and catalogue activities.

Each query narrows by structure first (state and submission window, or overlapping desired period)
and by the request's glossary-expanded terms (GIN on `search_vector`), then keeps the best few by
`ts_rank`; the scoring engine (taflow.dedup) judges only what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, any_, cast, func, literal, literal_column, or_, select
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import CatalogueActivityRow, RequestRow
from taflow.domain.enums import TERMINAL_STAGES, Stage

MAX_QUERY_TERMS = 16
PER_QUERY_LIMIT = 20
OPEN_STAGES = [s.value for s in Stage if s not in TERMINAL_STAGES]
OPEN_PREDICATE = RequestRow.stage.in_([literal_column(f"'{s}'") for s in OPEN_STAGES])
"""Constants in the SQL (not bind parameters), so the planner can match the partial index."""


@dataclass(frozen=True)
class RequestCandidate:
    id: str
    member_state: str
    submitted_at: datetime
    title: str
    description: str
    topics: list[str]
    modality: str
    desired_start: date
    desired_end: date
    beneficiaries: list[str]
    stage: str
    duplicate_of: str | None
    consolidate_with: list[str] = field(default_factory=list)
    search_text: str = ""

    @property
    def closed(self) -> bool:
        return Stage(self.stage) in TERMINAL_STAGES


@dataclass(frozen=True)
class ActivityCandidate:
    id: str
    provider: str
    title: str
    description: str
    topics: list[str]
    beneficiaries: list[str]
    start: date | None
    end: date | None
    modality: str | None
    search_text: str = ""


def tsquery(terms: Sequence[str]) -> str:
    """An OR of the request's most telling terms (the caller orders them rarest first), each a quoted
    lexeme (concepts keep their `@`)."""
    unique = list(dict.fromkeys(t for t in terms if t))[:MAX_QUERY_TERMS]
    return " | ".join("'" + t.replace("'", "''").replace("\\", "") + "'" for t in unique)


def _rank(query: Any) -> ColumnElement[float]:
    return func.ts_rank(RequestRow.search_vector, query)


def _request_columns() -> Select[*tuple[Any, ...]]:
    dedup = RequestRow.state["dedup"]
    return select(
        RequestRow.id,
        RequestRow.member_state,
        RequestRow.submitted_at,
        RequestRow.title,
        RequestRow.description,
        RequestRow.topics,
        RequestRow.modality,
        RequestRow.desired_start,
        RequestRow.desired_end,
        RequestRow.beneficiaries,
        RequestRow.stage,
        RequestRow.search_text,
        func.coalesce(RequestRow.duplicate_of, dedup["duplicate_of"].astext).label("duplicate_of"),
        func.coalesce(dedup["consolidate_with"], literal_column("'[]'::jsonb")).label("consolidate_with"),
    )


def _as_request(row: Any) -> RequestCandidate:
    return RequestCandidate(
        id=row.id,
        member_state=row.member_state,
        submitted_at=row.submitted_at,
        title=row.title,
        description=row.description,
        topics=list(row.topics),
        modality=row.modality,
        desired_start=row.desired_start,
        desired_end=row.desired_end,
        beneficiaries=list(row.beneficiaries),
        stage=row.stage,
        search_text=row.search_text,
        duplicate_of=row.duplicate_of,
        consolidate_with=list(row.consolidate_with or []),
    )


@dataclass(frozen=True)
class NeedWindow:
    """What retrieval needs to know of the request being checked."""

    request_id: str
    member_state: str
    desired_start: date
    desired_end: date
    submitted_at: datetime


def request_queries(
    need: NeedWindow, terms: Sequence[str], window_days: int, limit: int = PER_QUERY_LIMIT
) -> list[Select[*tuple[Any, ...]]]:
    """Same-state requests of the last `window_days`; other states' open requests overlapping the period."""
    query = cast(literal(tsquery(terms)), TSQUERY)
    # The structural filters are the selective part (a state's last six months; open requests over the
    # period): btree and partial indexes find those rows, and the text only ranks them. Matching the
    # text through a GIN index instead would read every request that ever shared a word.
    matches = _rank(query) > 0
    earlier = and_(RequestRow.id != need.request_id, RequestRow.submitted_at < need.submitted_at, matches)
    same_state = and_(
        RequestRow.member_state == need.member_state,
        RequestRow.submitted_at >= need.submitted_at - timedelta(days=window_days),
    )
    other_state = and_(
        RequestRow.member_state != need.member_state,
        OPEN_PREDICATE,  # only open requests can be consolidated (the partial index's own predicate)
        RequestRow.desired_start <= need.desired_end,
        RequestRow.desired_end >= need.desired_start,
    )
    return [
        _request_columns().where(earlier, scope).order_by(_rank(query).desc()).limit(limit)
        for scope in (same_state, other_state)
    ]


async def request_candidates(
    session: AsyncSession, need: NeedWindow, terms: Sequence[str], window_days: int
) -> list[RequestCandidate]:
    found: dict[str, RequestCandidate] = {}
    if not tsquery(terms):
        return []  # nothing stored shares a single term with this request
    for stmt in request_queries(need, terms, window_days):
        for row in (await session.execute(stmt)).all():
            found.setdefault(row.id, _as_request(row))
    return list(found.values())


async def requests_by_id(session: AsyncSession, ids: Sequence[str]) -> list[RequestCandidate]:
    """Canonical targets of retrieved duplicates, so a duplicate always resolves to its original."""
    if not ids:
        return []
    rows = (await session.execute(_request_columns().where(RequestRow.id.in_(list(ids))))).all()
    return [_as_request(r) for r in rows]


def _activity_columns() -> Select[*tuple[Any, ...]]:
    a = CatalogueActivityRow
    return select(
        a.id, a.provider, a.title, a.description, a.topics, a.beneficiaries, a.start, a.end, a.modality,
        a.search_text,
    )  # fmt: skip


def _as_activity(row: Any) -> ActivityCandidate:
    return ActivityCandidate(
        id=row.id,
        provider=row.provider,
        title=row.title,
        description=row.description,
        topics=list(row.topics),
        beneficiaries=list(row.beneficiaries),
        start=row.start,
        end=row.end,
        modality=row.modality,
        search_text=row.search_text,
    )


async def activity_candidates(
    session: AsyncSession,
    *,
    member_state: str,
    terms: Sequence[str],
    desired_start: date,
    desired_end: date,
    limit: int = PER_QUERY_LIMIT,
) -> list[ActivityCandidate]:
    """Activities listing this member state and overlapping the desired period (the engine applies the
    finer rules, e.g. not ended before submission)."""
    if not tsquery(terms):
        return []
    a = CatalogueActivityRow
    query = cast(literal(tsquery(terms)), TSQUERY)
    stmt = (
        _activity_columns()
        .where(a.search_vector.op("@@")(query))
        .where(literal(member_state) == any_(a.beneficiaries))
        .where(or_(a.start.is_(None), a.start <= desired_end))
        .where(or_(a.end.is_(None), a.end >= desired_start))
        .order_by(func.ts_rank(a.search_vector, query).desc())
        .limit(limit)
    )
    return [_as_activity(r) for r in (await session.execute(stmt)).all()]


async def activities_by_id(session: AsyncSession, ids: Sequence[str]) -> list[ActivityCandidate]:
    if not ids:
        return []
    stmt = _activity_columns().where(CatalogueActivityRow.id.in_(list(ids)))
    return [_as_activity(r) for r in (await session.execute(stmt)).all()]
