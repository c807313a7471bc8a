"""The four fault drills. Each puts real load on the stack through the API, breaks one part mid-load,
brings it back, and then checks (`checks.verify`) that nothing was lost or doubled.

- worker-kill:      `kill -9` the worker process while requests are in flight, start a new one.
- temporal-restart: stop the Temporal dev server (its SQLite file keeps the state), start it again.
- postgres-stop:    stop PostgreSQL for `pg_outage_s` (30 s in full), start it again; the read model
                    catches up from the workflows' projection retries.
- api-kill:         `kill -9` the API while submissions are in flight; clients retry with the same
                    Idempotency-Key, and a new API process answers them.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from temporalio.client import Client

from taflow.drills.checks import Verdict, pick_history, save_history, verify
from taflow.drills.driver import Driver, Load
from taflow.drills.stack import Stack
from taflow.temporal import DATA_CONVERTER, workflow_id

DRILLS = ("api-kill", "worker-kill", "temporal-restart", "postgres-stop")


@dataclass(frozen=True)
class DrillConfig:
    n: int = 200
    concurrency: int = 20
    pg_outage_s: float = 30.0
    temporal_outage_s: float = 5.0
    lifecycle_timeout_s: float = 300.0
    drill_timeout_s: float = 600.0
    trigger_timeout_s: float = 120.0
    record_dir: Path | None = None
    seed: int = 8

    @classmethod
    def short(cls, **over: object) -> DrillConfig:
        """What `make test` runs: a handful of requests and short outages."""
        base = cls(n=8, concurrency=8, pg_outage_s=5.0, temporal_outage_s=2.0, lifecycle_timeout_s=150.0)
        return base if not over else DrillConfig(**(base.__dict__ | over))


Fault = Callable[[Stack], Awaitable[str]]


async def _kill_worker(stack: Stack) -> str:
    await asyncio.to_thread(stack.kill_worker, signal.SIGKILL)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(stack.start_worker)
    return "worker killed with SIGKILL and restarted"


def _restart_temporal(outage_s: float) -> Fault:
    async def fault(stack: Stack) -> str:
        await asyncio.to_thread(stack.stop_temporal, signal.SIGTERM)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(stack.start_temporal)
        return f"Temporal dev server down {outage_s:.0f} s and restarted on its SQLite file"

    return fault


def _stop_postgres(outage_s: float) -> Fault:
    async def fault(stack: Stack) -> str:
        await asyncio.to_thread(stack.stop_postgres)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(stack.start_postgres)
        return f"PostgreSQL stopped for {outage_s:.0f} s and restarted"

    return fault


async def _kill_api(stack: Stack) -> str:
    await asyncio.to_thread(stack.kill_api, signal.SIGKILL)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(stack.start_api)
    return "API killed with SIGKILL mid-submission and restarted"


def plan(name: str, cfg: DrillConfig) -> tuple[Fault, Callable[[Load], bool], int]:
    """The fault, when to strike, and how many lifecycles at once."""
    quarter = max(1, cfg.n // 4)
    if name == "api-kill":
        # strike while most lifecycles are still submitting: many submissions in flight at once
        return _kill_api, lambda load: load.submitted >= quarter, max(cfg.concurrency, min(cfg.n, 50))
    if name == "worker-kill":
        return _kill_worker, lambda load: load.completed >= quarter, cfg.concurrency
    if name == "temporal-restart":
        return (
            _restart_temporal(cfg.temporal_outage_s),
            lambda load: load.completed >= quarter,
            cfg.concurrency,
        )
    if name == "postgres-stop":
        return _stop_postgres(cfg.pg_outage_s), lambda load: load.completed >= quarter, cfg.concurrency
    raise ValueError(f"unknown drill {name!r}; known: {', '.join(DRILLS)}")


async def run_drill(
    name: str, stack: Stack, cfg: DrillConfig, *, say: Callable[[str], None] = print
) -> Verdict:
    if not stack.api_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"drills send load to loopback only, not {stack.api_url}")
    fault, strike_when, concurrency = plan(name, cfg)
    started = time.monotonic()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0, limits=limits) as http:
        driver = Driver(http, stack.credentials, lifecycle_timeout_s=cfg.lifecycle_timeout_s)
        load = Load(driver, cfg.n, concurrency, seed=cfg.seed + DRILLS.index(name), key_prefix=name)
        task = asyncio.create_task(load.run())
        try:
            struck = await load.wait_until(strike_when, cfg.trigger_timeout_s)
            if not struck:
                say(f"[{name}] the load never reached the strike point; striking anyway")
            say(f"[{name}] {load.submitted}/{cfg.n} submitted, {load.completed} completed: striking")
            say(f"[{name}] {await fault(stack)}")
            traces = await asyncio.wait_for(task, cfg.drill_timeout_s)
        except BaseException:
            task.cancel()
            raise
    await asyncio.to_thread(stack.check_alive)
    client = await Client.connect(stack.temporal_address, data_converter=DATA_CONVERTER)
    verdict = await verify(name, traces, stack.database_url, client)
    verdict.seconds = time.monotonic() - started
    replayed = sum(1 for t in traces if t.replayed_submission)
    if replayed:
        say(f"[{name}] {replayed} submission(s) replayed on retry with the same Idempotency-Key")
    for rid in verdict.unreadable[:3]:  # keep the evidence: these histories fail to replay
        broken = await client.get_workflow_handle(workflow_id(rid)).fetch_history()
        kept = stack.root.parent / f"taflow-drill-unreadable-{rid}.json"
        save_history(broken, kept)
        say(f"[{name}] {rid} could not answer its status query; its history is in {kept}")
    if cfg.record_dir is not None:
        rids = [t.request_id for t in traces if t.request_id]
        history = await pick_history(client, rids)
        if history is not None:
            path = cfg.record_dir / f"drill-{name}.json"
            save_history(history, path)
            say(f"[{name}] recorded {history.workflow_id} ({len(history.events)} events) to {path}")
    return verdict


async def run_drills(
    names: list[str], stack: Stack, cfg: DrillConfig, *, say: Callable[[str], None] = print
) -> list[Verdict]:
    verdicts = []
    for name in names:
        verdict = await run_drill(name, stack, cfg, say=say)
        say(f"{name}: {verdict.line()} ({verdict.seconds:.0f} s){'' if verdict.ok else '  FAILED'}")
        if verdict.retries:
            say(f"    retries: {', '.join(f'{k} x{n}' for k, n in verdict.retries.most_common(6))}")
        for problem in verdict.problems[:10]:
            say(f"    {problem}")
        verdicts.append(verdict)
    return verdicts
