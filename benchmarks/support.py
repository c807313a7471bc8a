"""Shared helpers of the `make bench` figures: scales, statistics, a throw-away stack, the raw worker,
RSS sampling, py-spy profiles and markdown tables.

Knobs (environment):
- BENCH_SCALE    multiplies every count (requests per run, rows, N waiting); default 1.
- BENCH_REPEATS  runs per figure (median and p95 are over these); default 5.
- BENCH_PROFILE  auto (default): when a figure misses its target, one extra (uncounted) run is
                 profiled with py-spy and the section shows where the API's and the worker's time
                 goes; 1: always; 0: never.
"""

from __future__ import annotations

import math
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taflow.devstack import spawn, stop_process
from taflow.drills.stack import Stack

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ROOT / "benchmarks" / "profiles"


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def scale() -> float:
    return env_float("BENCH_SCALE", 1.0)


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, round(n * scale()))


def repeats(default: int = 5) -> int:
    return max(1, int(env_float("BENCH_REPEATS", default)))


def profiling(missed: bool = False) -> bool:
    """BENCH_PROFILE: `auto` (default) profiles a figure whose target was missed, `1` always, `0` never."""
    mode = os.environ.get("BENCH_PROFILE", "auto")
    return mode == "1" or (mode == "auto" and missed)


# ---------------------------------------------------------------------------- statistics


def p95(samples: Sequence[float]) -> float:
    """Nearest-rank 95th percentile (with 5 runs: the largest)."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def p5(samples: Sequence[float]) -> float:
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(0.05 * len(ordered)) - 1)]


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "n": float(len(samples)),
        "median": statistics.median(samples),
        "p95": p95(samples),
        "min": min(samples),
        "max": max(samples),
    }


# ---------------------------------------------------------------------------- markdown


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; `align` is one char per column, l or r (default: first l, others r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def say(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- processes


async def copy_requests(conn: Any, records: Sequence[tuple[Any, ...]], columns: Sequence[str]) -> None:
    """COPY synthetic read-model rows without announcing each one (migration 0006's trigger is for
    the projection's writes; nobody waits on rows made up by a benchmark)."""
    await conn.execute("ALTER TABLE requests DISABLE TRIGGER requests_announce_change")
    try:
        for k in range(0, len(records), 20_000):
            await conn.copy_records_to_table("requests", records=records[k : k + 20_000], columns=columns)
    finally:
        await conn.execute("ALTER TABLE requests ENABLE TRIGGER requests_announce_change")


def bench_stack(**kwargs: Any) -> Stack:
    """A throw-away stack on free loopback ports; Temporal in memory unless asked otherwise."""
    kwargs.setdefault("temporal_persistent", False)
    kwargs.setdefault("quiet", True)
    return Stack.in_temp_dir(prefix="taflow-bench-", **kwargs)


@dataclass
class RawWorker:
    """`python -m benchmarks.raw_workflows`: the bare workflows on their own task queue, own process."""

    address: str
    task_queue: str
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.raw_workflows",
            "--address",
            self.address,
            "--task-queue",
            self.task_queue,
        ]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        with self.log.open("ab") as fh:
            self.process = spawn(cmd, env=env, output=fh)

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, sig=signal.SIGINT, timeout=10.0)
            self.process = None


@dataclass
class RssSampler:
    """Samples a process's resident set size every `interval` s in a thread (psutil)."""

    pid: int
    interval: float = 0.5
    samples: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss_mib(self) -> float | None:
        import psutil

        try:
            return float(psutil.Process(self.pid).memory_info().rss) / 2**20
        except psutil.Error:
            return None

    def start(self) -> RssSampler:
        def loop() -> None:
            while not self._stop.is_set():
                value = self.rss_mib()
                if value is not None:
                    self.samples.append(value)
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> list[float]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples


# ---------------------------------------------------------------------------- profiles


def py_spy() -> Path | None:
    beside = Path(sys.executable).parent / "py-spy"
    return beside if beside.exists() else None


