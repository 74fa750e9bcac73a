"""A real local Ray cluster for the serve tests: own temp dir and port, auth off, tiny replicas."""

from __future__ import annotations

import os
import socket
import time

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_DEDUP_LOGS", "1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    import ray
    from ray import serve

    temp_dir = tmp_path_factory.mktemp("ray")
    port = free_port()
    os.environ["BLENDER_TEST_METRICS_PORT"] = str(free_port())
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=str(temp_dir), namespace="blender-serve-tests",
             log_to_driver=False, _metrics_export_port=int(os.environ["BLENDER_TEST_METRICS_PORT"]))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()
    ray.shutdown()


def app_args(ranker_dir, fuser_dir, **ensemble):
    generators = ensemble.pop("generators", None) or [
        {"name": "alpha", "backend": "scripted", "options": {"template": "alpha says: {prompt}"}},
        {"name": "beta", "backend": "scripted", "options": {"template": "beta gives a longer answer about {prompt}"}},
        {"name": "broken", "backend": "scripted", "options": {"fail": True, "error_message": "simulated outage"}},
        {"name": "slow", "backend": "scripted", "options": {"template": "slow: {prompt}", "latency_s": 30}},
    ]
    return {
        "ensemble": {
            "name": "blender",
            "generators": generators,
            "ranker": {"path": str(ranker_dir), "device": "cpu"},
            "fuser": {"path": str(fuser_dir), "device": "cpu", "max_new_tokens": 8, "num_beams": 1},
            "fusion": "always", "top_k": 2, "deadline_s": 2.0,
            **ensemble,
        },
        "deployments": {"ingress": {"ray_actor_options": {"num_cpus": 0}}},
        "limits": {"max_prompt_chars": 2000, "max_messages": 8, "max_tokens": 256, "max_candidates": 6},
    }


@pytest.fixture(scope="session")
def blender_app(ray_cluster, pairrm_original, gen_fuser_dir):
    """The 'blender' app at route '/', with a failing and a slow scripted base model."""
    from ray import serve

    from deployments.builder import build_app

    t0 = time.perf_counter()
    serve.run(build_app(app_args(pairrm_original, gen_fuser_dir)), name="blender", route_prefix="/")
    print(f"blender app ready in {time.perf_counter() - t0:.1f}s")
    return ray_cluster
