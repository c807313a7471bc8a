"""Prometheus metrics of the API (prometheus_client, its own registry, served at the API's `/metrics`).

  taflow_http_requests_total{method, route, status}     request rate and errors by route template
  taflow_http_request_duration_seconds{method, route}   latency by route template
  taflow_requests_by_stage{stage}                        requests in each stage now (read model, at scrape)

The worker's metrics (the SDK's and the business metrics) are in `taflow.observability.business`.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import Scope

from taflow.domain.enums import Stage

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
REQUESTS_BY_STAGE = Gauge(
    "taflow_requests_by_stage",
    "TA requests in each stage now, from the read model",
    ["stage"],
    registry=API_REGISTRY,
)
UNMATCHED_ROUTE = "<unmatched>"


def route_template(scope: Scope) -> str:
    """The matched route's template (`/v1/requests/{request_id}`), never the raw path: bounded labels."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


def observe_http(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


def set_requests_by_stage(counts: dict[str, int]) -> None:
    for stage in Stage:
        REQUESTS_BY_STAGE.labels(stage.value).set(counts.get(stage.value, 0))
