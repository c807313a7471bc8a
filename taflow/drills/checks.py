"""After a drill: prove that every request the client submitted completed once, and that the read model
holds each workflow's audit events exactly once.

Sources of truth, compared with each other:
- the client's traces (one Idempotency-Key per intended request, the id it got back);
- `submissions` (one row per key, the id it allocated);
- Temporal (`TARequestWorkflow` executions, and each one's `status` query events);
- the read model (`requests.stage`, `request_events` rows per request).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from temporalio.client import Client, WorkflowHistory, WorkflowQueryFailedError
from temporalio.service import RPCError

from taflow.db.session import make_engine
from taflow.domain.models import RequestState
from taflow.drills.driver import Trace
from taflow.temporal import workflow_id

REQUEST_WORKFLOW = "TARequestWorkflow"
FAULT_EVENTS = {
    "workflow_task_timed_out_event_attributes": 3,
    "workflow_task_failed_event_attributes": 3,
    "activity_task_timed_out_event_attributes": 3,
    "activity_task_failed_event_attributes": 2,
}


@dataclass
class Verdict:
    drill: str
    intended: int
    submitted: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    retries: Counter[str] = field(default_factory=Counter)
    unreadable: list[str] = field(default_factory=list)
    """Requests whose workflow could not answer its status query (histories kept for a look)."""

    @property
    def ok(self) -> bool:
        return (
            self.submitted == self.intended
            and self.completed == self.intended
            and self.lost == 0
            and self.duplicated == 0
            and not self.problems
        )

    def line(self) -> str:
        return (
            f"{self.submitted} submitted, {self.completed} completed, "
            f"{self.lost} lost, {self.duplicated} duplicated"
        )

    def lost_one(self, why: str) -> None:
        self.lost += 1
        self.problems.append(f"lost: {why}")

    def doubled(self, why: str) -> None:
        self.duplicated += 1
        self.problems.append(f"duplicated: {why}")


async def _status_events(client: Client, rid: str) -> tuple[list[tuple[int, str]] | None, str]:
    """The workflow's own audit events (seq, kind), or None and why not."""
    handle = client.get_workflow_handle(workflow_id(rid))
    error = ""
    for attempt in range(5):
        try:
            state = await handle.query("status", result_type=RequestState)
            return [(e.seq, e.kind) for e in state.events], ""
        except (RPCError, WorkflowQueryFailedError) as exc:
            error = f"{type(exc).__name__}: {exc}"
            if attempt < 4:
                await asyncio.sleep(1.0)
    return None, error


