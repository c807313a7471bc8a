"""Structured logs: one JSON object per line, from structlog and the standard library alike.

Context rides on structlog's contextvars: the API binds `request_id` per HTTP request, the worker
binds `workflow_id`, `run_id` and the activity per activity execution (see `observability.worker`).
Workflow code logs through `workflow.logger` only; the SDK puts the workflow's identity on the
record (`temporal_workflow`), which `temporal_fields` lifts into `workflow_id` / `run_id`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from opentelemetry import trace
from structlog.types import EventDict, Processor

from taflow.settings import Settings

HANDLER_NAME = "taflow-structlog"
QUIET_LOGGERS = {"uvicorn.access": logging.WARNING, "sqlalchemy.engine": logging.WARNING}
"""uvicorn's access lines are replaced by the API's own (with route, status, duration, request id)."""


def temporal_fields(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """Lift the SDK's `temporal_workflow` / `temporal_activity` record extras into flat keys."""
    record = event_dict.get("_record")
    for extra in ("temporal_workflow", "temporal_activity"):
        info = getattr(record, extra, None) if record is not None else event_dict.pop(extra, None)
        if isinstance(info, dict):
            event_dict.setdefault("workflow_id", info.get("workflow_id"))
            event_dict.setdefault("run_id", info.get("run_id") or info.get("workflow_run_id"))
            event_dict.setdefault("workflow_type", info.get("workflow_type"))
            for key in ("activity_type", "activity_id", "update_id", "update_name"):
                if key in info:
                    event_dict.setdefault(key, info[key])
    return event_dict


def trace_fields(_: Any, __: str, event_dict: EventDict) -> EventDict:
    """The current span's trace and span ids, so a log line leads to its trace."""
    ctx = trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
        event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict


def _drop_color_message(_: Any, __: str, event_dict: EventDict) -> EventDict:
    event_dict.pop("color_message", None)  # uvicorn's duplicate of the message
    return event_dict


def shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        temporal_fields,
        trace_fields,
        _drop_color_message,
    ]


def renderer(fmt: str) -> Processor:
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer()


def formatter(fmt: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """A logging.Formatter rendering standard-library records (uvicorn, SQLAlchemy, temporalio) like
    structlog's own lines."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer(fmt),
        ],
    )


def configure_logging(settings: Settings, *, stream: Any = None) -> None:
    """Route structlog and the standard library through one handler on the root logger.

    Idempotent, and it leaves other handlers (pytest's capture) alone: only our own is replaced.
    """
    # Our lines are rendered from their message and fields only: no thread and process lookups for
    # each record (~10 us a line). Process-wide, like the rest of this set-up: a record's threadName
    # and processName are None in every process that configures logging this way.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler: logging.StreamHandler[Any] = (
        logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    )
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(settings.log_format))
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)  # uvicorn's own dictConfig gave these handlers: ours instead
        uv.handlers.clear()
        uv.propagate = True
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    _quiet_sdk_message_suffix()


class _CurrentStderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever `sys.stderr` is at the time (test runners swap it per test)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _quiet_sdk_message_suffix() -> None:
    """The SDK appends the workflow/activity info to the message text; it is in fields already."""
    from temporalio import activity, workflow

    workflow.logger.workflow_info_on_message = False
    activity.logger.activity_info_on_message = False


def bind(**values: Any) -> None:
    """Bind values on every line logged from this context on (a task, a request)."""
    structlog.contextvars.bind_contextvars(**values)
