"""The dedup check's reads by id (taflow.db.candidates): prepared statements on a bare pooled
connection give the same candidates SQLAlchemy's own execution gave, JSON and arrays decoded."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from sqlalchemy import delete, insert
from sqlalchemy.ext.asyncio import AsyncEngine

from taflow.db.candidates import activities_by_id, requests_by_id
from taflow.db.models import CatalogueActivityRow, RequestRow
from taflow.db.prepared import pooled


async def test_requests_and_activities_by_id(engine: AsyncEngine) -> None:
    tag = uuid.uuid4().hex[:8]
    folded, canonical, activity = f"TA-F-{tag}", f"TA-C-{tag}", f"ACT-{tag}"
    now = datetime.now(UTC)
    common = {
        "member_state": "KH",
        "description": "Post-clearance audit for express consignments.",
        "topics": ["post_clearance_audit"],
        "modality": "workshop",
        "desired_start": date(2031, 3, 1),
        "desired_end": date(2031, 3, 5),
        "beneficiaries": ["KH"],
        "search_text": "audit express",
        "version": 1,
        "submitted_at": now,
        "updated_at": now,
    }
    async with engine.begin() as connection:
        await connection.execute(
            insert(RequestRow),
            [
                common | {"id": canonical, "title": "PCA workshop", "stage": "scheduled", "state": {}},
                common
                | {
                    "id": folded,
                    "title": "PCA workshop again",
                    "stage": "duplicate",
                    "state": {"dedup": {"duplicate_of": canonical, "consolidate_with": [canonical]}},
                },
            ],
        )
        await connection.execute(
            insert(CatalogueActivityRow).values(
                id=activity,
                provider="WCO",
                title="Regional PCA course",
                topics=["post_clearance_audit"],
                beneficiaries=["KH", "LA"],
                start=date(2031, 3, 2),
                end=None,
                modality="workshop",
                search_text="audit course",
            )
        )
    try:
        async with pooled(engine) as connection:
            requests = {r.id: r for r in await requests_by_id(connection, [folded, canonical, "TA-NONE"])}
            activities = await activities_by_id(connection, [activity, "ACT-NONE"])
            assert await requests_by_id(connection, []) == []
        assert set(requests) == {folded, canonical}
        assert requests[folded].duplicate_of == canonical  # from the JSON state when the column is empty
        assert requests[folded].consolidate_with == [canonical]
        assert requests[canonical].duplicate_of is None and requests[canonical].consolidate_with == []
        assert requests[canonical].topics == ["post_clearance_audit"]
        assert requests[canonical].desired_start == date(2031, 3, 1)
        [found] = activities
        assert (found.id, found.provider, found.end) == (activity, "WCO", None)
        assert found.beneficiaries == ["KH", "LA"]
    finally:
        async with engine.begin() as connection:
            await connection.execute(delete(RequestRow).where(RequestRow.id.in_([folded, canonical])))
            await connection.execute(delete(CatalogueActivityRow).where(CatalogueActivityRow.id == activity))
