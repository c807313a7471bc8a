"""What the worker process installs: JSON logs with workflow and run ids, traces, SDK + business metrics."""

from __future__ import annotations

from typing import Any

import structlog
from temporalio import activity
from temporalio.runtime import Runtime
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from taflow.observability.business import worker_runtime
from taflow.observability.logs import configure_logging
from taflow.observability.tracing import setup_tracing
from taflow.settings import Settings

log = structlog.get_logger("taflow.worker")


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        with structlog.contextvars.bound_contextvars(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            workflow_type=info.workflow_type,
            activity_type=info.activity_type,
            activity_id=info.activity_id,
            attempt=info.attempt,
        ):
            return await super().execute_activity(input)


class LogContextInterceptor(Interceptor):
    """Every line logged while an activity runs (structlog, SQLAlchemy, httpx...) carries the
    workflow id, run id and activity. Workflow lines get them from `workflow.logger`'s record."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)


def prepare_worker_process(settings: Settings) -> Runtime | None:
    """Logs and traces for this process; the Temporal runtime that serves `/metrics`, or None when
    off or its port is taken (the worker runs anyway, and says so)."""
    configure_logging(settings)
    setup_tracing(settings, "worker")
    try:
        runtime = worker_runtime(settings)
    except ValueError as exc:  # the Prometheus port is in use: metrics off, the worker still runs
        log.warning("worker metrics disabled", reason=str(exc), port=settings.worker_metrics_port)
        return None
    if runtime is not None:
        log.info(
            "worker metrics",
            url=f"http://{settings.worker_metrics_host}:{settings.worker_metrics_port}/metrics",
        )
    return runtime
