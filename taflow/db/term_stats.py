"""Document frequencies for the dedup engine's IDF, maintained with every search-text change.

A change is counted only when the stored text really changes, in the caller's transaction, so a
retried projection or import never counts a document twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from taflow.db.models import DedupTermRow
from taflow.db.prepared import Prepared, StatementConnection
from taflow.dedup.engine import CorpusStats

DOCUMENTS = "#documents"


def _terms(search_text: str | None) -> set[str]:
    return set(search_text.split()) if search_text else set()


async def restate(session: AsyncSession, changes: Iterable[tuple[str | None, str | None]]) -> None:
    """Apply (old search text, new search text) pairs: None means absent (a new or removed document)."""
    delta: Counter[str] = Counter()
    for old, new in changes:
        if old == new:
            continue
        before, after = _terms(old), _terms(new)
        delta.update({t: 1 for t in after - before})
        delta.update({t: -1 for t in before - after})
        delta[DOCUMENTS] += (new is not None) - (old is not None)
    rows = [{"term": t, "df": n} for t, n in sorted(delta.items()) if n]
    if not rows:
        return
    stmt = insert(DedupTermRow).values(rows)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[DedupTermRow.term], set_={"df": DedupTermRow.df + stmt.excluded.df}
        )
    )


DOC_FREQS = Prepared.of(
    select(DedupTermRow.term, DedupTermRow.df).where(
        DedupTermRow.term == any_(bindparam("terms", type_=ARRAY(String)))
    )
)


async def corpus_stats(connection: StatementConnection, terms: Iterable[str]) -> CorpusStats:
    """The document frequencies of just the terms a check needs."""
    wanted = sorted(set(terms) | {DOCUMENTS})
    rows = await DOC_FREQS.fetch(connection, {"terms": wanted})
    df = {row["term"]: row["df"] for row in rows}
    n_docs = df.pop(DOCUMENTS, 0)
    return CorpusStats(n_docs=max(n_docs, 0), doc_freq=Counter({t: max(n, 0) for t, n in df.items()}))
