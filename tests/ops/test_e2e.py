"""End to end on the dev server, through HTTP and a real worker: the case file in the Temporal UI
(visibility on every search attribute at every stage, summary, memo, current details), the metrics
of the API and of the worker, and one trace from the HTTP call through the workflow to activities.

One stack for the module: a client on a Temporal runtime that serves Prometheus metrics, with the
SDK's tracing interceptor on an in-memory exporter; the API instrumented with the same provider; a
worker (the production one, with an SLA clock that breaches ASEC review in two seconds).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import Client, WorkflowHandle

from taflow.devstack import free_port
from taflow.domain.models import RequestState
from taflow.observability.business import worker_runtime
from taflow.observability.tracing import client_interceptors, instrument_app, make_provider
from taflow.settings import Settings
from taflow.temporal import DATA_CONVERTER, workflow_id
from tests.api.conftest import Api, draft, make_app
from tests.ops.conftest import Auth, at_stage, hurried_worker, visible, wait_for, wait_visible

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    client: Client
    api: httpx.AsyncClient
    spans: InMemorySpanExporter
    provider: TracerProvider
    worker_metrics_url: str
    task_queue: str


@pytest.fixture(scope="module")
async def stack(
    temporal_client: Client,
    database_url: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    keys: dict[str, str],
) -> AsyncIterator[Stack]:
    port = free_port()
    runtime = worker_runtime(Settings(worker_metrics_port=port))
    spans = InMemorySpanExporter()
    provider = make_provider("taflow-test", spans, batch=False)
    client = await Client.connect(
        temporal_client.service_client.config.target_host,
        namespace=temporal_client.namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime,
        interceptors=client_interceptors(Settings(), provider),
    )
    task_queue = f"tq-ops-{uuid.uuid4().hex[:8]}"
    app = make_app(database_url, engine, client, task_queue)
    instrument_app(app, provider)
    async with hurried_worker(client, sessionmaker, task_queue), Api(app) as api:
        yield Stack(client, api, spans, provider, f"http://127.0.0.1:{port}/metrics", task_queue)
    provider.shutdown()


async def submit(api: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any]) -> str:
    resp = await api.post("/v1/requests", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    rid: str = resp.json()["id"]
    return rid


async def post(api: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    resp = await api.post(path, json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    meta = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(meta.current_details)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def clauses_for(state: RequestState, duplicate: str | None) -> list[str]:
    """One visibility clause per search attribute, with the value the workflow's own state implies."""
    out = [f"TaStage = '{state.stage.value}'", f"TaMemberState = '{state.member_state.value}'"]
    out += [f"TaTopics = '{t.value}'" for t in state.draft.topics]
    due = state.sla_due_at
    if due is None:
        out.append("TaSlaDueAt IS NULL")
    else:
        second = timedelta(seconds=1)
        out.append(f"TaSlaDueAt BETWEEN '{rfc3339(due - second)}' AND '{rfc3339(due + second)}'")
    out.append(f"TaEscalated = {str(state.escalated).lower()}")
    out.append(f"TaDuplicate = '{duplicate}'" if duplicate else "TaDuplicate IS NULL")
    return out


async def expect_visible(
    client: Client,
    wf_id: str,
    stage: str,
    *,
    duplicate: str | None = None,
    until: Callable[[RequestState], bool] = lambda s: True,
) -> RequestState:
    """Each search attribute, queried on its own as an ops person would in the UI's search box, finds
    the request at `stage`, with the values of its state (polled: visibility is eventually consistent)."""
    handle = client.get_workflow_handle(wf_id)
    deadline = asyncio.get_running_loop().time() + 20
    missing: list[str] = []
    while True:
        state = await handle.query("status", result_type=RequestState)
        if state.stage.value == stage and until(state):
            missing = []
            for clause in clauses_for(state, duplicate):
                if wf_id not in await visible(client, f"WorkflowId = '{wf_id}' AND {clause}"):
                    missing.append(clause)
            if not missing:
                return state
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{wf_id} at {state.stage.value} (want {stage}): not found by {missing}")
        await asyncio.sleep(0.2)


