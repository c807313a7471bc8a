"""Prometheus metrics of the API (prometheus_client, its own registry, served at the API's `/metrics`).

  taflow_http_requests_total{method, route, status}     request rate and errors by route template
  taflow_http_request_duration_seconds{method, route}   latency by route template
  taflow_requests_by_stage{stage}                        requests in each stage now (read model, at scrape)

With several API processes (`api_workers` > 1) prometheus_client runs in its multiprocess mode: the
launcher (taflow.api.serve) sets PROMETHEUS_MULTIPROC_DIR before the processes start, each process
writes its counters and histograms to its own files there, and `/metrics`, whichever process answers
it, serves their sum (`MultiProcessCollector`). Only counters and histograms go to those files: a
gauge there would be kept per process (or need `mark_process_dead`), so the requests by stage are a
collector that the scrape fills from the read model, served beside the files, never summed.

The worker's metrics (the SDK's and the business metrics) are in `taflow.observability.business`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import Scope

from taflow.domain.enums import Stage
from taflow.observability.multiprocess import MULTIPROCESS_DIR_ENV

API_REGISTRY = CollectorRegistry(auto_describe=True)
HTTP_REQUESTS = Counter(
    "taflow_http_requests",
    "HTTP requests by method, route template and status code",
    ["method", "route", "status"],
    registry=API_REGISTRY,
)
HTTP_LATENCY = Histogram(
    "taflow_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=API_REGISTRY,
)
UNMATCHED_ROUTE = "<unmatched>"


class RequestsByStage(Collector):
    """`taflow_requests_by_stage`: the counts the last scrape read from the read model, every stage
    present (0 when empty). Before the first successful read (database down) it yields nothing."""

    NAME = "taflow_requests_by_stage"
    HELP = "TA requests in each stage now, from the read model"

    def __init__(self) -> None:
        self.counts: Mapping[str, int] | None = None

    def family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.NAME, self.HELP, labels=["stage"])

    def describe(self) -> Iterable[GaugeMetricFamily]:
        yield self.family()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        if self.counts is None:
            return
        gauge = self.family()
        for stage in Stage:
            gauge.add_metric([stage.value], self.counts.get(stage.value, 0))
        yield gauge


REQUESTS_BY_STAGE = RequestsByStage()
API_REGISTRY.register(REQUESTS_BY_STAGE)


@functools.cache
def served_registry() -> CollectorRegistry:
    """What `/metrics` serves: this process's registry, or (PROMETHEUS_MULTIPROC_DIR set) the sum of
    every API process's files plus the requests by stage. A registry of its own for the latter: the
    metrics of API_REGISTRY are already in the files, registering them too would export them twice."""
    if not os.environ.get(MULTIPROCESS_DIR_ENV):
        return API_REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(REQUESTS_BY_STAGE)
    return registry


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/requests/{request_id}`), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def set_requests_by_stage(counts: Mapping[str, int]) -> None:
    REQUESTS_BY_STAGE.counts = dict(counts)
