"""`free_port`: a port for a server started next, never one outgoing connections may take meanwhile."""

from __future__ import annotations

import socket

import pytest

from taflow import devstack
from taflow.devstack import EPHEMERAL_RANGE_FILE, LISTEN_PORTS, free_port


def test_a_free_port_lies_below_the_kernels_ephemeral_range_and_binds() -> None:
    if not EPHEMERAL_RANGE_FILE.exists():
        pytest.skip("no ephemeral port range to stay out of (not Linux)")
    ephemeral_low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    ports = {free_port() for _ in range(20)}
    assert all(LISTEN_PORTS[0] <= p < min(LISTEN_PORTS[1], ephemeral_low) for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))  # really free


def test_a_busy_port_is_not_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy, socket.socket() as probe:
        taken = free_port()
        busy.bind(("127.0.0.1", taken))
        busy.listen()
        neighbour = taken - 1 if taken + 1 >= LISTEN_PORTS[1] else taken + 1
        try:
            probe.bind(("127.0.0.1", neighbour))
        except OSError:
            pytest.skip(f"port {neighbour} is in use here")
        probe.close()
        first = min(taken, neighbour)
        monkeypatch.setattr(devstack, "LISTEN_PORTS", (first, first + 2))  # the busy one and its neighbour
        assert {free_port() for _ in range(10)} == {neighbour}