async def test_the_request_reads_like_a_case_file(stack: Stack, auth: Auth) -> None:
    api, client = stack.api, stack.client
    tl, asec, rocb = auth("TL/requester"), auth("ASEC/asec_reviewer"), auth("ROCB-AP/rocb_officer")
    token = uuid.uuid4().hex[:6]
    body = draft(
        title=f"Detector dog teams against wildlife smuggling at Dili seaport {token}",
        description="Train handlers and dogs to find pangolin scales and ivory in sea containers.",
        topics=["wildlife-trafficking", "risk-management"],
        client_reference=f"TL-CUS-{token}",
    )
    r1 = await submit(api, tl, body)
    wf1 = workflow_id(r1)
    handle = client.get_workflow_handle(wf1)
    state = await expect_visible(client, wf1, "asec_review", until=lambda s: s.sla_due_at is not None)

    description = await handle.describe()
    summary = await description.static_summary()
    assert summary is not None and r1 in summary and "(TL)" in summary and "Detector dog teams" in summary
    assert await description.memo_value("client_reference") == f"TL-CUS-{token}"
    assert await description.memo_value("member_state") == "TL"
    details = await current_details(handle)
    assert "Waiting for ASEC review" in details and "Due " in details
    state = await expect_visible(client, wf1, "asec_review", until=lambda s: s.escalated)  # SLA breached
    assert state.sla_due_at is not None
    assert "(ESCALATED)" in await current_details(handle)

    changes = {"decision": "request_changes", "comment": "Which ports?"}
    await post(api, f"/v1/requests/{r1}/asec-review", changes, asec)
    state = await expect_visible(client, wf1, "changes_requested", until=lambda s: s.sla_due_at is not None)
    assert not state.escalated
    assert "amendment" in await current_details(handle)
    amended = body | {"topics": ["wildlife-trafficking", "illicit-trade"]}
    await post(api, f"/v1/requests/{r1}/amendment", {"draft": amended, "comment": "Dili and Com"}, tl)
    await expect_visible(client, wf1, "asec_review", until=lambda s: s.sla_due_at is not None)

    # the same need again from the same state: its dedup check points at the first
    r2 = await submit(api, tl, amended | {"client_reference": f"TL-CUS-{token}-bis"})
    wf2 = workflow_id(r2)
    await expect_visible(client, wf2, "asec_review", duplicate=r1)
    assert "Dedup verdict" in await current_details(client.get_workflow_handle(wf2))
    duplicate = {"decision": "duplicate", "duplicate_of": r1, "comment": "Same need as the first"}
    await post(api, f"/v1/requests/{r2}/asec-review", duplicate, asec)
    state = await expect_visible(client, wf2, "duplicate", duplicate=r1)
    assert state.sla_due_at is None and not state.escalated

    await post(api, f"/v1/requests/{r1}/asec-review", {"decision": "approve", "comment": "aligned"}, asec)
    state = await expect_visible(client, wf1, "rocb_matching", until=lambda s: s.sla_due_at is not None)
    assert not state.escalated
    await post(api, f"/v1/requests/{r1}/rocb-match", {"decision": "no_match", "comment": "no funds"}, rocb)
    await expect_visible(client, wf1, "on_hold")
    assert "donor round" in await current_details(handle)
    await post(api, f"/v1/requests/{r1}/resumption", {"comment": "new round"}, asec)
    await expect_visible(client, wf1, "rocb_matching")
    match = {"decision": "match", "expert_ids": ["EXP-001"], "comment": "speaks Tetum"}
    await post(api, f"/v1/requests/{r1}/rocb-match", match, rocb)
    state = await expect_visible(client, wf1, "expert_invitation", until=lambda s: s.invitation is not None)
    assert "Invited EXP-001" in await current_details(handle)
    assert state.invitation is not None
    await post(api, f"/v1/invitations/{state.invitation.id}/response", {"accept": True}, rocb)
    await expect_visible(client, wf1, "scheduled")
    report = {"report": "Twelve handlers trained.", "delivered_on": str(datetime.now(UTC).date())}
    await post(api, f"/v1/requests/{r1}/completion", report, rocb)
    state = await expect_visible(client, wf1, "completed")
    assert state.sla_due_at is None and not state.escalated
    await wait_visible(client, wf1, "ExecutionStatus = 'Completed'")
    assert "Stage: completed" in await current_details(handle)


