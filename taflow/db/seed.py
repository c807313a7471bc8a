"""Load the reference data file into PostgreSQL, idempotently (`taflow seed`).

The file is validated in full before anything is written; the upserts then run in one
transaction, so a bad file changes nothing and a good one can be loaded any number of times.
Rows that disappeared from the file are left alone (the catalogue also holds imported activities).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.models import (
    Base,
    CatalogueActivityRow,
    ExpertRow,
    MeetingRow,
    OrganisationRow,
    ProgrammeRow,
)
from taflow.db.term_stats import restate
from taflow.dedup.text import index_text
from taflow.reference import (
    ActivityRecord,
    ReferenceData,
    ReferenceDataError,
    expand_beneficiaries,
    load_reference,
)

__all__ = ["ReferenceDataError", "activity_row", "load_reference", "seed", "upsert"]

REFERENCE_SOURCE = "reference"
_CHUNK = 500


async def upsert(session: AsyncSession, model: type[Base], rows: Sequence[dict[str, Any]]) -> int:
    """`INSERT ... ON CONFLICT (pk) DO UPDATE` every row (a later duplicate key wins); returns the count."""
    table = model.__table__
    assert isinstance(table, Table)
    pk = [c.name for c in table.primary_key.columns]
    unique: dict[tuple[Any, ...], dict[str, Any]] = {tuple(r[k] for k in pk): r for r in rows}
    values = list(unique.values())
    if "search_text" in table.columns and len(pk) == 1:
        # dedup's term statistics follow every change of searchable text, in this transaction
        key = table.columns[pk[0]]
        ids = [v[pk[0]] for v in values]
        found = await session.execute(select(key, table.columns["search_text"]).where(key.in_(ids)))
        old: dict[Any, str] = {k: text for k, text in found.all()}
        await restate(session, [(old.get(v[pk[0]]), v.get("search_text")) for v in values])
    for i in range(0, len(values), _CHUNK):
        stmt = insert(table).values(values[i : i + _CHUNK])
        updates = {
            c.name: stmt.excluded[c.name] for c in table.columns if c.name not in pk and c.computed is None
        }
        await session.execute(stmt.on_conflict_do_update(index_elements=pk, set_=updates))
    return len(values)


def activity_row(a: ActivityRecord, *, source: str | None = None) -> dict[str, Any]:
    """A catalogue row for an activity, with `ASEAN` expanded to the eleven member states."""
    return {
        "id": a.id,
        "provider": a.provider,
        "title": a.title,
        "description": a.description,
        "topics": [t.value for t in a.topics],
        "beneficiaries": expand_beneficiaries(a.beneficiaries),
        "start": a.start,
        "end": a.end,
        "modality": a.modality.value if a.modality else None,
        "status": a.status,
        "source": source or a.source,
        "search_text": index_text(f"{a.title}\n{a.description}"),
    }


def _rows(ref: ReferenceData) -> list[tuple[type[Base], list[dict[str, Any]]]]:
    return [
        (OrganisationRow, [o.model_dump() for o in ref.organisations]),
        (
            ExpertRow,
            [
                {
                    "id": e.id,
                    "name": e.name,
                    "accreditation": e.accreditation,
                    "category": e.category,
                    "topics": [t.value for t in e.topics],
                    "languages": list(e.languages),
                    "home_administration": e.home_administration,
                    "email": e.email,
                    "unavailable": {
                        "periods": [
                            {"from": p.from_.isoformat(), "to": p.to.isoformat()} for p in e.unavailable
                        ]
                    },
                    "invitations_12m": e.invitations_12m,
                }
                for e in ref.experts
            ],
        ),
        (
            ProgrammeRow,
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "provider": p.provider,
                    "funding_partner": p.funding_partner,
                    "topics": [t.value for t in p.topics],
                    "beneficiaries": expand_beneficiaries(p.beneficiaries),
                    "description": p.description,
                }
                for p in ref.programmes
            ],
        ),
        (MeetingRow, [m.model_dump() for m in ref.meetings]),
        (CatalogueActivityRow, [activity_row(a, source=REFERENCE_SOURCE) for a in ref.catalogue]),
    ]


async def seed(sessionmaker: async_sessionmaker[AsyncSession], path: Path | None = None) -> dict[str, int]:
    """Validate the reference file (packaged one by default) and upsert it; returns rows per table.

    Raises `ReferenceDataError` (nothing written) when the file is unreadable or invalid.
    """
    ref = load_reference(path)
    counts: dict[str, int] = {}
    async with sessionmaker() as session, session.begin():
        for model, rows in _rows(ref):
            counts[model.__tablename__] = await upsert(session, model, rows)
    return counts
