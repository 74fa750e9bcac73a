"""Autoscaling is real: a slow base model (min 1 / max 3 replicas) scales up under a burst and back down after."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from blender_serve.testing.apps import scripted_app_args


def _running(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return status.replica_states.get("RUNNING", 0)


@pytest.fixture(scope="module")
def scaling_app(deploy, pairrm_original, gen_fuser_dir):
    args = scripted_app_args(pairrm_original, gen_fuser_dir, generators=[
        {"name": "slowpoke", "backend": "scripted", "options": {"template": "slow answer", "latency_s": 1.0}},
        {"name": "quick", "backend": "scripted", "options": {"template": "quick answer"}},
    ], fusion="never")
    args["deployments"]["slowpoke"] = {
        "autoscaling_config": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 1,
                               "upscale_delay_s": 0.5, "downscale_delay_s": 3, "metrics_interval_s": 0.5,
                               "look_back_period_s": 1},
        "max_ongoing_requests": 2,
        "ray_actor_options": {"num_cpus": 0},
    }
    return deploy(args, "scaling")


def test_slow_model_scales_up_under_a_burst_and_back_down(scaling_app):
    assert _running("scaling", "llm-slowpoke") == 1
    peak = 1

    async def burst():
        nonlocal peak
        async with httpx.AsyncClient(timeout=120) as client:
            async def one():
                r = await client.post(f"{scaling_app}/v1/chat/completions",
                                      json={"model": "slowpoke", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text

            done = asyncio.Event()

            async def watch():
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, await asyncio.to_thread(_running, "scaling", "llm-slowpoke"))
                    await asyncio.sleep(0.25)

            watcher = asyncio.create_task(watch())
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and peak < 3:  # bounded: at most 40 s of 12-request waves
                await asyncio.gather(*(one() for _ in range(12)))
            done.set()
            await watcher

    asyncio.run(burst())
    assert peak >= 2, "the slow deployment never scaled up under the burst"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _running("scaling", "llm-slowpoke") > 1:
        time.sleep(1)
    assert _running("scaling", "llm-slowpoke") == 1, "the slow deployment did not scale back down after the burst"
