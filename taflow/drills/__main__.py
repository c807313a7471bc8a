"""`python -m taflow.drills` (`make drills`): start a throw-away stack, run the fault drills, print
`N submitted, N completed, 0 lost, 0 duplicated` for each, exit 1 if any drill lost or doubled anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from taflow.drills.run import DRILLS, DrillConfig, run_drills
from taflow.drills.stack import Stack


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the stack's processes are always stopped."""
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for s in old:
        signal.signal(s, _interrupt)
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m taflow.drills", description=__doc__)
    p.add_argument("drills", nargs="*", metavar="DRILL", help=f"any of {', '.join(DRILLS)} (default: all)")
    p.add_argument("--short", action="store_true", help="the small version `make test` runs")
    p.add_argument("-n", type=int, help="requests per drill (full: 200, short: 8)")
    p.add_argument("--concurrency", type=int, help="lifecycles in flight at once (full: 20)")
    p.add_argument("--pg-outage", type=float, help="seconds PostgreSQL stays down (full: 30, short: 5)")
    p.add_argument("--record-histories", type=Path, metavar="DIR", help="save one history per drill here")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the verdicts as JSON")
    p.add_argument("--keep", action="store_true", help="keep the stack's directory (logs) afterwards")
    args = p.parse_args(argv)
    unknown = [d for d in args.drills if d not in DRILLS]
    if unknown:
        p.error(f"unknown drill(s) {', '.join(unknown)}; choose from {', '.join(DRILLS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    from taflow.drills.checks import summary

    cfg = DrillConfig.short() if args.short else DrillConfig()
    over: dict[str, object] = {}
    if args.n:
        over["n"] = args.n
    if args.concurrency:
        over["concurrency"] = args.concurrency
    if args.pg_outage is not None:
        over["pg_outage_s"] = args.pg_outage
    if args.record_histories:
        over["record_dir"] = args.record_histories.resolve()
    if over:
        cfg = DrillConfig(**(cfg.__dict__ | over))
    names = list(args.drills) or list(DRILLS)
    started = time.monotonic()
    with stop_on_signals():
        stack = Stack.in_temp_dir()
        if args.keep:
            stack._own_root = False
        print(f"drills: {', '.join(names)}; {cfg.n} requests each, {stack.root}", flush=True)
        try:
            with stack:
                verdicts = asyncio.run(run_drills(names, stack, cfg, say=lambda m: print(m, flush=True)))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    print(f"\n{len(verdicts)} drill(s) in {time.monotonic() - started:.0f} s")
    for v in verdicts:
        print(f"  {v.drill:<17} {v.line()}{'' if v.ok else '  FAILED'}")
    if args.json:
        args.json.write_text(json.dumps([summary(v) for v in verdicts], indent=2) + "\n")
    return 0 if all(v.ok for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
