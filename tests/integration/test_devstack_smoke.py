"""The dev stack's real moving parts: the Temporal dev server from the wheel (twice on one SQLite
file), and process-group clean-up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path

from temporalio.client import Client

from taflow.devstack import (
    ensure_search_attributes,
    find_temporal_binary,
    free_port,
    list_search_attributes,
    port_accepts,
    spawn,
    start_temporal_dev_server,
    stop_process,
    temporal_db_file,
    wait_for_port,
    wanted_search_attributes,
)
from taflow.settings import Settings


async def _registered(address: str, namespace: str) -> dict[str, int]:
    client = await Client.connect(address, namespace=namespace)
    return {k: int(v) for k, v in (await list_search_attributes(client, namespace)).items()}


def test_dev_server_registers_search_attributes_and_reuses_its_sqlite_file(tmp_path: Path) -> None:
    started = time.monotonic()
    settings = Settings(data_dir=tmp_path, temporal_port=free_port(), temporal_ui_port=free_port())
    address = f"localhost:{settings.temporal_port}"
    wanted = {k: int(v) for k, v in wanted_search_attributes().items()}

    for run in (1, 2):
        proc = start_temporal_dev_server(settings)
        try:
            wait_for_port("localhost", settings.temporal_ui_port, timeout=10, proc=proc, name="Web UI")
            assert asyncio.run(ensure_search_attributes(address, settings.temporal_namespace)) == []
            registered = asyncio.run(_registered(address, settings.temporal_namespace))
            assert wanted.items() <= registered.items()
        finally:
            stop_process(proc)
        assert proc.returncode is not None
        assert not port_accepts("localhost", settings.temporal_port)
        assert temporal_db_file(settings).exists(), f"run {run} left no SQLite file"

    assert time.monotonic() - started < 30


def test_missing_search_attributes_are_registered_through_the_operator_service() -> None:
    port = free_port()
    bare = [str(find_temporal_binary()), "server", "start-dev", "--headless", "--port", str(port)]
    proc = spawn(bare, output=subprocess.DEVNULL)
    try:
        wait_for_port("localhost", port, timeout=20, proc=proc, name="temporal")
        added = asyncio.run(ensure_search_attributes(f"localhost:{port}", "default"))
        assert added == sorted(wanted_search_attributes())
        assert asyncio.run(ensure_search_attributes(f"localhost:{port}", "default")) == []
    finally:
        stop_process(proc)


def test_stop_process_takes_the_whole_process_group_down(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    # The leader ignores SIGTERM and has a grandchild: both must be gone after stop_process.
    script = f"trap '' TERM; sleep 60 & echo $! > {pid_file}; wait"
    proc = spawn(["sh", "-c", script])
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pid_file.read_text())
    assert os.getpgid(grandchild) == proc.pid

    stop_process(proc, timeout=0.5)

    assert proc.returncode is not None
    time.sleep(0.1)
    ps = subprocess.run(["ps", "-o", "stat=", "-p", str(grandchild)], capture_output=True, text=True)
    assert ps.stdout.strip() in ("", "Z"), "the grandchild survived"
