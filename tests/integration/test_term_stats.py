"""Dedup term counts (taflow.db.term_stats) follow every change of search text, against real PostgreSQL."""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from taflow.db.term_stats import DOCUMENTS, restate

SM = async_sessionmaker[AsyncSession]


async def counts(sessionmaker: SM, terms: list[str]) -> dict[str, int]:
    async with sessionmaker() as s:
        rows = await s.execute(
            text("SELECT term, df FROM dedup_terms WHERE term = ANY(:terms)"), {"terms": terms}
        )
        return {term: df for term, df in rows.all()}


async def test_counts_rise_fall_and_ignore_unchanged_text(sessionmaker: SM) -> None:
    tag = uuid.uuid4().hex[:8]
    risk, border, ports, audit = (f"{w}{tag}" for w in ("risk", "border", "ports", "audit"))
    mine = [risk, border, ports, audit]
    documents = (await counts(sessionmaker, [DOCUMENTS])).get(DOCUMENTS, 0)

    async with sessionmaker.begin() as s:  # two new documents
        await restate(s, [(None, f"{risk} {border}"), (None, f"{risk} {ports} {ports}")])
    assert await counts(sessionmaker, mine) == {risk: 2, border: 1, ports: 1}

    async with sessionmaker.begin() as s:  # one amended, one removed, one unchanged
        await restate(
            s, [(f"{risk} {border}", f"{border} {audit}"), (f"{risk} {ports}", None), (audit, audit)]
        )
    assert await counts(sessionmaker, mine) == {risk: 0, border: 1, ports: 0, audit: 1}
    assert (await counts(sessionmaker, [DOCUMENTS]))[DOCUMENTS] == documents + 1

    async with sessionmaker.begin() as s:  # nothing changed: no statement, nothing counted
        await restate(s, [(border, border), (None, None)])
    assert await counts(sessionmaker, mine) == {risk: 0, border: 1, ports: 0, audit: 1}
