"""The worker process: runs TAflow's workflows and activities on the task queue."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import CodeType, ModuleType

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client
from temporalio.worker import Worker

from taflow.activities.actors import ActorActivities
from taflow.activities.deadlines import DeadlineActivities
from taflow.activities.dedup import DedupActivities
from taflow.activities.matching import MatchingActivities
from taflow.activities.notify import NotifyActivities
from taflow.activities.projection import ProjectionActivities
from taflow.activities.webhooks import WebhookActivities, start_dispatcher
from taflow.db.session import make_server_engine, make_sessionmaker
from taflow.observability.worker import LogContextInterceptor, prepare_worker_process
from taflow.process import freeze_startup_heap, run_event_loop
from taflow.settings import Settings, get_settings, resolve_database_url
from taflow.temporal import connect
from taflow.workflows.invitation import ExpertInvitationWorkflow
from taflow.workflows.outbox import OutboxDispatcherWorkflow, WebhookDeliveryWorkflow
from taflow.workflows.request import TARequestWorkflow

DB_CONNECTIONS = 30
"""Connections the worker keeps open at most (opened as activities need them, then kept): within the
embedded PostgreSQL's 100 beside the API's `api_db_pool_size` and its LISTEN connection
(taflow.api.app.api_pool_share)."""
WORKFLOWS = [TARequestWorkflow, ExpertInvitationWorkflow, OutboxDispatcherWorkflow, WebhookDeliveryWorkflow]
log = structlog.get_logger()


class _CompiledOnceLoader(importlib.machinery.SourceFileLoader):
    """Loads a module like `SourceFileLoader`, with its code compiled once per process."""

    code: dict[tuple[str, float, int | None], CodeType] = {}

    def get_code(self, fullname: str) -> CodeType | None:
        path = self.get_filename(fullname)
        stats = self.path_stats(path)
        key = (path, stats["mtime"], stats.get("size"))
        if key not in self.code:
            code = super().get_code(fullname)
            if code is None:
                return None
            self.code[key] = code
        return self.code[key]


class _WorkflowCodeFinder(importlib.abc.MetaPathFinder):
    """Finds the workflow modules with `_CompiledOnceLoader`; everything else is left to the others."""

    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and type(spec.loader) is importlib.machinery.SourceFileLoader and spec.origin:
            spec.loader = _CompiledOnceLoader(fullname, spec.origin)
        return spec


def compile_workflow_modules_once() -> None:
    """The sandbox imports a workflow's module afresh for every workflow it loads (a new request, a
    replay after eviction). Without cached bytecode (PYTHONDONTWRITEBYTECODE, an unwritable tree),
    each import compiled the source again: ~14 ms for taflow.workflows.request. Compile once instead."""
    if not sys.dont_write_bytecode or any(isinstance(f, _WorkflowCodeFinder) for f in sys.meta_path):
        return
    names = {w.__module__ for w in WORKFLOWS}
    names |= {name.rsplit(".", i)[0] for name in names for i in range(1, name.count(".") + 1)}  # packages
    sys.meta_path.insert(0, _WorkflowCodeFinder(frozenset(names)))


def build_worker(
    client: Client,
    sessionmaker: async_sessionmaker[AsyncSession],
    task_queue: str,
    settings: Settings,
    *,
    credentials: async_sessionmaker[AsyncSession] | None = None,
) -> Worker:
    """A worker with every workflow and activity; tests build theirs the same way. `credentials`:
    where `verify_actor` looks actors up, if not in `sessionmaker`'s database (a test of an outage)."""
    compile_workflow_modules_once()
    projection = ProjectionActivities(sessionmaker)
    dedup = DedupActivities(sessionmaker, window_days=settings.dedup_window_days)
    matching = MatchingActivities(sessionmaker)
    notify = NotifyActivities(sessionmaker, settings.public_base_url)
    deadlines = DeadlineActivities(settings.sla_policy_file)
    webhooks = WebhookActivities(sessionmaker, settings)
    actors = ActorActivities(credentials or sessionmaker)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[
            projection.project_request,
            dedup.check_duplicates,
            matching.propose_match,
            matching.next_meeting,
            notify.issue_invitation_link,
            deadlines.start_clock,
            deadlines.resume_clock,
            deadlines.next_donor_round,
            webhooks.claim_webhook_work,
            webhooks.deliver_webhook,
            webhooks.dead_letter_webhook,
            actors.verify_actor,
        ],
        interceptors=[LogContextInterceptor()],  # tracing comes with the client's interceptors
    )


async def run(settings: Settings) -> None:
    runtime = prepare_worker_process(settings)  # JSON logs, traces, /metrics (SDK + business)
    # No pre-ping (three round trips per checkout): an activity whose pooled connection a PostgreSQL
    # restart dropped fails once, SQLAlchemy renews the pool and Temporal retries the activity.
    engine = make_server_engine(resolve_database_url(settings), connections=DB_CONNECTIONS, pre_ping=False)
    client = await connect(settings, runtime=runtime)
    worker = build_worker(client, make_sessionmaker(engine), settings.task_queue, settings)
    await start_dispatcher(client, settings.task_queue, settings)  # webhooks: one dispatcher per queue
    freeze_startup_heap()
    log.info("worker started", task_queue=settings.task_queue)
    try:
        await worker.run()
    finally:
        await engine.dispose()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C from the dev stack: the worker shuts down cleanly
        run_event_loop(run(get_settings()))


if __name__ == "__main__":
    main()
