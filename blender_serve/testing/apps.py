"""A small served ensemble for tests and benchmarks: scripted base models over tiny real checkpoints."""

from __future__ import annotations

import socket
from typing import Any, Optional

__all__ = ["free_port", "scripted_app_args"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DEFAULT_GENERATORS = [
    {"name": "alpha", "backend": "scripted", "options": {"template": "alpha says: {prompt}"}},
    {"name": "beta", "backend": "scripted", "options": {"template": "beta gives a longer answer about {prompt}"}},
    {"name": "broken", "backend": "scripted", "options": {"fail": True, "error_message": "simulated outage"}},
    {"name": "slow", "backend": "scripted", "options": {"template": "slow: {prompt}", "latency_s": 30}},
]


def scripted_app_args(ranker_dir, fuser_dir, generators: Optional[list[dict]] = None, **ensemble: Any) -> dict:
    """``build_app`` args: scripted base models (by default a good pair, a failing and a late one),
    a ranker and a fuser from the given checkpoint directories, every replica at 0 CPUs.

    ``ensemble`` keywords override the ensemble's fields (fusion, top_k, deadline_s...).
    """
    return {
        "ensemble": {
            "name": "blender",
            "generators": generators or DEFAULT_GENERATORS,
            "ranker": {"path": str(ranker_dir), "device": "cpu"},
            "fuser": {"path": str(fuser_dir), "device": "cpu", "max_new_tokens": 8, "num_beams": 1},
            "fusion": "always", "top_k": 2, "deadline_s": 2.0,
            **ensemble,
        },
        "deployments": {"ingress": {"ray_actor_options": {"num_cpus": 0}}},
        "limits": {"max_prompt_chars": 2000, "max_messages": 8, "max_tokens": 256, "max_candidates": 6},
    }
