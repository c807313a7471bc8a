"""Operations: structured logs, Prometheus metrics and OpenTelemetry traces for the API and the worker.

- `logs`: structlog JSON on every line, with the request id (API), workflow id and run id (worker).
- `metrics`: the API's HTTP metrics and requests by stage, served at the API's `/metrics`;
  `multiprocess`: the directory where several API processes keep them (prometheus_client's mode).
- `business`: the worker's Temporal runtime (SDK metrics on its own Prometheus endpoint) and the
  business metrics activities record on it (light: workflow modules import it, passed through).
- `tracing`: the tracer provider, the SDK's TracingInterceptor and FastAPI instrumentation.
- `api` / `worker`: what each process installs (one call each from `create_app` and the worker).

See docs/operations.md.
"""
