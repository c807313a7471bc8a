"""Figure 2: whole-lifecycle rate through the API against a bare workflow of the same shape
(target API/raw >= 0.7), and history events per request (target < 150).

API: the drills' driver (`taflow.drills.driver`) walks each request from `POST /v1/requests` to
`completed` over HTTP (submission, ASEC approval, ROCB match, the expert's acceptance on the
invitation child workflow, the completion report), polling `GET /v1/requests/{id}` where it must
wait, exactly as a partner system would; our worker process runs the workflows. Raw: API
lifecycles are recorded first and their histories counted (`Shape.of_histories`, `Shape.typical`):
the bare workflow then has the same activities between the same waits, the same updates, signals,
timers and child workflow, all with empty bodies, run by its own worker process on the same dev
server and driven by a bare `temporalio` client. Runs alternate API/raw.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import Counter
from typing import Any

from temporalio.client import Client, WorkflowHistory

from benchmarks.http1 import Http1Client
from benchmarks.raw_workflows import Shape, drive_bare
from benchmarks.support import (
    PROFILES,
    CpuMeter,
    Profile,
    RawWorker,
    bench_stack,
    cpu_extra,
    cpu_table,
    p95,
    pair_ratios,
    profiling,
    repeats,
    say,
    scaled,
    stack_processes,
    summary,
    table,
    verdict,
    where_time_goes,
)
from taflow.drills.driver import Driver, Load, Trace
from taflow.drills.stack import Stack
from taflow.process import run_event_loop
from taflow.temporal import DATA_CONVERTER, invitation_workflow_id, workflow_id

FIGURE = 2
TITLE = "Whole lifecycle: API against a bare workflow of the same shape"
TARGET = 0.7
EVENTS_TARGET = 150
CONCURRENCY = int(os.environ.get("BENCH_LIFECYCLE_CONCURRENCY", "32"))
POLL_S = float(os.environ.get("BENCH_LIFECYCLE_POLL", "0.1"))
"""First pause of the driver's GET polling; it grows by half each poll up to 1 s."""
PER_RUN = 60
RUNS = 7
"""Single pairs of runs gave ratios from 0.63 to 0.71 on one invocation: seven make the medians hold."""
RAW_QUEUE = "bench-raw"
SAMPLE_HISTORIES = 20
CALIBRATION = 11
"""API lifecycles recorded for the bare shape (`Shape.typical`); odd, so each median is one of them."""

COUNTED = {
    "activity_task_scheduled_event_attributes": "activities",
    "timer_started_event_attributes": "timers",
    "workflow_execution_update_accepted_event_attributes": "updates",
    "workflow_execution_signaled_event_attributes": "signals",
    "start_child_workflow_execution_initiated_event_attributes": "child workflows",
    "upsert_workflow_search_attributes_event_attributes": "search-attribute upserts",
    "marker_recorded_event_attributes": "markers (patches)",
    "workflow_task_completed_event_attributes": "workflow tasks",
}


def activity_spread(parent_counts: list[Counter[str]]) -> str:
    activities = sorted(c["activities"] for c in parent_counts)
    if not activities:
        return "none sampled"
    return f"median {statistics.median(activities):g} (from {activities[0]} to {activities[-1]})"


def counts(history: WorkflowHistory) -> Counter[str]:
    c: Counter[str] = Counter(COUNTED.get(e.WhichOneof("attributes") or "", "") for e in history.events)
    del c[""]
    c["events"] = len(history.events)
    c["history KiB"] = len(history.to_json()) // 1024
    return c


async def api_run(stack: Stack, n: int, seed: int) -> tuple[float, list[float], list[Trace]]:
    http = Http1Client(stack.api_url)
    try:
        driver = Driver(http, stack.credentials, poll_s=POLL_S, max_pause_s=1.0, lifecycle_timeout_s=600)
        load = Load(driver, n, CONCURRENCY, seed=seed, key_prefix="bench")
        started = time.perf_counter()
        traces = await load.run()
        elapsed = time.perf_counter() - started
    finally:
        await http.aclose()
    failed = [t for t in traces if not t.completed]
    if failed:
        raise RuntimeError(f"{len(failed)} lifecycle(s) failed, e.g. {failed[0].error}")
    return n / elapsed, [(t.completed_at or 0) - t.started_at for t in traces], traces


