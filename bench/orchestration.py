"""Orchestration overhead of the served ensemble: latency against the known critical path.

Every component is scripted with a fixed latency, so the critical path of one request is exact:
base models 0.2 s (all at once: fan-out should cost the slowest, not the sum) + ranker 0.05 s +
fuser 0.05 s = 0.30 s. For N = 2, 4, 8 base models, at concurrency 1 and 16, over HTTP (httpx,
OpenAI-style chat completions) and over a Serve handle (``Ingress.blend``), in one run on a local
Ray; reported as p50 and p99 and their ratios to the critical path (targets 1.05 and 1.10).

    python -m bench orchestration [--models 2,4,8] [--requests 40]

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


def app_args(n: int) -> dict:
    gens = [{"name": f"m{i}", "backend": "scripted", "options": {"template": f"model {i} answers {{prompt}}", "latency_s": MODEL_S}}
            for i in range(n)]
    zero = {"ray_actor_options": {"num_cpus": 0}}
    return {"ensemble": {"generators": gens,
                         "ranker": {"kind": "scripted", "path": "scripted", "options": {"latency_s": RANK_S}},
                         "fuser": {"kind": "scripted", "path": "scripted", "options": {"latency_s": FUSE_S}},
                         "fusion": "always", "top_k": 2},
            "deployments": {**{g["name"]: zero for g in gens}, "ranker": zero, "ingress": zero,
                            "fuser": {**zero, "max_ongoing_requests": 64}}}


async def timed(call, n: int, concurrency: int) -> list[float]:
    """Latencies of ``n`` calls, ``concurrency`` at a time (after 4 warm-up calls)."""
    for _ in range(4):
        await call(-1)
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


async def measure(url: str, app: str, n: int, concurrency: int) -> dict[str, list[float]]:
    import httpx
    from ray import serve

    from deployments.protocol import BlendRequest

    handle = serve.get_app_handle(app)
    async with httpx.AsyncClient(base_url=url, timeout=60,
                                 limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)) as client:
        async def over_http(i):
            r = await client.post("/v1/chat/completions", json={"model": "blender", "messages": [{"role": "user", "content": f"q{i}"}]})
            r.raise_for_status()
            assert r.json()["blender"]["fused"]

        async def over_handle(i):
            result = await handle.blend.remote(BlendRequest(messages=[{"role": "user", "content": f"q{i}"}]))
            assert result.fused

        return {"http": await timed(over_http, n, concurrency), "handle": await timed(over_handle, n, concurrency)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="2,4,8", help="numbers of base models, comma-separated")
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--requests", type=int, default=40, help="requests per (N, concurrency, interface)")
    args = parser.parse_args()

    import ray
    from ray import serve

    from blender_serve.testing.apps import free_port
    from deployments.builder import build_app

    tmp = tempfile.mkdtemp(prefix="bso-", dir="/tmp")
    port = free_port()
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows = []
    try:
        for n in [int(x) for x in args.models.split(",")]:
            serve.run(build_app(app_args(n)), name=f"orch{n}", route_prefix=f"/orch{n}")
            for c in [int(x) for x in args.concurrency.split(",")]:
                lat = asyncio.run(measure(f"http://127.0.0.1:{port}/orch{n}", f"orch{n}", args.requests, c))
                for iface, xs in lat.items():
                    p50, p99 = percentile(xs, 50), percentile(xs, 99)
                    rows.append({"models": n, "concurrency": c, "interface": iface, "p50_s": p50, "p99_s": p99,
                                 "p50_ratio": p50 / CRITICAL_S, "p99_ratio": p99 / CRITICAL_S, "requests": len(xs)})
                    print(f"N={n:<2} concurrency={c:<3} {iface:6}  p50 {p50:.3f}s ({p50 / CRITICAL_S:.3f}x)  "
                          f"p99 {p99:.3f}s ({p99 / CRITICAL_S:.3f}x)", flush=True)
            serve.delete(f"orch{n}")
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
