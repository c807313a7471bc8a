"""Figure 5: worker memory with N requests waiting in ASEC review (target <= 1 GiB RSS), and the time a
restarted worker takes to resume them.

N = 10,000 x BENCH_SCALE (BENCH_WORKER_N overrides). The requests' workflows are started directly
with a Temporal client (the front door is figure 1), and the one worker process of the stack carries
each through the dedup check and its SLA clock into `asec_review`, where it waits on a timer; the
read model says when all N are there. The worker's RSS is sampled (psutil) all along. Then the worker
is stopped and a new one started, BENCH_WORKER_RESTARTS times (default 2): "resumed" is the time
until every one of the N requests answers its `status` query (each needs the new worker to replay
its history), and the time to the first.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from benchmarks.support import RssSampler, bench_stack, p95, say, scaled, summary, table, verdict
from taflow.db.session import make_engine
from taflow.domain.enums import Role
from taflow.domain.models import Actor, NewRequest, RequestDraft, RequestState
from taflow.drills.driver import MEMBER_STATES, random_draft
from taflow.drills.stack import Stack
from taflow.temporal import DATA_CONVERTER, workflow_id

FIGURE = 5
TITLE = "Worker memory with requests waiting in review, and resuming them after a restart"
TARGET_MIB = 1024.0
N = 10_000
START_CONCURRENCY = 32
QUERY_CONCURRENCY = 32
FILL_TIMEOUT_S = 3600.0


def n_waiting() -> int:
    override = os.environ.get("BENCH_WORKER_N")
    return int(override) if override else scaled(N, 50)


async def start_all(client: Client, stack: Stack, n: int) -> list[str]:
    rng = random.Random(55)
    gate = asyncio.Semaphore(START_CONCURRENCY)
    ids = [f"TA-W-{i:07d}" for i in range(n)]

    async def one(i: int, rid: str) -> None:
        ms = MEMBER_STATES[i % len(MEMBER_STATES)]
        new = NewRequest(
            request_id=rid,
            member_state=ms,
            draft=RequestDraft.model_validate(random_draft(rng)),
            submitted_by=Actor(subject=f"{ms.lower()}-coordinator", organisation=ms, role=Role.requester),
            submitted_at=datetime.now(UTC),
        )
        async with gate:
            await client.start_workflow(
                "TARequestWorkflow",
                new,
                id=workflow_id(rid),
                task_queue=stack.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            )

    await asyncio.gather(*(one(i, rid) for i, rid in enumerate(ids)))
    return ids


async def waiting_in_review(stack: Stack) -> int:
    engine = make_engine(stack.database_url, pool_size=1)
    try:
        async with engine.connect() as c:
            sql = "SELECT count(*) FROM requests WHERE stage = 'asec_review' AND sla_due_at IS NOT NULL"
            return int((await c.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


async def resume(client: Client, ids: list[str]) -> tuple[float, float]:
    """Seconds until the first and until every request answered `status` from the new worker."""
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)
    started = time.perf_counter()
    first: list[float] = []

    async def one(rid: str) -> None:
        async with gate:
            for attempt in range(60):
                try:
                    state = await client.get_workflow_handle(workflow_id(rid)).query(
                        "status", result_type=RequestState
                    )
                    break
                except Exception:
                    if attempt == 59:
                        raise
                    await asyncio.sleep(0.5)
            if state.stage.value != "asec_review":
                raise RuntimeError(f"{rid} is at {state.stage.value}, not asec_review")
            if not first:
                first.append(time.perf_counter() - started)

    await asyncio.gather(*(one(r) for r in ids))
    return first[0], time.perf_counter() - started


async def measure(stack: Stack) -> dict[str, Any]:
    n = n_waiting()
    client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
    assert stack.worker_pid is not None
    await asyncio.sleep(3)
    sampler = RssSampler(stack.worker_pid, interval=1.0)
    idle = sampler.rss_mib() or 0.0
    sampler.start()
    started = time.perf_counter()
    ids = await start_all(client, stack, n)
    say(f"worker memory: {n:,} workflows started in {time.perf_counter() - started:.0f} s")
    last_report, there = started, 0
    while there < n:
        if time.perf_counter() - started > FILL_TIMEOUT_S:
            raise RuntimeError(f"only {there:,} of {n:,} reached asec_review in {FILL_TIMEOUT_S:.0f} s")
        await asyncio.sleep(2)
        there = await waiting_in_review(stack)
        if time.perf_counter() - last_report > 30:
            last_report = time.perf_counter()
            rss = sampler.samples[-1] if sampler.samples else 0.0
            say(f"worker memory: {there:,}/{n:,} in review, worker RSS {rss:.0f} MiB")
    fill_s = time.perf_counter() - started
    await asyncio.sleep(5)  # settle: the last projections and timers are written
    during = sampler.stop()
    settled = RssSampler(stack.worker_pid).rss_mib() or 0.0

    restarts = []
    for r in range(max(1, int(os.environ.get("BENCH_WORKER_RESTARTS", "2")))):
        stack.kill_worker(signal.SIGTERM)
        t = time.perf_counter()
        stack.start_worker()
        assert stack.worker_pid is not None
        sampler = RssSampler(stack.worker_pid, interval=0.5).start()
        first, all_s = await resume(client, ids)
        rss = sampler.stop()
        restarts.append(
            {
                "first_s": first,
                "all_s": all_s,
                "since_spawn_s": time.perf_counter() - t,
                "peak_mib": max(rss) if rss else 0.0,
                "end_mib": rss[-1] if rss else 0.0,
            }
        )
        say(f"worker memory: restart {r + 1}: first answer {first:.1f} s, all {n:,} in {all_s:.1f} s")
    return {
        "n": n,
        "idle_mib": idle,
        "fill_s": fill_s,
        "peak_mib": max(during) if during else 0.0,
        "settled_mib": settled,
        "restarts": restarts,
    }


def render(m: dict[str, Any]) -> tuple[str, dict[str, float]]:
    restarts = m["restarts"]
    first = summary([r["first_s"] for r in restarts])
    alls = summary([r["all_s"] for r in restarts])
    peaks = [r["peak_mib"] for r in restarts]
    worst = max([m["peak_mib"], *peaks])
    n = m["n"]
    md = "\n".join(
        [
            f"{n:,} requests waiting in `asec_review` (reached in {m['fill_s']:.0f} s by one worker process, "
            f"{n / m['fill_s']:.1f}/s); worker RSS sampled with psutil.",
            "",
            table(
                ["worker RSS", "MiB"],
                [
                    ("fresh worker, idle", m["idle_mib"]),
                    (f"peak while carrying {n:,} into review", m["peak_mib"]),
                    (f"settled, {n:,} waiting", m["settled_mib"]),
                    (f"restarted worker, peak while resuming (max of {len(restarts)})", max(peaks)),
                ],
            ),
            "",
            f"**Peak RSS {worst:.0f} MiB** (target <= {TARGET_MIB:.0f} MiB: {verdict(worst <= TARGET_MIB)}).",
            "",
            table(
                ["after a restart", "median s", "p95 s"],
                [
                    ("first request answers", first["median"], p95([r["first_s"] for r in restarts])),
                    (f"all {n:,} answer (replayed)", alls["median"], p95([r["all_s"] for r in restarts])),
                ],
            ),
            "",
            f"{len(restarts)} restarts (SIGTERM, new process); resumed = every request answered its `status` "
            f"query, {QUERY_CONCURRENCY} at a time, which makes the new worker replay its history.",
        ]
    )
    figures = {
        "n": float(n),
        "peak_rss_mib": worst,
        "settled_rss_mib": m["settled_mib"],
        "resume_all_s_median": alls["median"],
        "resume_first_s_median": first["median"],
    }
    return md, figures


def run() -> dict[str, Any]:
    with bench_stack() as stack:
        measured = asyncio.run(measure(stack))
    md, figures = render(measured)
    return {"title": TITLE, "markdown": md, "figures": figures}


def main() -> None:
    result = run()
    print(f"## {result['title']}\n\n{result['markdown']}")


if __name__ == "__main__":
    main()