async def raw_run(client: Client, shape: Shape, n: int) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(CONCURRENCY)
    durations: list[float] = []
    run_id = uuid.uuid4().hex[:8]

    async def one(i: int) -> None:
        async with gate:
            t = time.perf_counter()
            await drive_bare(client, f"bare-{run_id}-{i}", shape, RAW_QUEUE)
            durations.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started), durations


async def histories(client: Client, rid: str) -> tuple[WorkflowHistory, WorkflowHistory | None]:
    parent = await client.get_workflow_handle(workflow_id(rid)).fetch_history()
    try:
        child = await client.get_workflow_handle(invitation_workflow_id(f"{rid}-1")).fetch_history()
    except Exception:
        child = None
    return parent, child


async def measure(stack: Stack, raw_worker: RawWorker) -> dict[str, Any]:
    runs, n = repeats(RUNS), scaled(PER_RUN, 6)
    client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
    raw_client = await Client.connect(stack.temporal_address)

    # calibrate: real lifecycles, run together as under load, give the shape of the bare one
    _, _, traces = await api_run(stack, CALIBRATION, seed=0)
    recorded = [Shape.of_histories(*await histories(client, t.request_id)) for t in traces if t.request_id]
    shape = Shape.typical(recorded)
    calibration = sorted(s.activities for s in recorded)
    say(f"lifecycle shape: {shape} (activities in the sample: {calibration})")
    await raw_run(raw_client, shape, min(n, 8))  # warm-up; the calibration warmed the API path

    assert raw_worker.process is not None
    roles = stack_processes(stack, {"raw worker": raw_worker.process.pid})
    meters = {"API": CpuMeter(roles), "raw": CpuMeter(roles)}
    rates: dict[str, list[float]] = {"API": [], "raw": []}
    durations: dict[str, list[float]] = {"API": [], "raw": []}
    last: list[Trace] = []
    for r in range(runs):
        for kind in ("API", "raw") if r % 2 == 0 else ("raw", "API"):
            with meters[kind]:
                if kind == "API":
                    rate, secs, last = await api_run(stack, n, seed=10 + r)
                else:
                    rate, secs = await raw_run(raw_client, shape, n)
            rates[kind].append(rate)
            durations[kind] += secs
        say(f"lifecycle run {r + 1}/{runs}: API {rates['API'][-1]:.2f}/s, raw {rates['raw'][-1]:.2f}/s")

    # history events per request, from the last API run (and the bare one for comparison)
    sample = [t.request_id for t in last if t.request_id][:SAMPLE_HISTORIES]
    per_request = [await histories(client, r) for r in sample]
    bare_id = f"bare-shape-{uuid.uuid4().hex[:6]}"
    await drive_bare(raw_client, bare_id, shape, RAW_QUEUE)
    bare_parent = await raw_client.get_workflow_handle(bare_id).fetch_history()
    bare_child = await raw_client.get_workflow_handle(f"{bare_id}-child").fetch_history()

    profile_md: dict[str, str] = {}
    missed = statistics.median(rates["API"]) / statistics.median(rates["raw"]) < TARGET
    if profiling(missed):
        profiles = [Profile(name, pid, PROFILES / f"{name}-lifecycle.txt") for name, pid in
                    (("api", stack.api_pid), ("worker", stack.worker_pid)) if pid]  # fmt: skip
        started = [p for p in profiles if p.start(600)]
        if started:
            await api_run(stack, n, seed=99)
            for p in started:
                p.stop()
                profile_md[p.name] = where_time_goes(p.out)
    return {
        "runs": runs,
        "n": n,
        "shape": shape,
        "calibration": calibration,
        "rates": rates,
        "durations": durations,
        "cpu": cpu_table(meters, {"API": n * runs, "raw": n * runs}, "lifecycle")
        + "\n\n"
        + cpu_extra(meters, {"API": n * runs, "raw": n * runs}, "API", "raw", "lifecycle"),
        "parent_counts": [counts(p) for p, _ in per_request],
        "child_counts": [counts(c) for _, c in per_request if c is not None],
        "bare_parent": counts(bare_parent),
        "bare_child": counts(bare_child),
        "profiles": profile_md,
        "calls": [dict(t.calls) for t in last],
    }


