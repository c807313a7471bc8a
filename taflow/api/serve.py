"""Serving the API: uvicorn with `api_workers` processes, the one place that starts it.

`taflow api` calls `serve()`; the dev stack (`make run`) and the drill stack (drills, tests,
benchmarks) run `python -m taflow.api.serve [--host H] [--port P] [--log-level L] [--no-access-log]`.
The number of processes is the setting `api_workers` (TAFLOW_API_WORKERS), read by every process
alike, so each also knows its share of the connection budget (taflow.api.app.api_pool_share).

- 1: `uvicorn.run` in this very process, as before: no supervisor, metrics in memory
  (PROMETHEUS_MULTIPROC_DIR is dropped from the environment if it was set).
- More: this process is uvicorn's supervisor. It binds the port once and spawns that many worker
  processes, which share the listening socket (the kernel hands each connection to one of them) and
  are replaced if one dies. Before they start, PROMETHEUS_MULTIPROC_DIR names an empty directory
  (taflow.observability.multiprocess) where each writes its counters and histograms for `/metrics`
  to sum. Setting it from Python is enough here: the workers are spawned (fresh interpreters), not
  forked, so they import prometheus_client after it is set.

Stop it with SIGTERM or SIGINT (the supervisor stops its workers first). A SIGKILL must reach the
whole process group (taflow.devstack.stop_process): workers whose supervisor was killed alone keep
serving, and keep the port.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from taflow.observability.multiprocess import MULTIPROCESS_DIR_ENV, multiprocess_dir
from taflow.settings import Settings

APP = "taflow.api.app:create_app"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve(settings: Settings, *, host: str | None = None, port: int | None = None, **uvicorn: Any) -> None:
    """Serve the API until stopped; `uvicorn` options (e.g. `log_level`, `access_log`) pass through."""
    import uvicorn as server

    where: dict[str, Any] = {"host": host or settings.api_host, "port": port or settings.api_port}
    if settings.api_workers == 1:
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        server.run(APP, factory=True, **where, **uvicorn)
        return
    with multiprocess_dir():
        server.run(APP, factory=True, workers=settings.api_workers, **where, **uvicorn)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m taflow.api.serve", description="Serve the API in TAFLOW_API_WORKERS processes."
    )
    parser.add_argument("--host", help="default: TAFLOW_API_HOST")
    parser.add_argument("--port", type=int, help="default: TAFLOW_API_PORT")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="uvicorn's own log level")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false")
    args = parser.parse_args(argv)
    options: dict[str, Any] = {"access_log": args.access_log}
    if args.log_level:
        options["log_level"] = args.log_level
    serve(Settings(), host=args.host, port=args.port, **options)


if __name__ == "__main__":
    main()
