"""The API in two uvicorn worker processes (TAFLOW_API_WORKERS=2), as the drill stack
runs it: both serve, `/metrics` sums what each counted and reports the requests by stage once, a
SIGKILL of the API takes all of it down and a restart serves again with fresh counters; and with
TAFLOW_API_WORKERS=1 one process serves alone, as before."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taflow.devstack import port_accepts
from taflow.domain.enums import Stage
from taflow.drills.stack import HOST, Stack

UNKNOWN = "/no/such/route"
"""Counted under route `<unmatched>`, which nothing else (health probes, scrapes) touches."""


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with Stack.in_temp_dir(
        prefix="taflow-api-workers-", quiet=True, api_env={"TAFLOW_API_WORKERS": "2"}
    ) as s:
        yield s


def listening(pid: int, port: int) -> bool:
    try:
        conns = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:  # gone
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in conns)


def api_processes(stack: Stack) -> list[int]:
    """The API's supervisor-or-only process and every descendant (workers, multiprocessing's
    resource tracker)."""
    assert stack.api_pid is not None
    return [stack.api_pid, *(p.pid for p in psutil.Process(stack.api_pid).children(recursive=True))]


def workers(stack: Stack) -> list[int]:
    """The processes that serve: the supervisor's children holding the listening socket."""
    return [pid for pid in api_processes(stack)[1:] if listening(pid, stack.api_port)]


def get(stack: Stack, path: str) -> httpx.Response:
    """On a connection of its own: the kernel hands each new connection to one of the workers."""
    return httpx.get(stack.api_url + path, timeout=10.0)


def scrape(stack: Stack) -> list[tuple[str, dict[str, str], float]]:
    text = get(stack, "/metrics").text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def unmatched(points: list[tuple[str, dict[str, str], float]]) -> float:
    return sum(
        v for n, lab, v in points if n == "taflow_http_requests_total" and lab["route"] == "<unmatched>"
    )


def wait_until_both_served(stack: Stack, pids: list[int]) -> None:
    """Each worker writes its counter file once it has served a call: both are then ready."""
    files = {f"counter_{pid}.db" for pid in pids}
    deadline = time.monotonic() + 20
    while not files <= {p.name for p in stack.api_metrics_dir.iterdir()}:
        assert time.monotonic() < deadline, "a worker served nothing"
        assert get(stack, "/healthz").status_code == 200


def test_two_workers_serve_and_metrics_add_up(stack: Stack) -> None:
    pids = workers(stack)
    assert len(pids) == 2 and stack.api_pid not in pids
    wait_until_both_served(stack, pids)
    assert unmatched(scrape(stack)) == 0

    # While one worker is stopped (as if busy), the other serves every call: ten each, for sure.
    for stopped in pids:
        os.kill(stopped, signal.SIGSTOP)
        try:
            assert all(get(stack, UNKNOWN).status_code == 404 for _ in range(10))
        finally:
            os.kill(stopped, signal.SIGCONT)

    points = scrape(stack)
    assert unmatched(points) == 20  # the sum over both processes, whichever answers the scrape
    durations = [v for n, lab, v in points if n == "taflow_http_request_duration_seconds_count"]
    assert sum(durations) >= 20 + 2  # and the histograms too (plus the health probes)

    by_stage = Counter(lab["stage"] for n, lab, _ in points if n == "taflow_requests_by_stage")
    assert by_stage == Counter(s.value for s in Stage)  # once per stage, not once per process
    families = [f.name for f in text_string_to_metric_families(get(stack, "/metrics").text)]
    assert families.count("taflow_requests_by_stage") == 1


def test_a_killed_api_leaves_nothing_behind_and_restarts(stack: Stack) -> None:
    before = api_processes(stack)
    assert len(before) >= 3  # supervisor and two workers

    stack.kill_api(signal.SIGKILL)

    assert not any(listening(pid, stack.api_port) for pid in before)
    assert not port_accepts(HOST, stack.api_port)
    stack.start_api()
    assert get(stack, "/healthz").status_code == 200
    assert len(workers(stack)) == 2
    assert unmatched(scrape(stack)) == 0  # a fresh directory: nothing counted by the killed processes


def test_one_worker_is_one_process_with_metrics_in_memory(stack: Stack) -> None:
    stack.kill_api(signal.SIGTERM)
    leftover = {p.name for p in stack.api_metrics_dir.iterdir()}
    stack.api_env = {"TAFLOW_API_WORKERS": "1"}
    try:
        stack.start_api()
        assert stack.api_pid is not None and listening(stack.api_pid, stack.api_port)
        assert psutil.Process(stack.api_pid).children(recursive=True) == []
        assert all(get(stack, UNKNOWN).status_code == 404 for _ in range(3))
        points = scrape(stack)
        assert unmatched(points) == 3
        assert {lab["stage"] for n, lab, _ in points if n == "taflow_requests_by_stage"} == {
            s.value for s in Stage
        }
        assert {p.name for p in stack.api_metrics_dir.iterdir()} == leftover  # no files written
    finally:
        stack.api_env = {"TAFLOW_API_WORKERS": "2"}
        stack.kill_api(signal.SIGKILL)
        stack.start_api()
