"""Orchestration overhead of the served ensemble: latency against the known critical path.

Every component is scripted with a fixed latency, so the critical path of one request is exact:
base models 0.2 s (all at once: fan-out should cost the slowest, not the sum) + ranker 0.05 s +
fuser 0.05 s = 0.30 s. For N = 2, 4, 8 base models, at concurrency 1 and 16, over HTTP (httpx,
OpenAI-style chat completions) and over a Serve handle (``Ingress.blend``), in one run on a local
Ray; reported as p50 and p99 and their ratios to the critical path (targets 1.05 and 1.10).
``--batch-wait 0.005,0`` deploys one app per value of the ranker's batch_wait_timeout_s side by
side and measures them in turns, so the comparison shares the machine's drift.

    python -m bench orchestration [--models 2,4,8] [--requests 40] [--batch-wait S[,S...]] [--quick]

Writes bench_results/orchestration.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from blender_serve.testing.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

MODEL_S, RANK_S, FUSE_S = 0.2, 0.05, 0.05
CRITICAL_S = MODEL_S + RANK_S + FUSE_S


def app_args(n: int, batch_wait_s: float | None = None) -> dict:
    gens = [{"name": f"m{i}", "backend": "scripted", "options": {"template": f"model {i} answers {{prompt}}", "latency_s": MODEL_S}}
            for i in range(n)]
    zero = {"ray_actor_options": {"num_cpus": 0}}
    batching = {} if batch_wait_s is None else {"ranker_batching": {"batch_wait_timeout_s": batch_wait_s}}
    return {**batching,
            "ensemble": {"generators": gens,
                         "ranker": {"kind": "scripted", "path": "scripted", "options": {"latency_s": RANK_S}},
                         "fuser": {"kind": "scripted", "path": "scripted", "options": {"latency_s": FUSE_S}},
                         "fusion": "always", "top_k": 2},
            "deployments": {**{g["name"]: zero for g in gens}, "ranker": zero, "ingress": zero,
                            "fuser": {**zero, "max_ongoing_requests": 64}}}


async def timed(call, n: int, concurrency: int) -> list[float]:
    """Latencies of ``n`` calls, ``concurrency`` at a time."""
    queue = list(range(n))
    out: list[float] = []

    async def worker():
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            await call(i)
            out.append(time.perf_counter() - t0)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return out


async def measure(port: int, apps: list[str], n: int, concurrency: int) -> dict[tuple[str, str], list[float]]:
    """Latencies per (app, interface) of ``n`` calls each, ``concurrency`` at a time, after 4 warm-up
    calls; with several apps they take turns chunk by chunk, each leading in turn."""
    import httpx
    from ray import serve

    from deployments.protocol import BlendRequest

    def over_http(client, app):
        async def call(i):
            r = await client.post(f"/{app}/v1/chat/completions",
                                  json={"model": "blender", "messages": [{"role": "user", "content": f"q{i}"}]})
            r.raise_for_status()
            assert r.json()["blender"]["fused"]
        return call

    def over_handle(handle):
        async def call(i):
            result = await handle.blend.remote(BlendRequest(messages=[{"role": "user", "content": f"q{i}"}]))
            assert result.fused
        return call

    chunk = n if len(apps) == 1 else max(concurrency, 5)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:
        calls = {}
        for app in apps:
            calls[(app, "http")] = over_http(client, app)
            calls[(app, "handle")] = over_handle(serve.get_app_handle(app))
        out: dict[tuple[str, str], list[float]] = {key: [] for key in calls}
        for iface in ("http", "handle"):
            for app in apps:
                await timed(calls[(app, iface)], 4, 1)  # warm-up
            for turn, done in enumerate(range(0, n, chunk)):
                shift = turn % len(apps)
                for app in apps[shift:] + apps[:shift]:
                    out[(app, iface)] += await timed(calls[(app, iface)], min(chunk, n - done), concurrency)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2,4,8", help="numbers of base models, comma-separated")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=40, help="requests per (N, concurrency, interface)")
    parser.add_argument("--batch-wait", default=None,
                        help="the ranker's batch_wait_timeout_s (default: the app's, deployments.config.RankerBatching); "
                             "several, comma-separated: one app each, side by side, measured in turns")
    parser.add_argument("--quick", action="store_true", help="smoke test: N = 2, 8 requests")
    args = parser.parse_args()
    if args.quick:
        args.models, args.requests = "2", 8

    import ray
    from ray import serve

    from blender_serve.testing.apps import free_port
    from deployments.builder import build_app

    tmp = tempfile.mkdtemp(prefix="bso-", dir="/tmp")
    port = free_port()
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    waits = [None] if args.batch_wait is None else [float(x) for x in args.batch_wait.split(",")]
    rows = []
    try:
        for n in [int(x) for x in args.models.split(",")]:
            apps = {f"orch{n}" if w is None else f"orch{n}w{k}": w for k, w in enumerate(waits)}
            for app, wait in apps.items():
                serve.run(build_app(app_args(n, wait)), name=app, route_prefix=f"/{app}")
            for c in [int(x) for x in args.concurrency.split(",")]:
                lat = asyncio.run(measure(port, list(apps), args.requests, c))
                for (app, iface), xs in lat.items():
                    p50, p99 = percentile(xs, 50), percentile(xs, 99)
                    rows.append({"models": n, "concurrency": c, "interface": iface, "batch_wait_s": apps[app],
                                 "p50_s": p50, "p99_s": p99, "p50_ratio": p50 / CRITICAL_S, "p99_ratio": p99 / CRITICAL_S,
                                 "requests": len(xs)})
                    wait = "" if apps[app] is None else f" wait={apps[app]:g}s"
                    print(f"N={n:<2} concurrency={c:<3} {iface:6}{wait}  p50 {p50:.3f}s ({p50 / CRITICAL_S:.3f}x)  "
                          f"p99 {p99:.3f}s ({p99 / CRITICAL_S:.3f}x)", flush=True)
            for app in apps:
                serve.delete(app)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    dest = ROOT / "bench_results" / "orchestration.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"critical_path_s": CRITICAL_S, "rows": rows}, indent=2))
    print(f"critical path {CRITICAL_S:.2f}s; saved {dest}")


if __name__ == "__main__":
    main()