# ------------------------------------------------------------------------------------------ metrics


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def total(points: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    return sum(v for n, lab, v in points if n == name and all(lab.get(k) == x for k, x in labels.items()))


async def test_metrics_of_the_api_and_the_worker(stack: Stack, auth: Auth) -> None:
    api = stack.api
    kh, asec, rocb = auth("KH/requester"), auth("ASEC/asec_reviewer"), auth("ROCB-AP/rocb_officer")
    token = uuid.uuid4().hex[:6]
    body = draft(
        title=f"Container scanner image analysis with machine learning {token}",
        description="Build a model that flags anomalies in non-intrusive inspection images.",
        topics=["nii-scanners", "smart-customs-ai"],
    )
    m1 = await submit(api, kh, body)
    await at_stage(api, m1, asec, "asec_review")
    m2 = await submit(api, kh, body)  # a duplicate candidate for the metrics
    await wait_for(api, m2, asec, lambda b: b["stage"] == "asec_review" and b["duplicate_candidates"])
    await wait_for(api, m1, asec, lambda b: any(e["kind"] == "escalated" for e in b["timeline"]))
    await post(api, f"/v1/requests/{m1}/asec-review", {"decision": "approve", "comment": "ok"}, asec)
    experts = {"decision": "match", "expert_ids": ["EXP-001", "EXP-002"], "comment": "both know NII"}
    await post(api, f"/v1/requests/{m1}/rocb-match", experts, rocb)
    first = await wait_for(api, m1, rocb, lambda b: b["invitation"] is not None)
    declined = {"accept": False, "comment": "on mission"}
    await post(api, f"/v1/invitations/{first['invitation']['id']}/response", declined, rocb)
    second = await wait_for(api, m1, rocb, lambda b: (b["invitation"] or {}).get("expert_id") == "EXP-002")
    await post(api, f"/v1/invitations/{second['invitation']['id']}/response", {"accept": True}, rocb)
    await at_stage(api, m1, rocb, "scheduled")
    assert (await api.get(f"/v1/requests/{m1}")).status_code == 401
    assert (await api.get("/no/such/route")).status_code == 404

    resp = await api.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    http = samples(resp.text)
    assert total(http, "taflow_http_requests_total", method="POST", route="/v1/requests", status="201") >= 2
    by_route = dict(method="GET", route="/v1/requests/{request_id}")
    assert total(http, "taflow_http_requests_total", status="200", **by_route) >= 3
    assert total(http, "taflow_http_requests_total", status="401", **by_route) >= 1  # errors by route
    assert total(http, "taflow_http_requests_total", route="<unmatched>", status="404") >= 1
    assert total(http, "taflow_http_request_duration_seconds_count", **by_route) >= 4
    assert total(http, "taflow_requests_by_stage", stage="scheduled") >= 1
    assert total(http, "taflow_requests_by_stage", stage="asec_review") >= 1
    assert {lab["stage"] for n, lab, _ in http if n == "taflow_requests_by_stage"} >= {"completed", "on_hold"}

    async with httpx.AsyncClient() as plain:
        worker = samples((await plain.get(stack.worker_metrics_url)).text)
    q = {"task_queue": stack.task_queue}
    assert total(worker, "taflow_stage_entries_total", stage="asec_review", **q) >= 2
    assert total(worker, "taflow_stage_entries_total", stage="scheduled", **q) >= 1
    assert total(worker, "taflow_stage_duration_seconds_count", stage="asec_review", **q) >= 1
    assert total(worker, "taflow_stage_duration_seconds_sum", stage="asec_review", **q) >= 2.0
    assert total(worker, "taflow_sla_breaches_total", stage="asec_review", action="escalated", **q) >= 1
    assert total(worker, "taflow_dedup_checks_total", **q) >= 2
    assert total(worker, "taflow_dedup_candidates_found_total", **q) >= 1
    assert total(worker, "taflow_invitations_total", outcome="sent", **q) >= 2
    assert total(worker, "taflow_invitations_total", outcome="declined", **q) >= 1
    assert total(worker, "taflow_invitations_total", outcome="accepted", **q) >= 1
    # the SDK's own metrics on the same endpoint (durations in seconds, names without a unit suffix)
    assert total(worker, "temporal_activity_execution_latency_count", **q) >= 1
    assert total(worker, "temporal_workflow_task_execution_latency_count", **q) >= 1
    await post(api, f"/v1/requests/{m2}/cancellation", {"reason": "tidy"}, asec)


# ------------------------------------------------------------------------------------------- traces


def by_workflow(spans: tuple[ReadableSpan, ...], wf_id: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("temporalWorkflowID") == wf_id]


async def test_one_trace_from_the_http_call_through_the_workflow_to_its_activities(
    stack: Stack, auth: Auth
) -> None:
    api = stack.api
    la, asec = auth("LA/requester"), auth("ASEC/asec_reviewer")
    token = uuid.uuid4().hex[:6]
    body = draft(
        title=f"Rules of origin verification visits for the rice sector {token}",
        description="Joint verification visits with exporting administrations on origin claims.",
        topics=["rules-of-origin"],
    )
    stack.spans.clear()
    rid = await submit(api, la, body)
    wf_id = workflow_id(rid)
    await wait_for(api, rid, asec, lambda b: b["stage"] == "asec_review" and b["sla_due_at"])
    await post(api, f"/v1/requests/{rid}/asec-review", {"decision": "approve", "comment": "ok"}, asec)
    stack.provider.force_flush()
    spans = stack.spans.get_finished_spans()

    server = [s for s in spans if s.name == "POST /v1/requests" and s.parent is None]
    assert len(server) == 1, [s.name for s in spans]
    trace_id = server[0].context.trace_id
    ours = by_workflow(spans, wf_id)
    names = {s.name for s in ours if s.context.trace_id == trace_id}
    assert {
        "StartWorkflow:TARequestWorkflow",
        "RunWorkflow:TARequestWorkflow",
        "StartActivity:check_duplicates",
        "RunActivity:check_duplicates",
        "StartActivity:project_request",
        "RunActivity:project_request",
        "RunActivity:start_clock",
    } <= names, names
    start = next(s for s in ours if s.name == "StartWorkflow:TARequestWorkflow")
    by_id = {s.context.span_id: s for s in spans}
    parent = by_id.get(start.parent.span_id) if start.parent else None
    while parent is not None and parent.parent is not None:  # up to the HTTP server span
        parent = by_id.get(parent.parent.span_id)
    assert parent is server[0]
    # the decision is its own HTTP call and trace; the workflow's update handler, in the request's
    # trace, links to it
    review = [s for s in spans if s.name == "POST /v1/requests/{request_id}/asec-review" and s.parent is None]
    assert len(review) == 1
    review_trace = review[0].context.trace_id
    assert "StartWorkflowUpdate:review" in {s.name for s in ours if s.context.trace_id == review_trace}
    handled = [s for s in ours if s.name == "HandleUpdate:review"]
    assert handled and handled[0].context.trace_id == trace_id
    assert review_trace in {link.context.trace_id for link in handled[0].links}
