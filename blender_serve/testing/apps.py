"""A small served ensemble for tests and benchmarks: scripted base models over tiny real checkpoints."""

from __future__ import annotations

from typing import Any, Optional

from blender_serve.ports import free_port

__all__ = ["free_port", "scripted_app_args", "fault_app_args", "FAULT_MODELS", "GARBAGE_MODELS"]


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


#: The models every fault scenario asks: each answers after 50-100 ms.
FAULT_MODELS = ["alpha", "beta", "gamma"]

#: Base models that misbehave, selected per request: empty, a 1 MB answer, a crash on every call,
#: a call that never ends, an engine that dies after 3 calls (and fails its health check).
GARBAGE_MODELS = {
    "empty": {"responses": ["   "]},
    "huge": {"responses": ["lorem ipsum " * 87_382]},  # ~1 MB
    "raiser": {"fail": True, "error_message": "engine exploded"},
    "hanger": {"hang": True},
    "mortal": {"die_after_calls": 3},
    "slowpoke": {"template": " ".join(["word"] * 60), "token_latency_s": 0.1},
}


def fault_app_args(ranker_dir, fuser_dir, *, ingress_replicas: int = 2, extra_generators: Optional[list[dict]] = None,
                   **ensemble: Any) -> dict:
    """``build_app`` args for fault and load scenarios: three well-behaved scripted models with
    realistic jittered latency, the misbehaving ones of GARBAGE_MODELS (asked only when a request
    names them in ``blender.models``), the tiny ranker and fuser, short deadlines and timeouts,
    health checks every second, and ``ingress_replicas`` ingress replicas."""
    good = [{"name": n, "backend": "scripted",
             "options": {"template": f"{n} answers {{prompt}} (call {{call}})", "latency_s": 0.05, "jitter_s": 0.05, "seed": k}}
            for k, n in enumerate(FAULT_MODELS)]
    bad = [{"name": n, "backend": "scripted", "options": o} for n, o in GARBAGE_MODELS.items()]
    generators = good + bad + list(extra_generators or [])
    fast = {"ray_actor_options": {"num_cpus": 0}, "health_check_period_s": 1.0, "health_check_timeout_s": 5.0}
    args = scripted_app_args(ranker_dir, fuser_dir, generators=generators, **{
        "fusion": "always", "top_k": 2, "deadline_s": 2.0, "rank_timeout_s": 3.0, "fuse_timeout_s": 5.0, **ensemble})
    args["ensemble"]["fuser"]["max_new_tokens"] = 2000  # the cap; requests send max_tokens (a disconnect test needs long fusions)
    args["deployments"] = {g["name"]: fast for g in generators}
    args["deployments"].update(ranker=fast, fuser=fast, ingress={**fast, "num_replicas": ingress_replicas})
    args["limits"]["max_candidates"] = 8
    return args