def render(m: dict[str, Any]) -> tuple[str, dict[str, float]]:
    rates, durations = m["rates"], m["durations"]
    s = {k: summary(v) for k, v in rates.items()}
    d = {k: summary(v) for k, v in durations.items()}
    ratio = s["API"]["median"] / s["raw"]["median"]
    parents = [c["events"] for c in m["parent_counts"]]
    totals = [p["events"] + c["events"] for p, c in zip(m["parent_counts"], m["child_counts"], strict=False)]
    events_median, events_p95 = summary(parents)["median"], p95(parents)
    shape: Shape = m["shape"]
    rows = [
        (k, f"{s[k]['median']:.2f}", f"{s[k]['p95']:.2f}", f"{d[k]['median']:.2f}", f"{d[k]['p95']:.2f}")
        for k in ("API", "raw")
    ]
    kinds = ["events", "history KiB", *dict.fromkeys(COUNTED.values())]
    real_p = m["parent_counts"][-1] if m["parent_counts"] else Counter()
    real_c = m["child_counts"][-1] if m["child_counts"] else Counter()
    shape_rows = [
        (k, real_p.get(k, 0), m["bare_parent"].get(k, 0), real_c.get(k, 0), m["bare_child"].get(k, 0))
        for k in kinds
    ]
    md = "\n".join(
        [
            f"{m['runs']} runs of {m['n']} lifecycles each, {CONCURRENCY} in flight, "
            "alternating API and raw. "
            f"Bare shape (the typical one of {len(m['calibration'])} API lifecycles recorded together, "
            f"whose activities numbered {m['calibration'][0]} to {m['calibration'][-1]}; "
            f"`Shape.typical`): activities per segment {shape.segments}, "
            f"waits {shape.waits}, {shape.timers} timers, {shape.signals} signals; child: "
            f"{shape.child_activities} activity, {shape.child_timers} timer, {shape.child_updates} update.",
            "",
            table(["path", "median lifecycles/s", "p95 /s", "lifecycle median s", "lifecycle p95 s"], rows),
            "",
            f"**Ratio API/raw (medians): {ratio:.2f}** (target >= {TARGET}: {verdict(ratio >= TARGET)}).",
            "",
            f"Each API run against the raw run beside it: ratios {pair_ratios(rates['API'], rates['raw'])}.",
            "",
            f"**History events per request: median {events_median:.0f}, p95 {events_p95:.0f}** "
            f"(request workflow; target < {EVENTS_TARGET}: {verdict(events_p95 < EVENTS_TARGET)}); "
            f"with its invitation child: median {summary(totals)['median']:.0f} "
            f"(sample of {len(parents)} from the last run, `fetch_history`).",
            "",
            "HTTP calls per lifecycle (median over the last run): "
            + ", ".join(
                f"{step} {summary([c.get(step, 0) for c in m['calls']])['median']:.0f}"
                for step in sorted({k for c in m["calls"] for k in c})
            )
            + f"; total {summary([sum(c.values()) for c in m['calls']])['median']:.0f}.",
            "",
            "Activities per request in the last run's sample: "
            f"{activity_spread(m['parent_counts'])}; the bare workflow: {shape.activities}.",
            "",
            "One request's histories against the bare ones (same counts of the things that must match):",
            "",
            table(["count", "request", "bare", "invitation", "bare child"], shape_rows),
            "",
            "CPU spent per lifecycle, by process:",
            "",
            m["cpu"],
        ]
    )
    for name, prof in m["profiles"].items():
        md += (
            f"\n\nWhere the {name}'s time goes during API lifecycles "
            f"(py-spy, one extra run, not counted above):\n\n{prof}"
        )
    figures = {
        "api_per_s_median": s["API"]["median"],
        "api_per_s_p95": s["API"]["p95"],
        "raw_per_s_median": s["raw"]["median"],
        "raw_per_s_p95": s["raw"]["p95"],
        "ratio": ratio,
        "events_per_request_median": events_median,
        "events_per_request_p95": events_p95,
    }
    return md, figures


def run() -> dict[str, Any]:
    with bench_stack() as stack:
        raw_worker = RawWorker(stack.temporal_address, RAW_QUEUE, stack.root / "raw-worker.log")
        raw_worker.start()
        try:
            measured = run_event_loop(measure(stack, raw_worker))
        finally:
            raw_worker.stop()
    md, figures = render(measured)
    return {"title": TITLE, "markdown": md, "figures": figures}


def main() -> None:
    result = run()
    print(f"## {result['title']}\n\n{result['markdown']}")


if __name__ == "__main__":
    main()
