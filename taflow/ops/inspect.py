"""`taflow requests show ID`: a request's state and what its history says, for ops at a terminal."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionDescription

from taflow.domain.models import RequestState
from taflow.domain.search_attributes import ALL_SEARCH_ATTRIBUTES
from taflow.ops.state import QUERY_TIMEOUT, fetch_state, resolve_workflow_id

NOTABLE = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "activity failed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT: "activity timed out",
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED: "workflow task failed",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "child started",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
}


def _event_type_name(value: int) -> str:
    return EventType.Name(value).removeprefix("EVENT_TYPE_")  # type: ignore[arg-type]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def search_attributes(description: WorkflowExecutionDescription) -> dict[str, Any]:
    typed = description.typed_search_attributes
    out: dict[str, Any] = {}
    for key in ALL_SEARCH_ATTRIBUTES:
        value = typed.get(key)
        if value is not None:
            out[key.name] = value.isoformat() if isinstance(value, datetime) else value
    return out


async def history_summary(client: Client, wf_id: str, run_id: str | None) -> dict[str, Any]:
    """Counts by event type, the last failure, and the signals and updates received, in order."""
    history = await client.get_workflow_handle(wf_id, run_id=run_id).fetch_history()
    counts: Counter[str] = Counter()
    notable: list[dict[str, Any]] = []
    activities: Counter[str] = Counter()
    last_failure: str | None = None
    for event in history.events:
        counts[_event_type_name(event.event_type)] += 1
        kind = NOTABLE.get(event.event_type)
        at = event.event_time.ToDatetime().isoformat() + "Z"
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            activities[event.activity_task_scheduled_event_attributes.activity_type.name] += 1
        if kind == "signal":
            notable.append(
                {
                    "at": at,
                    "what": kind,
                    "name": event.workflow_execution_signaled_event_attributes.signal_name,
                }
            )
        elif kind == "update":
            name = event.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
            notable.append({"at": at, "what": kind, "name": name})
        elif kind in ("activity failed", "workflow task failed"):
            attrs = (
                event.activity_task_failed_event_attributes
                if kind == "activity failed"
                else event.workflow_task_failed_event_attributes
            )
            last_failure = attrs.failure.message
            notable.append({"at": at, "what": kind, "name": last_failure[:200]})
    return {
        "events": len(history.events),
        "by_type": dict(sorted(counts.items())),
        "activities": dict(sorted(activities.items())),
        "signals_and_updates": [n for n in notable if n["what"] in ("signal", "update")],
        "failures": [n for n in notable if n["what"] not in ("signal", "update", "timer", "child started")],
        "last_failure": last_failure,
    }


def state_summary(state: RequestState) -> dict[str, Any]:
    s = state
    return {
        "request_id": s.request_id,
        "member_state": s.member_state.value,
        "title": s.draft.title,
        "client_reference": s.draft.client_reference,
        "stage": s.stage.value,
        "version": s.version,
        "sla_due_at": _iso(s.sla_due_at),
        "escalated": s.escalated,
        "held": s.held,
        "duplicate_of": s.duplicate_of,
        "dedup": s.dedup.verdict.value if s.dedup else None,
        "invitation": (
            {"id": s.invitation.id, "expert_id": s.invitation.expert_id, "status": s.invitation.status.value}
            if s.invitation
            else None
        ),
        "runs": s.runs,
        "timeline": [
            {
                "seq": e.seq,
                "at": e.at.isoformat(),
                "kind": e.kind,
                "actor": f"{e.actor.organisation}/{e.actor.role.value}/{e.actor.subject}",
                "from": e.from_stage.value if e.from_stage else None,
                "to": e.to_stage.value if e.to_stage else None,
                "comment": e.comment,
            }
            for e in s.events
        ],
    }


async def request_report(client: Client, ref: str) -> dict[str, Any]:
    """Everything ops need to judge a request: the workflow, its state, its history in brief."""
    wf_id = resolve_workflow_id(ref)
    handle = client.get_workflow_handle(wf_id)
    description = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
    workflow: dict[str, Any] = {
        "workflow_id": wf_id,
        "run_id": description.run_id,
        "type": description.workflow_type,
        "status": description.status.name if description.status else None,
        "task_queue": description.task_queue,
        "started": _iso(description.start_time),
        "closed": _iso(description.close_time),
        "history_length": description.history_length,
        "summary": await description.static_summary(),
        "memo": dict(await description.memo()),
        "search_attributes": search_attributes(description),
    }
    report: dict[str, Any] = {"workflow": workflow}
    if wf_id.startswith("ta-request-"):
        try:
            report["state"] = state_summary(await fetch_state(client, wf_id, description))
        except Exception as exc:  # no worker to answer, say: show the rest
            report["state_error"] = f"{type(exc).__name__}: {exc}"
    report["history"] = await history_summary(client, wf_id, description.run_id)
    return report


def render(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    wf = report["workflow"]
    lines = [
        f"{wf['workflow_id']}  run {wf['run_id']}  {wf['status']}",
        f"  type      {wf['type']} on task queue {wf['task_queue']}",
        f"  summary   {wf['summary']}",
        f"  started   {wf['started']}" + (f"   closed {wf['closed']}" if wf["closed"] else ""),
        f"  memo      {wf['memo']}",
        f"  search    {wf['search_attributes']}",
    ]
    state = report.get("state")
    if state:
        lines += [
            f"  stage     {state['stage']}  (version {state['version']}, run {state['runs']})",
            f"  request   {state['request_id']} ({state['member_state']}): {state['title']}"
            + (f"  [ref {state['client_reference']}]" if state["client_reference"] else ""),
        ]
        if state["sla_due_at"]:
            lines.append(f"  due       {state['sla_due_at']}" + ("  ESCALATED" if state["escalated"] else ""))
        if state["held"]:
            lines.append("  held      clocks stopped")
        if state["invitation"]:
            lines.append(f"  invited   {state['invitation']}")
        lines.append("  timeline")
        for e in state["timeline"]:
            move = f" {e['from'] or ''}->{e['to']}" if e["to"] else ""
            comment = f"  {e['comment'][:80]}" if e["comment"] else ""
            lines.append(f"    {e['seq']:>3} {e['at']}  {e['kind']}{move}  by {e['actor']}{comment}")
    elif "state_error" in report:
        lines.append(f"  state     unavailable: {report['state_error']}")
    h = report["history"]
    lines.append(f"  history   {h['events']} events; activities {h['activities']}")
    for n in h["signals_and_updates"]:
        lines.append(f"    {n['at']}  {n['what']} {n['name']}")
    for n in h["failures"]:
        lines.append(f"    {n['at']}  {n['what']}: {n['name']}")
    return "\n".join(lines)
