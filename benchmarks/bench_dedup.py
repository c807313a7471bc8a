"""Dedup check latency with 10k, 100k and 1M stored requests (issue 3), and the query plans.

Runs `run_dedup_check` (exactly what the workflow's activity runs) against a fresh embedded
PostgreSQL filled by COPY with synthetic requests whose texts come from the labelled dev set,
reshuffled across member states, years and stages. `python -m benchmarks.bench_dedup`;
BENCH_DEDUP_SIZES=10000,100000 limits the sizes (default 10k, 100k, 1M).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import text

from benchmarks.support import copy_requests
from taflow.activities.dedup import run_dedup_check
from taflow.db.migrate import upgrade
from taflow.db.scratch import scratch_database
from taflow.db.session import libpq_url, make_engine, make_sessionmaker
from taflow.db.term_stats import DOCUMENTS
from taflow.dedup.text import index_text
from taflow.domain.enums import MemberState, Modality, Stage
from taflow.domain.models import DedupCheckInput, RequestDraft

DEV = Path(__file__).resolve().parents[2] / "shared" / "reference" / "dedup" / "requests_dev.jsonl"
SIZES = [int(s) for s in os.environ.get("BENCH_DEDUP_SIZES", "10000,100000,1000000").split(",")]
CHECKS = int(os.environ.get("BENCH_DEDUP_CHECKS", "200"))
SEED = 7
STATES = [m.value for m in MemberState]
OPEN = [Stage.asec_review, Stage.rocb_matching, Stage.changes_requested, Stage.scheduled]
CLOSED = [Stage.completed, Stage.rejected, Stage.withdrawn, Stage.duplicate]
HEADER = "| stored requests | checks | median ms | p95 ms |\n|---:|---:|---:|---:|"
COLUMNS = [
    "id", "member_state", "title", "description", "topics", "modality", "desired_start", "desired_end",
    "beneficiaries", "stage", "escalated", "search_text", "state", "version", "submitted_at", "updated_at",
]  # fmt: skip
NOW = datetime(2026, 11, 1, tzinfo=UTC)
PER_YEAR = 25_000


def templates() -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    for r in rows:
        r["search_text"] = index_text(f"{r['title']}\n{r['description']}")
    return rows


def synthetic(rng: random.Random, base: list[dict[str, Any]], start: int, n: int) -> list[tuple[Any, ...]]:
    """History grows backwards from NOW at a constant 25,000 requests a year (ten times ASEAN's real
    volume): 10k is five months, 1M forty years. Requests of the last year may be open; older are closed."""
    out = []
    for i in range(start, start + n):
        t = rng.choice(base)
        submitted = NOW - timedelta(days=(i + rng.random()) * 365 / PER_YEAR)
        begin = submitted.date() + timedelta(days=rng.randint(30, 200))
        recent = NOW - submitted < timedelta(days=365)
        stage = rng.choice(OPEN) if recent and rng.random() < 0.5 else rng.choice(CLOSED)
        state = rng.choice(STATES)
        modality = Modality.parse(t["modality"]).value
        out.append(
            (
                f"BN-{i:07d}", state, t["title"], t["description"], t["topics"], modality,
                begin, begin + timedelta(days=rng.randint(5, 120)), [state], stage.value, False,
                t["search_text"], "{}", 1, submitted, submitted,
            )
        )  # fmt: skip
    return out


async def load(url: str, rows: list[tuple[Any, ...]]) -> None:
    conn = await asyncpg.connect(libpq_url(url))
    try:
        await copy_requests(conn, rows, COLUMNS)
    finally:
        await conn.close()


async def restate_term_stats(url: str) -> None:
    """Document frequencies as the projection would have kept them (computed in one pass here)."""
    engine = make_engine(url, pool_size=1)
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE dedup_terms"))
        await conn.execute(
            text(
                "INSERT INTO dedup_terms(term, df) "
                "SELECT word, ndoc FROM ts_stat('SELECT search_vector FROM requests')"
            )
        )
        await conn.execute(
            text("INSERT INTO dedup_terms(term, df) SELECT :d, count(*) FROM requests"), {"d": DOCUMENTS}
        )
        await conn.execute(text("ANALYZE requests"))
        await conn.execute(text("ANALYZE dedup_terms"))
    await engine.dispose()


def checks(rng: random.Random, base: list[dict[str, Any]], n: int) -> list[DedupCheckInput]:
    """New requests arriving now, at the end of the stored history."""
    out = []
    for i in range(n):
        t = rng.choice(base)
        submitted = NOW + timedelta(hours=rng.uniform(0, 24))
        begin = submitted.date() + timedelta(days=rng.randint(30, 200))
        draft = RequestDraft(
            title=t["title"][:200],
            description=t["description"][:5000],
            topics=t["topics"],
            modality=Modality.parse(t["modality"]),
            desired_start=begin,
            desired_end=begin + timedelta(days=rng.randint(5, 120)),
        )
        out.append(
            DedupCheckInput(
                request_id=f"CHECK-{i}", member_state=rng.choice(STATES), draft=draft, submitted_at=submitted
            )
        )
    return out


async def measure(url: str, inputs: list[DedupCheckInput]) -> list[float]:
    engine = make_engine(url, pool_size=4, pre_ping=False)  # as the worker's; three retrievals at once
    samples = []
    try:
        for inp in inputs[:10]:  # warm caches and the engine's analysers
            await run_dedup_check(engine, inp, 183)
        for inp in inputs:
            began = time.perf_counter()
            await run_dedup_check(engine, inp, 183)
            samples.append((time.perf_counter() - began) * 1000)
    finally:
        await engine.dispose()
    return samples


async def plans(url: str, inp: DedupCheckInput) -> str:
    """EXPLAIN ANALYZE of the retrieval statements exactly as the activity builds them for one check."""
    from taflow.db.candidates import NeedWindow, RequestScope, request_query
    from taflow.db.prepared import Prepared
    from taflow.db.term_stats import corpus_stats
    from taflow.dedup.text import analyze

    own = analyze(f"{inp.draft.title}\n{inp.draft.description}")
    engine = make_engine(url, pool_size=1)
    out = []
    async with make_sessionmaker(engine)() as session:
        df = (await corpus_stats(await session.connection(), own)).doc_freq
        terms = sorted({t for t in own if df.get(t, 0) > 0}, key=lambda t: df[t])
        need = NeedWindow(
            inp.request_id, inp.member_state.value, inp.draft.desired_start, inp.draft.desired_end,
            inp.submitted_at,
        )  # fmt: skip
        labels = ("same member state, last 183 days", "other states' open requests, overlapping period")
        for label, scope in zip(labels, RequestScope, strict=True):
            stmt, values = request_query(need, terms, 183, scope)
            explain = Prepared("EXPLAIN (ANALYZE, COSTS OFF) " + stmt.sql, stmt.names, stmt.constants)
            rows = await explain.fetch(await session.connection(), values)
            out.append(f"-- {label}\n" + "\n".join(r["QUERY PLAN"] for r in rows))
    await engine.dispose()
    return "\n\n".join(out)


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


async def _run(url: str) -> dict[str, Any]:
    rng = random.Random(SEED)
    base = templates()
    inputs = checks(random.Random(SEED + 1), base, CHECKS)
    figures: dict[str, Any] = {"rows": [], "plans": ""}
    loaded = 0
    for size in sorted(SIZES):
        began = time.perf_counter()
        while loaded < size:
            batch = min(100_000, size - loaded)
            await load(url, synthetic(rng, base, loaded, batch))
            loaded += batch
        await restate_term_stats(url)
        load_s = time.perf_counter() - began
        samples = await measure(url, inputs)
        figures["rows"].append(
            {"size": size, "median_ms": statistics.median(samples), "p95_ms": _p95(samples), "load_s": load_s}
        )
        print(
            f"| {size:,} | {len(samples)} | {statistics.median(samples):.1f} | {_p95(samples):.1f} |",
            flush=True,
        )
    figures["plans"] = await plans(url, inputs[0])
    return figures


def run() -> dict[str, Any]:
    with scratch_database(None) as url:
        upgrade(url)
        return asyncio.run(_run(url))


def main() -> None:
    print(HEADER)
    figures = run()
    rows = figures["rows"]
    if len(rows) > 1:
        growth = rows[-1]["p95_ms"] / rows[0]["p95_ms"]
        print(f"\np95 growth {rows[0]['size']:,} -> {rows[-1]['size']:,}: {growth:.2f}x")
    print("\n" + figures["plans"])


if __name__ == "__main__":
    main()
