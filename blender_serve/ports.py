"""A local TCP port for a server started next (the demo's app, test apps, a llama.cpp server)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

# Ray's workers take ports 10002-19999 by default; the kernel hands out ports from its ephemeral range
# (32768-60999 on Linux) to every outgoing connection and every bind to port 0, Ray's own included.
_RAY_WORKER_PORTS_END = 19999
#: The ports this process handed out.
_GIVEN: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that nothing started later takes by chance.

    A port from the kernel's ephemeral range (what binding port 0 gives) is free only until the next
    outgoing connection or port-0 bind takes it, and a Ray cluster started right after makes many:
    a proxy once failed "to bind to address '127.0.0.1:38011'" that way. So the port comes from the gap
    between Ray's worker ports and the ephemeral range, where only an explicit bind lands.
    """
    low = _RAY_WORKER_PORTS_END + 1
    high = _ephemeral_range()[0] - 1
    candidates = random.sample(range(low, high + 1), min(64, high - low + 1)) if high > low else []
    for port in candidates:
        if port in _GIVEN:  # handed out already and maybe not bound yet: a second server would collide
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket() as s:  # no gap on this machine: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