@dataclass
class Profile:
    """`py-spy record --format raw` of one process and its children (`--subprocesses`: the API's
    uvicorn workers, whose samples add up in one file) for the length of a run."""

    name: str
    pid: int
    out: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self, seconds: int) -> bool:
        binary = py_spy()
        if binary is None:
            say("py-spy is not installed in the venv: no profile")
            return False
        self.out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(binary),
            "record",
            "--pid",
            str(self.pid),
            "--duration",
            str(seconds),
            "--rate",
            "100",
            "--format",
            "raw",
            "--nonblocking",
            "--subprocesses",
            "-o",
            str(self.out),
        ]
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # py-spy writes what it has on Ctrl-C
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None


IDLE_FRAMES = frozenset(
    {
        ("EpollSelector.select", "selectors.py"),
        ("Condition.wait", "threading.py"),
        ("Event.wait", "threading.py"),
        ("_worker", "concurrent/futures/thread.py"),
        ("Queue.get", "queue.py"),
    }
)
"""Leaf frames that are a thread waiting, not working (py-spy's idle detection misses some in VMs)."""

PACKAGES = (
    ("taflow/", "taflow (our code)"),
    ("temporalio/", "temporalio SDK"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("asyncpg/", "asyncpg"),
    ("pydantic", "pydantic"),
    ("fastapi/", "FastAPI"),
    ("starlette/", "Starlette"),
    ("uvicorn/", "uvicorn"),
    ("h11/", "h11"),
    ("httptools", "httptools"),
    ("structlog/", "structlog"),
    ("opentelemetry/", "OpenTelemetry"),
    ("prometheus_client/", "prometheus_client"),
    ("asyncio/", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("json/", "json"),
    ("logging/", "logging"),
)


def _package(frame: str) -> str:
    for needle, label in PACKAGES:
        if needle in frame:
            return label
    return "other"


PROCESS_FRAMES = re.compile(r'^(?:process \d+:".*?"(?:;|$))+')
"""The roots `--subprocesses` puts on each stack (`process <pid>:"<command line>"`, parent first):
left out, the samples of every process add up (a command line may hold `;`, the frame separator)."""


def where_time_goes(raw: Path, top: int = 12) -> str:
    """From py-spy's collapsed stacks: share of samples by package (self time) and the hottest
    frames of our own code (inclusive)."""
    if not raw.exists() or raw.stat().st_size == 0:
        return f"(no samples in {raw.name})"
    by_package: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    self_frames: Counter[str] = Counter()
    total = 0
    idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = PROCESS_FRAMES.sub("", stack).split(";")
        leaf = frames[-1]
        if not leaf or any(  # not leaf: no Python frame under the process's root (not running Python)
            leaf.startswith(f"{name} (") and where in leaf for name, where in IDLE_FRAMES
        ):
            idle += count
            continue
        total += count
        by_package[_package(leaf)] += count
        self_frames[_short(leaf)] += count
        for f in dict.fromkeys(
            fr for fr in frames if "taflow/" in fr and not fr.startswith(("<module>", "main ", "serve ("))
        ):
            ours[_short(f)] += count
    if total == 0:
        return f"(no samples in {raw.name})"
    parts = [
        f"{total:,} busy samples at 100 Hz ({idle:,} idle ones left out: waiting in select, locks, queues).",
        "",
        table(["self time in", "share"], [(k, f"{v / total:.0%}") for k, v in by_package.most_common(top)]),
        "",
        table(
            ["hottest frames (self)", "share"],
            [(k, f"{v / total:.0%}") for k, v in self_frames.most_common(8)],
        ),
    ]
    if ours:
        parts += [
            "",
            table(
                ["our frames (inclusive)", "share"],
                [(k, f"{v / total:.0%}") for k, v in ours.most_common(top)],
            ),
        ]
    return "\n".join(parts)


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py)`, with the package path where it helps."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    if "site-packages/" in path:
        path = path.split("site-packages/", 1)[1]
    elif "/taflow/" in path:
        path = "taflow/" + path.split("/taflow/", 1)[1]
    elif "/lib/python3" in path:
        path = path.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"`{name}` ({path})".replace("|", "\\|")


def elapsed(started: float) -> float:
    return time.perf_counter() - started


# ---------------------------------------------------------------------------- CPU accounting


def stack_processes(stack: Stack, extra: dict[str, int] | None = None) -> dict[str, list[int]]:
    """Pids by role: the API (uvicorn's supervisor and its workers: call this once the API is up),
    the worker, the Temporal dev server, PostgreSQL's postmaster, us."""
    import psutil

    roles: dict[str, list[int]] = {"load generator (this process)": [os.getpid()]}
    if stack.api_pid:
        roles["API (uvicorn)"] = process_tree(stack.api_pid)
    if stack.worker_pid:
        roles["worker"] = [stack.worker_pid]
    if stack.temporal_pid:
        roles["Temporal dev server"] = [stack.temporal_pid]
    pgdata = str(stack.pgdata)
    postmaster = [
        p.pid
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and pgdata in " ".join(p.info["cmdline"] or [])
    ]
    roles["PostgreSQL (all backends)"] = postmaster
    for name, pid in (extra or {}).items():
        roles[name] = [pid]
    return roles


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the API's uvicorn workers); just `pid` if it is gone."""
    import psutil

    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def cpu_seconds(roles: dict[str, list[int]]) -> dict[tuple[str, int], float]:
    """User+system CPU seconds so far, per (role, pid); PostgreSQL's backends are its children."""
    import psutil

    out: dict[tuple[str, int], float] = {}
    for role, pids in roles.items():
        for pid in pids:
            try:
                proc = psutil.Process(pid)
                procs = [proc, *proc.children(recursive=True)] if role.startswith("PostgreSQL") else [proc]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                out[(role, p.pid)] = t.user + t.system
    return out


@dataclass
class CpuMeter:
    """CPU seconds each part of the stack spends during a measured stretch."""

    roles: dict[str, list[int]]
    spent: Counter[str] = field(default_factory=Counter)
    _start: dict[tuple[str, int], float] = field(default_factory=dict)

    def __enter__(self) -> CpuMeter:
        self._start = cpu_seconds(self.roles)
        return self

    def __exit__(self, *exc: object) -> None:
        end = cpu_seconds(self.roles)
        for (role, pid), value in end.items():
            self.spent[role] += value - self._start.get((role, pid), 0.0)


def pair_ratios(ours: list[float], raw: list[float]) -> str:
    """Each of our runs against the raw run beside it (the same round): min, median and max ratio.
    The headline is the ratio of the medians; this says how far single pairs stray from it."""
    per_run = sorted(a / r for a, r in zip(ours, raw, strict=True))
    return f"min {per_run[0]:.2f}, median {statistics.median(per_run):.2f}, max {per_run[-1]:.2f}"


def cpu_extra(meters: dict[str, CpuMeter], units: dict[str, int], ours: str, raw: str, per: str) -> str:
    """One sentence: how much more CPU per unit our path spends than raw, and in which processes."""
    a = {r: 1000 * v / max(units[ours], 1) for r, v in meters[ours].spent.items()}
    b = {r: 1000 * v / max(units[raw], 1) for r, v in meters[raw].spent.items()}
    extra = {r: a.get(r, 0.0) - b.get(r, 0.0) for r in set(a) | set(b)}
    total_a, total_b = sum(a.values()), sum(b.values())
    parts = [
        f"{name} {ms:+.1f} ms"
        for name, ms in sorted(extra.items(), key=lambda kv: -abs(kv[1]))
        if abs(ms) >= 0.05
    ]
    return (
        f"Where the time goes: {ours} costs {total_a:.1f} ms of CPU per {per} against {total_b:.1f} ms for "
        f"{raw} (ratio of CPU {total_b / total_a if total_a else 0:.2f}); the difference by process: "
        + ", ".join(parts)
        + "."
    )


def cpu_table(meters: dict[str, CpuMeter], units: dict[str, int], per: str) -> str:
    """CPU ms per unit of work, per part of the stack, one column per measured path."""
    roles = sorted({r for m in meters.values() for r in m.spent}, key=lambda r: r)
    header = ["process", *[f"{name}: CPU ms per {per}" for name in meters]]
    rows = [
        (role, *[1000 * m.spent.get(role, 0.0) / max(units[name], 1) for name, m in meters.items()])
        for role in roles
    ]
    rows.append(
        ("**total**", *[1000 * sum(m.spent.values()) / max(units[name], 1) for name, m in meters.items()])
    )
    return table(header, rows)
