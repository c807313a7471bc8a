"""Business metrics of the worker, on the Temporal SDK's own Prometheus endpoint.

The worker's runtime serves `/metrics` on `worker_metrics_host:worker_metrics_port`: the SDK's
`temporal_*` metrics, and these, which activities record through `activity.metric_meter()` (never
workflow code). The projection activity sees every transition:

  taflow_stage_entries_total{stage}                      requests entering each stage
  taflow_stage_duration_seconds{stage}                   time a request spent in a stage it left
  taflow_sla_breaches_total{stage, action}               final deadlines passed (escalated / expired)
  taflow_sla_reminders_total{stage}                      reminders sent
  taflow_dedup_checks_total{verdict}                     dedup checks by verdict
  taflow_dedup_candidates_found_total{verdict}           candidates those checks attached
  taflow_invitations_total{outcome}                      invitations sent / accepted / declined / expired
  taflow_refused_signals_total{signal}                   decision signals the workflow refused

A retried projection activity may count a transition twice (the read model itself is idempotent):
use these for rates and alerts, the read model for exact figures. This module is imported (passed
through) by workflow modules: keep it light, no web or ORM imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from taflow.domain.enums import Stage
from taflow.domain.models import AuditEvent, Projection

if TYPE_CHECKING:
    from taflow.settings import Settings

STAGE_DURATION = "taflow_stage_duration_seconds"
STAGE_DURATION_BUCKETS = [
    1.0,
    10.0,
    60.0,
    600.0,
    3600.0,
    6 * 3600.0,
    86400.0,
    3 * 86400.0,
    7 * 86400.0,
    14 * 86400.0,
    30 * 86400.0,
    60 * 86400.0,
    90 * 86400.0,
]
"""Time in stage runs from seconds (dedup) to months (awaiting a report)."""


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime exporting the SDK's metrics (and the business metrics) for Prometheus.

    None when `worker_metrics_port` is 0. Raises ValueError when the port is taken.
    """
    if not settings.worker_metrics_port:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"{settings.worker_metrics_host}:{settings.worker_metrics_port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
                histogram_bucket_overrides={STAGE_DURATION: STAGE_DURATION_BUCKETS},
            ),
        )
    )


@dataclass(frozen=True)
class Observation:
    """One business metric data point derived from a projected audit event."""

    metric: str
    labels: dict[str, str]
    value: float = 1.0


def _stage_in_force(events: list[AuditEvent], seq: int) -> tuple[Stage | None, datetime | None]:
    """The stage a request was in just before event `seq`, and when it entered it."""
    for e in reversed(events):
        if e.seq < seq and e.to_stage is not None:
            return e.to_stage, e.at
    return None, None


INVITATION_OUTCOMES = {
    "invitation_sent": "sent",
    "expert_accepted": "accepted",
    "invitation_declined": "declined",
    "invitation_expired": "expired",
}


def observations(projection: Projection) -> list[Observation]:
    """What the newly projected events say, as business metric data points (a pure function)."""
    events = projection.state.events
    if projection.events_omitted:  # a lean projection: the stage entry it needs comes beside the new events
        entered = projection.stage_entered
        events = ([entered] if entered is not None else []) + projection.new_events
    out: list[Observation] = []
    for e in projection.new_events:
        before, entered_at = _stage_in_force(events, e.seq)
        if e.to_stage is not None:
            out.append(Observation("taflow_stage_entries", {"stage": e.to_stage.value}))
            if before is not None and entered_at is not None:
                seconds = max((e.at - entered_at).total_seconds(), 0.0)
                out.append(Observation(STAGE_DURATION, {"stage": before.value}, seconds))
        stage = (e.from_stage or before or projection.state.stage).value
        if e.kind in ("escalated", "expired"):
            out.append(Observation("taflow_sla_breaches", {"stage": stage, "action": e.kind}))
        elif e.kind == "reminder":
            out.append(Observation("taflow_sla_reminders", {"stage": stage}))
        elif e.kind == "dedup_checked":
            verdict = str(e.data.get("verdict", "unknown"))
            found = len(e.data.get("candidates") or [])
            out.append(Observation("taflow_dedup_checks", {"verdict": verdict}))
            out.append(Observation("taflow_dedup_candidates_found", {"verdict": verdict}, float(found)))
        elif e.kind in INVITATION_OUTCOMES:
            out.append(Observation("taflow_invitations", {"outcome": INVITATION_OUTCOMES[e.kind]}))
        elif e.kind == "refused":
            out.append(Observation("taflow_refused_signals", {"signal": str(e.data.get("signal", ""))}))
    return out


DESCRIPTIONS = {
    "taflow_stage_entries": "TA requests entering each stage",
    STAGE_DURATION: "Time a TA request spent in a stage, observed when it leaves the stage",
    "taflow_sla_breaches": "SLA final deadlines passed, by stage and action (escalated, expired)",
    "taflow_sla_reminders": "SLA reminders, by stage",
    "taflow_dedup_checks": "Duplicate checks, by verdict",
    "taflow_dedup_candidates_found": "Duplicate candidates attached by the checks, by verdict",
    "taflow_invitations": "Expert invitations by outcome (sent, accepted, declined, expired)",
    "taflow_refused_signals": "Decision signals refused by the workflow (wrong stage, actor...)",
}


def record(meter: MetricMeter, points: list[Observation]) -> None:
    for p in points:
        if p.metric == STAGE_DURATION:
            meter.create_histogram_float(p.metric, DESCRIPTIONS[p.metric], "s").record(p.value, p.labels)
        else:
            meter.create_counter(p.metric, DESCRIPTIONS[p.metric]).add(int(p.value), p.labels)


def record_projection(projection: Projection) -> None:
    """Called by the projection activity once the read model has the events."""
    if activity.in_activity():
        record(activity.metric_meter(), observations(projection))
