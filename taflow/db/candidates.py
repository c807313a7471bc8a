"""Index-backed retrieval of dedup candidates: earlier requests and catalogue activities.

Each query narrows by structure first (state and submission window, or overlapping desired period)
and by the request's glossary-expanded terms (GIN on `search_vector`), then keeps the best few by
`ts_rank`; the scoring engine (taflow.dedup) judges only what comes back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, any_, cast, func, literal, literal_column, or_, select
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import CatalogueActivityRow, RequestRow
from taflow.domain.enums import TERMINAL_STAGES, Stage

MAX_QUERY_TERMS = 16
PER_QUERY_LIMIT = 20
OPEN_STAGES = [s.value for s in Stage if s not in TERMINAL_STAGES]
OPEN_PREDICATE = RequestRow.stage.in_([literal_column(f"'{s}'") for s in OPEN_STAGES])
"""Constants in the SQL (not bind parameters), so the planner can match the partial index."""


@asynccontextmanager
async def reading(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session for a check's reads: autocommit, so no BEGIN and ROLLBACK round trips around each
    statement (each read is one statement and needs no snapshot shared with another)."""
    async with sessions() as session:
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session


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


class RequestScope(StrEnum):
    """The two structural windows a check searches (DESIGN: duplicates and consolidations)."""

    same_state = "same_state"
    """The member state's own requests of the last `window_days`, open or closed."""
    other_states = "other_states"
    """Other member states' open requests whose desired period overlaps."""


def request_query(
    need: NeedWindow,
    terms: Sequence[str],
    window_days: int,
    scope: RequestScope,
    limit: int = PER_QUERY_LIMIT,
) -> Select[*tuple[Any, ...]]:
    """The best `limit` requests of one window that share a term with the need, by `ts_rank`."""
    query = cast(literal(tsquery(terms)), TSQUERY)
    # The structural filters are the selective part (a state's last six months; open requests over the
    # period): btree and partial indexes find those rows, and the text only filters (`@@`, cheap) and
    # ranks them. Matching the text through a GIN index instead would read every request that ever
    # shared a word.
    earlier = and_(
        RequestRow.id != need.request_id,
        RequestRow.submitted_at < need.submitted_at,
        RequestRow.search_vector.op("@@")(query),
    )
    if scope is RequestScope.same_state:
        window = and_(
            RequestRow.member_state == need.member_state,
            RequestRow.submitted_at >= need.submitted_at - timedelta(days=window_days),
        )
    else:
        window = and_(
            RequestRow.member_state != need.member_state,
            OPEN_PREDICATE,  # only open requests can be consolidated (the partial index's own predicate)
            RequestRow.desired_start <= need.desired_end,
            RequestRow.desired_end >= need.desired_start,
        )
    return _request_columns().where(earlier, window).order_by(_rank(query).desc()).limit(limit)


async def request_candidates(
    session: AsyncSession, need: NeedWindow, terms: Sequence[str], window_days: int, scope: RequestScope
) -> list[RequestCandidate]:
    if not tsquery(terms):
        return []  # nothing stored shares a single term with this request
    rows = (await session.execute(request_query(need, terms, window_days, scope))).all()
    return [_as_request(row) for row in rows]


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
