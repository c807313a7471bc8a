"""A throw-away TAflow stack for drills and benchmarks, every part of which can be killed and restarted.

Unlike `taflow dev`, nothing here touches the developer's stack: PostgreSQL runs on a fresh data
directory (unix socket inside it), the Temporal dev server and the API listen on free ports of
127.0.0.1 only, and the worker and the API are child processes in their own process groups (so a
`kill -9` reaches exactly them, the API's uvicorn workers included). Every method blocks; async
callers use `asyncio.to_thread`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx
from sqlalchemy.engine import make_url

from taflow.devstack import (
    EmbeddedPostgres,
    Process,
    api_command,
    find_temporal_binary,
    free_port,
    running_embedded_postgres_url,
    spawn,
    start_embedded_postgres,
    stop_embedded_postgres,
    stop_process,
    wait_for_port,
    worker_command,
)
from taflow.domain.search_attributes import dev_server_flags
from taflow.observability.multiprocess import MULTIPROCESS_DIR_ENV

HOST = "127.0.0.1"
NAMESPACE = "default"
START_TIMEOUT_S = 60.0
_SETUP = threading.Lock()
"""embedded-postgres and Alembic keep process-wide state: stacks started from threads take turns."""


@dataclass
class Child:
    name: str
    process: Process
    log: Path


@dataclass
class Stack:
    """PostgreSQL + Temporal dev server + worker + API, all ours, under `root`."""

    root: Path
    task_queue: str = "taflow"
    temporal_persistent: bool = True
    """Keep Temporal's state in `root/temporal.sqlite` (needed to survive a dev-server restart)."""
    worker_env: Mapping[str, str] = field(default_factory=dict)
    api_env: Mapping[str, str] = field(default_factory=dict)
    out: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False

    temporal_port: int = 0
    api_port: int = 0
    database_url: str = ""
    credentials: dict[str, str] = field(default_factory=dict)
    _pg: EmbeddedPostgres | None = None
    _temporal: Child | None = None
    _worker: Child | None = None
    _api: Child | None = None
    _own_root: bool = False

    @classmethod
    def in_temp_dir(cls, prefix: str = "taflow-drill-", **kwargs: object) -> Stack:
        root = Path(tempfile.mkdtemp(prefix=prefix))
        stack = cls(root=root, **kwargs)  # type: ignore[arg-type]
        stack._own_root = True
        return stack

    # ------------------------------------------------------------------ addresses

    @property
    def temporal_address(self) -> str:
        return f"{HOST}:{self.temporal_port}"

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.api_port}"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def temporal_db(self) -> Path:
        return self.root / "temporal.sqlite"

    @property
    def api_metrics_dir(self) -> Path:
        """The API processes' metrics files when there are several (emptied at each start of the API;
        here rather than in a temporary directory of the API's own, which a SIGKILL would leave)."""
        return self.root / "api-metrics"

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"[stack] {msg}", file=self.out, flush=True)

    # ------------------------------------------------------------------ whole stack

    def start(self) -> None:
        """PostgreSQL, schema, reference data and keys, Temporal, worker, API; ready when this returns."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.temporal_port = self.temporal_port or free_port()
        self.api_port = self.api_port or free_port()
        with _SETUP:
            self.start_postgres()
            self.prepare_database()
        self.start_temporal()
        self.start_worker()
        self.start_api()

    def stop(self) -> None:
        """Stop everything that runs; remove the temporary directory if we made it."""
        for child in (self._api, self._worker, self._temporal):
            if child is not None:
                stop_process(child.process, sig=signal.SIGTERM, timeout=10.0)
        self._api = self._worker = self._temporal = None
        if self._pg is not None:
            try:
                with _SETUP:
                    stop_embedded_postgres(self._pg)
            except (subprocess.SubprocessError, OSError) as exc:
                self.say(f"could not stop PostgreSQL cleanly: {exc}")
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ PostgreSQL

    def start_postgres(self) -> None:
        """First start: initdb and start. Later: `pg_ctl start` on the same data directory and socket,
        so the URL every process holds stays valid."""
        if self._pg is None:
            self._pg = start_embedded_postgres(self.pgdata)
            self.database_url = self._pg.url
            self.say(f"PostgreSQL up ({self.pgdata})")
            return
        if running_embedded_postgres_url(self.pgdata) is not None:
            return
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        socket_dir = str(make_url(self.database_url).query["host"])
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-w",
                "-o",
                '-h ""',
                "-o",
                f"-k {socket_dir}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            user=self._pg.system_user,
            check=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            timeout=60,
        )
        self.say("PostgreSQL restarted")

    def stop_postgres(self) -> None:
        """`pg_ctl stop -m fast`: every client connection is cut."""
        assert self._pg is not None
        stop_embedded_postgres(self._pg)
        self.say("PostgreSQL stopped")

    def prepare_database(self) -> None:
        from taflow.db.migrate import upgrade
        from taflow.devstack import seed_and_write_credentials

        upgrade(self.database_url)
        self.credentials = asyncio.run(
            seed_and_write_credentials(self.database_url, self.root / "dev-credentials.json")
        )

    # ------------------------------------------------------------------ Temporal

    def temporal_command(self) -> list[str]:
        cmd = [
            str(find_temporal_binary()),
            "server",
            "start-dev",
            "--ip",
            HOST,
            "--port",
            str(self.temporal_port),
            "--headless",
            "--namespace",
            NAMESPACE,
            "--log-level",
            "warn",
            *dev_server_flags(),
        ]
        if self.temporal_persistent:
            cmd += ["--db-filename", str(self.temporal_db)]
        return cmd

    def start_temporal(self) -> None:
        log = self.root / "temporal.log"
        with log.open("ab") as fh:
            proc = spawn(self.temporal_command(), output=fh)
        self._temporal = Child("temporal", proc, log)
        wait_for_port(HOST, self.temporal_port, timeout=START_TIMEOUT_S, proc=proc, name="temporal")
        asyncio.run(self._wait_for_namespace())
        self.say(f"Temporal dev server up on {self.temporal_address}")

    async def _wait_for_namespace(self) -> None:
        from temporalio.client import Client

        from taflow.devstack import list_search_attributes
        from taflow.temporal import DATA_CONVERTER

        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client = await Client.connect(
                    self.temporal_address, namespace=NAMESPACE, data_converter=DATA_CONVERTER
                )
                if "TaStage" in await list_search_attributes(client, NAMESPACE):
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    def stop_temporal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self._temporal is not None:
            stop_process(self._temporal.process, sig=sig, timeout=20.0)
            self._temporal = None
            self.say(f"Temporal dev server stopped ({sig.name})")

    # ------------------------------------------------------------------ worker and API

    def child_env(self, extra: Mapping[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TAFLOW_DATABASE_URL=self.database_url,
            TAFLOW_TEMPORAL_ADDRESS=self.temporal_address,
            TAFLOW_TEMPORAL_NAMESPACE=NAMESPACE,
            TAFLOW_TASK_QUEUE=self.task_queue,
            TAFLOW_DATA_DIR=str(self.root),
            TAFLOW_API_HOST=HOST,
            TAFLOW_API_PORT=str(self.api_port),
            TAFLOW_PUBLIC_BASE_URL=self.api_url,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def _spawn(self, name: str, cmd: list[str], env: Mapping[str, str]) -> Child:
        log = self.root / f"{name}.log"
        with log.open("ab") as fh:
            return Child(name, spawn(cmd, env=env, output=fh), log)

    def start_worker(self) -> None:
        self._worker = self._spawn("worker", worker_command(), self.child_env(self.worker_env))
        self.say(f"worker started (pid {self._worker.process.pid})")

    @property
    def worker_pid(self) -> int | None:
        return self._worker.process.pid if self._worker is not None else None

    @property
    def temporal_pid(self) -> int | None:
        return self._temporal.process.pid if self._temporal is not None else None

    @property
    def api_pid(self) -> int | None:
        """The API's first process: the only one (TAFLOW_API_WORKERS=1), else uvicorn's supervisor,
        whose children are the workers that serve (and leader of their process group)."""
        return self._api.process.pid if self._api is not None else None

    def kill_worker(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self._worker is not None:
            stop_process(self._worker.process, sig=sig, timeout=15.0)
            self._worker = None
            self.say(f"worker stopped ({sig.name})")

    def api_command(self) -> list[str]:
        """The API in TAFLOW_API_WORKERS processes (from `api_env` or our environment; default 1)."""
        return api_command(HOST, self.api_port, "--no-access-log", "--log-level", "warning")

    def start_api(self) -> None:
        env = self.child_env({MULTIPROCESS_DIR_ENV: str(self.api_metrics_dir), **self.api_env})
        self._api = self._spawn("api", self.api_command(), env)
        self.wait_for_api()
        self.say(f"API up on {self.api_url} (pid {self._api.process.pid})")

    def wait_for_api(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._api is not None and self._api.process.poll() is not None:
                raise RuntimeError(f"the API exited early; see {self._api.log}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API was not healthy within {timeout:.0f} s")
            time.sleep(0.1)

    def kill_api(self, sig: signal.Signals = signal.SIGKILL) -> None:
        """Signal the API's whole process group (supervisor and workers); back when none of it runs."""
        if self._api is not None:
            stop_process(self._api.process, sig=sig, timeout=10.0)
            self._api = None
            self.say(f"API stopped ({sig.name})")

    def check_alive(self) -> None:
        """Raise if a child we started has died on its own."""
        for child in (self._temporal, self._worker, self._api):
            if child is not None and child.process.poll() is not None:
                raise RuntimeError(
                    f"the {child.name} exited with {child.process.returncode}; see {child.log}"
                )
