"""free_port gives a port that a later port-0 bind or outgoing connection cannot take by chance."""

import socket

from blender_serve import ports
from blender_serve.ports import free_port


def test_free_port_is_bindable_and_outside_the_kernels_ephemeral_range():
    low, high = ports._ephemeral_range()
    seen = set()
    for _ in range(20):
        port = free_port()
        assert not low <= port <= high, (port, low, high)
        assert port > ports._RAY_WORKER_PORTS_END  # Ray's workers take 10002-19999
        seen.add(port)
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert len(seen) == 20  # never the same port twice in one process, bound yet or not


def test_free_port_skips_a_port_in_use(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        taken = held.getsockname()[1]
        held.listen()
        monkeypatch.setattr(ports.random, "sample", lambda population, k: [taken, *population[:k - 1]])
        monkeypatch.setattr(ports, "_ephemeral_range", lambda: (32768, 60999))
        assert free_port() != taken
