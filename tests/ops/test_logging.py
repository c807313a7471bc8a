"""JSON logs: every line one object; the API's carry the request id, the worker's the workflow id and
run id (activities through the worker's interceptor, workflows through `workflow.logger`)."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.worker import Worker

from taflow.observability.logs import configure_logging
from taflow.observability.worker import LogContextInterceptor
from taflow.settings import Settings
from tests.api.conftest import Api
from tests.ops.noisy import NoisyWorkflow, noisy_activity


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(Settings(log_level="DEBUG"), stream=buffer)
    yield buffer
    configure_logging(Settings())  # back to stderr


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


async def test_worker_lines_carry_workflow_and_run_ids(
    temporal_client: Client, task_queue: str, log_lines: io.StringIO
) -> None:
    wf_id = f"noisy-{uuid.uuid4().hex[:8]}"
    async with Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[NoisyWorkflow],
        activities=[noisy_activity],
        interceptors=[LogContextInterceptor()],
    ):
        handle = await temporal_client.start_workflow(
            NoisyWorkflow.run, "ivory", id=wf_id, task_queue=task_queue
        )
        assert await handle.result() == "IVORY"
    run_id = handle.result_run_id
    ours = [line for line in lines(log_lines) if line.get("workflow_id") == wf_id]
    events = {line["event"] for line in ours}
    assert {"workflow line about ivory", "structlog line", "stdlib line ivory", "sdk activity line"} <= events
    for line in ours:
        assert line["run_id"] == run_id, line
        assert line["timestamp"] and line["level"]
    by_event = {line["event"]: line for line in ours}
    assert by_event["structlog line"]["activity_type"] == "noisy_activity"
    assert by_event["structlog line"]["word"] == "ivory"
    assert by_event["workflow line about ivory"]["workflow_type"] == "NoisyWorkflow"


async def test_api_lines_carry_the_request_id(
    database_url: str, engine: Any, temporal_client: Client, log_lines: io.StringIO
) -> None:
    from taflow.api.app import create_app

    app = create_app(Settings(database_url=database_url), client=temporal_client, engine=engine)
    configure_logging(Settings(log_level="DEBUG"), stream=log_lines)  # create_app configured stderr
    async with Api(app) as api:
        given = await api.get("/v1/requests/TA-1999-000001", headers={"X-Request-ID": "ops-trace-42"})
        fresh = await api.get("/v1/inbox")
        bogus = await api.get("/v1/inbox", headers={"X-Request-ID": "no spaces allowed"})
    assert given.headers["X-Request-ID"] == "ops-trace-42"
    assert len(fresh.headers["X-Request-ID"]) == 32
    assert bogus.headers["X-Request-ID"] != "no spaces allowed"
    access = [line for line in lines(log_lines) if line["event"] == "http request"]
    assert [a["request_id"] for a in access] == [
        "ops-trace-42",
        fresh.headers["X-Request-ID"],
        bogus.headers["X-Request-ID"],
    ]
    assert access[0]["route"] == "/v1/requests/{request_id}" and access[0]["status"] == 401
    assert all(isinstance(httpx.codes(a["status"]), int) for a in access)