async def verify(
    drill: str,
    traces: list[Trace],
    database_url: str,
    client: Client,
    *,
    settle_timeout: float = 90.0,
    concurrency: int = 8,
) -> Verdict:
    """Compare the client's view, `submissions`, Temporal and the read model (see module doc)."""
    v = Verdict(drill=drill, intended=len(traces))
    for t in traces:
        v.retries.update(t.retries)
    by_key = {t.key: t for t in traces}
    rids = {t.request_id for t in traces if t.request_id}
    v.submitted = len(rids)
    for t in traces:
        if t.request_id is None:
            v.lost_one(f"{t.key} was never accepted ({t.error})")
        elif not t.completed:
            v.problems.append(f"{t.request_id} not completed by the client: {t.error}")
    if len(rids) != sum(1 for t in traces if t.request_id):
        v.doubled("two idempotency keys got the same request id")

    engine = make_engine(database_url, pool_size=2)
    try:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT idempotency_key, request_id FROM submissions WHERE idempotency_key = ANY(:k)"
                    ),
                    {"k": list(by_key)},
                )
            ).all()
            all_submitted = {
                r[0] for r in (await conn.execute(text("SELECT request_id FROM submissions"))).all()
            }
        per_key = Counter(r[0] for r in rows)
        for key, n in per_key.items():
            if n > 1:
                v.doubled(f"key {key} has {n} submissions")
        for key, rid in rows:
            trace = by_key[key]
            if trace.request_id is not None and trace.request_id != rid:
                v.doubled(f"key {key}: the client got {trace.request_id}, the database holds {rid}")

        # Temporal: one execution per submitted id, none without a submission
        seen: Counter[str] = Counter()
        async for wf in client.list_workflows(f"WorkflowType = '{REQUEST_WORKFLOW}'"):
            seen[wf.id] += 1
        ours = {workflow_id(r) for r in rids}
        known = {workflow_id(r) for r in all_submitted}
        for wid in ours - set(seen):
            v.lost_one(f"no workflow {wid}")
        for wid in set(seen) - known:
            v.doubled(f"workflow {wid} has no submission")

        # the read model: completed, and the same events as the workflow, once each
        deadline = time.monotonic() + settle_timeout
        pending = set(rids)
        while pending and time.monotonic() < deadline:
            async with engine.connect() as conn:
                done = (
                    await conn.execute(
                        text("SELECT id FROM requests WHERE id = ANY(:ids) AND stage = 'completed'"),
                        {"ids": list(pending)},
                    )
                ).all()
            pending -= {r[0] for r in done}
            if pending:
                await asyncio.sleep(0.5)
        v.completed = len(rids) - len(pending)
        for rid in sorted(pending):
            v.lost_one(f"{rid} is not completed in the read model")

        gate = asyncio.Semaphore(concurrency)

        async def compare(rid: str) -> None:
            async with gate:
                wf_events, error = await _status_events(client, rid)
                async with engine.connect() as conn:
                    db_events = [
                        (int(r[0]), str(r[1]))
                        for r in (
                            await conn.execute(
                                text(
                                    "SELECT seq, kind FROM request_events WHERE request_id = :r ORDER BY seq"
                                ),
                                {"r": rid},
                            )
                        ).all()
                    ]
            if wf_events is None:
                v.problems.append(f"{rid}: the status query failed: {error[:300]}")
                v.unreadable.append(rid)
                return
            missing = set(wf_events) - set(db_events)
            extra = [e for e, n in Counter(db_events).items() if n > 1] + sorted(
                set(db_events) - set(wf_events)
            )
            for seq, kind in sorted(missing):
                v.lost_one(f"{rid} event {seq} {kind} is not in request_events")
            for seq, kind in extra:
                v.doubled(f"{rid} event {seq} {kind} is in request_events but not (once) in the workflow")

        await asyncio.gather(*(compare(r) for r in sorted(rids)))
    finally:
        await engine.dispose()
    return v


def fault_evidence(history: WorkflowHistory) -> int:
    """How much of a fault this history shows: timed-out/failed tasks and retried activities."""
    score = 0
    for event in history.events:
        kind = event.WhichOneof("attributes") or ""
        score += FAULT_EVENTS.get(kind, 0)
        if kind == "activity_task_started_event_attributes":
            score += event.activity_task_started_event_attributes.attempt - 1
    return score


async def pick_history(client: Client, rids: list[str], *, sample: int = 400) -> WorkflowHistory | None:
    """The history among (the first `sample` of) `rids` that shows the fault best; the shortest among
    equals."""
    best: tuple[int, int, WorkflowHistory] | None = None
    for rid in rids[:sample]:
        try:
            history = await client.get_workflow_handle(workflow_id(rid)).fetch_history()
        except RPCError:
            continue
        key = (fault_evidence(history), -len(history.events))
        if best is None or key > best[:2]:
            best = (*key, history)
    return best[2] if best else None


def save_history(history: WorkflowHistory, path: Path) -> None:
    """Compact JSON (`WorkflowHistory.from_json` reads it like the indented form)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json.loads(history.to_json()), separators=(",", ":")) + "\n")


def summary(v: Verdict) -> dict[str, Any]:
    return {
        "drill": v.drill,
        "intended": v.intended,
        "submitted": v.submitted,
        "completed": v.completed,
        "lost": v.lost,
        "duplicated": v.duplicated,
        "seconds": round(v.seconds, 1),
        "retries": dict(v.retries.most_common(8)),
        "problems": v.problems[:20],
    }
