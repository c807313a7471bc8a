"""Index-backed retrieval of dedup candidates: earlier requests and catalogue activities.

Each query narrows by structure (state and submission window, or overlapping desired period) and by
the request's glossary-expanded terms together (GiST on both for requests, GIN on `search_vector`
for the catalogue), then keeps the best few by `ts_rank`; the scoring engine (taflow.dedup) judges
only what comes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    BindParameter,
    Date,
    DateTime,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    cast,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from taflow.db.models import CatalogueActivityRow, RequestRow, desired_period
from taflow.db.prepared import Prepared, StatementConnection
from taflow.domain.enums import TERMINAL_STAGES, Stage

MAX_QUERY_TERMS = 8
"""The request's rarest terms asked of the index. What a duplicate or a sister request shares is its
specific vocabulary; common words only widen the scan (16 terms: p95 41 ms at 100k stored, 8: 17 ms;
the labelled dev set scores the same with 8, 10, 12 or 16)."""
PER_QUERY_LIMIT = 20
OPEN_STAGES = [s.value for s in Stage if s not in TERMINAL_STAGES]
OPEN_PREDICATE = RequestRow.stage.in_([literal_column(f"'{s}'") for s in OPEN_STAGES])
"""Constants in the SQL (not bind parameters), so the planner can match the partial index."""


def engine_of(sessions: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine a sessionmaker is bound to (the worker and `taflow dedup-eval` hand out sessionmakers)."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        raise TypeError("the sessionmaker must be bound to an AsyncEngine")
    return bind


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


def _request_columns(source: Any = RequestRow) -> Select[*tuple[Any, ...]]:
    dedup = source.state["dedup"]
    return select(
        source.id,
        source.member_state,
        source.submitted_at,
        source.title,
        source.description,
        source.topics,
        source.modality,
        source.desired_start,
        source.desired_end,
        source.beneficiaries,
        source.stage,
        source.search_text,
        func.coalesce(source.duplicate_of, dedup["duplicate_of"].astext).label("duplicate_of"),
        func.coalesce(dedup["consolidate_with"], literal_column("'[]'::jsonb")).label("consolidate_with"),
    )


def _as_request(row: Mapping[Any, Any]) -> RequestCandidate:
    return RequestCandidate(
        id=row["id"],
        member_state=row["member_state"],
        submitted_at=row["submitted_at"],
        title=row["title"],
        description=row["description"],
        topics=list(row["topics"]),
        modality=row["modality"],
        desired_start=row["desired_start"],
        desired_end=row["desired_end"],
        beneficiaries=list(row["beneficiaries"]),
        stage=row["stage"],
        search_text=row["search_text"],
        duplicate_of=row["duplicate_of"],
        consolidate_with=list(row["consolidate_with"] or []),
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


def _ranked_requests(scope: RequestScope) -> Select[*tuple[Any, ...]]:
    """The best `:limit` requests of one window sharing a term with `:query`, then their columns.

    Built once: each check only binds values. Ranking first and reading the columns of the winners
    after keeps the large `state` document of every other match unread.
    """
    query = cast(bindparam("query", type_=String), TSQUERY)
    rank = func.ts_rank(RequestRow.search_vector, query)
    # One GiST index scan per window applies the structure (a state's last six months; open requests
    # over the period) and the text (the tsvector's signature, then `@@`) together, so only requests
    # sharing a term are read (migration 0005). A GIN on the text alone would read every request that
    # ever shared a word; a btree on the structure alone, every request of the window.
    earlier = and_(
        RequestRow.id != bindparam("request_id", type_=String),
        RequestRow.submitted_at < bindparam("submitted_at", type_=DateTime(timezone=True)),
        RequestRow.search_vector.op("@@")(query),
    )
    if scope is RequestScope.same_state:
        window = and_(
            RequestRow.member_state == bindparam("member_state", type_=String),
            RequestRow.submitted_at >= bindparam("since", type_=DateTime(timezone=True)),
        )
    else:
        window = and_(
            RequestRow.member_state != bindparam("member_state", type_=String),
            OPEN_PREDICATE,  # only open requests can be consolidated (the partial index's own predicate)
            desired_period(RequestRow.desired_start, RequestRow.desired_end).op("&&")(
                desired_period(bindparam("start", type_=Date), bindparam("end", type_=Date))
            ),
        )
    ranked = (
        select(RequestRow.id, rank.label("rank"))
        .where(earlier, window)
        .order_by(rank.desc())
        .limit(bindparam("limit", type_=Integer))
        .subquery("ranked")
    )
    return (
        _request_columns()
        .join_from(RequestRow, ranked, RequestRow.id == ranked.c.id)
        .order_by(ranked.c.rank.desc(), RequestRow.id)
    )


REQUEST_QUERIES = {scope: Prepared.of(_ranked_requests(scope)) for scope in RequestScope}


def request_query(
    need: NeedWindow,
    terms: Sequence[str],
    window_days: int,
    scope: RequestScope,
    limit: int = PER_QUERY_LIMIT,
) -> tuple[Prepared, dict[str, Any]]:
    """The statement of one window and the values a check binds to it."""
    values: dict[str, Any] = {
        "query": tsquery(terms),
        "request_id": need.request_id,
        "submitted_at": need.submitted_at,
        "member_state": need.member_state,
        "limit": limit,
    }
    if scope is RequestScope.same_state:
        values["since"] = need.submitted_at - timedelta(days=window_days)
    else:
        values |= {"start": need.desired_start, "end": need.desired_end}
    return REQUEST_QUERIES[scope], values


async def request_candidates(
    connection: StatementConnection,
    need: NeedWindow,
    terms: Sequence[str],
    window_days: int,
    scope: RequestScope,
) -> list[RequestCandidate]:
    if not tsquery(terms):
        return []  # nothing stored shares a single term with this request
    stmt, values = request_query(need, terms, window_days, scope)
    return [_as_request(row) for row in await stmt.fetch(connection, values)]


def _ids() -> BindParameter[Any]:
    return bindparam("ids", type_=ARRAY(String))


REQUESTS_BY_ID = Prepared.of(_request_columns().where(RequestRow.id == any_(_ids())))


async def requests_by_id(connection: StatementConnection, ids: Sequence[str]) -> list[RequestCandidate]:
    """Canonical targets of retrieved duplicates, so a duplicate always resolves to its original."""
    if not ids:
        return []
    return [_as_request(r) for r in await REQUESTS_BY_ID.fetch(connection, {"ids": list(ids)})]


def _activity_columns() -> Select[*tuple[Any, ...]]:
    a = CatalogueActivityRow
    return select(
        a.id, a.provider, a.title, a.description, a.topics, a.beneficiaries, a.start, a.end, a.modality,
        a.search_text,
    )  # fmt: skip


def _as_activity(row: Mapping[Any, Any]) -> ActivityCandidate:
    return ActivityCandidate(
        id=row["id"],
        provider=row["provider"],
        title=row["title"],
        description=row["description"],
        topics=list(row["topics"]),
        beneficiaries=list(row["beneficiaries"]),
        start=row["start"],
        end=row["end"],
        modality=row["modality"],
        search_text=row["search_text"],
    )


def _ranked_activities() -> Select[*tuple[Any, ...]]:
    a = CatalogueActivityRow
    query = cast(bindparam("query", type_=String), TSQUERY)
    return (
        _activity_columns()
        .where(a.search_vector.op("@@")(query))
        .where(bindparam("member_state", type_=String) == any_(a.beneficiaries))
        .where(or_(a.start.is_(None), a.start <= bindparam("end", type_=Date)))
        .where(or_(a.end.is_(None), a.end >= bindparam("start", type_=Date)))
        .order_by(func.ts_rank(a.search_vector, query).desc(), a.id)
        .limit(bindparam("limit", type_=Integer))
    )


ACTIVITY_QUERY = Prepared.of(_ranked_activities())


async def activity_candidates(
    connection: StatementConnection,
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
    values = {
        "query": tsquery(terms),
        "member_state": member_state,
        "start": desired_start,
        "end": desired_end,
        "limit": limit,
    }
    return [_as_activity(r) for r in await ACTIVITY_QUERY.fetch(connection, values)]


ACTIVITIES_BY_ID = Prepared.of(_activity_columns().where(CatalogueActivityRow.id == any_(_ids())))


async def activities_by_id(connection: StatementConnection, ids: Sequence[str]) -> list[ActivityCandidate]:
    if not ids:
        return []
    return [_as_activity(r) for r in await ACTIVITIES_BY_ID.fetch(connection, {"ids": list(ids)})]
