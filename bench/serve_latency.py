"""Served-app numbers on this machine: start time, memory, and p50 latency of one ensemble request
over HTTP (official openai client) and over a Serve handle, measured in one run.

    python -m bench serve_latency --app cpu        # configs/cpu.yaml: real SmolLM2 x3, MiniLM ranker, SmolLM2 fuser
    python -m bench serve_latency --app scripted   # scripted base models (fixed 50 ms latency), tiny ranker/fuser:
                                                        # the orchestration overhead of the serving layer itself

Writes bench_results/serve_latency_<app>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def scripted_args(tmp: Path) -> dict:
    from blender_serve.testing import tiny_models

    backbone = tiny_models.build_deberta_backbone(tmp / "bb")
    ranker = tiny_models.build_pairrm_original(tmp / "ranker", backbone)
    fuser = tiny_models.build_gen_fuser(tmp / "fuser")
    gens = [{"name": f"m{i}", "backend": "scripted", "options": {"template": f"model {i} answers: {{prompt}}", "latency_s": 0.05}}
            for i in range(3)]
    zero = {"ray_actor_options": {"num_cpus": 0}}
    return {"ensemble": {"generators": gens, "ranker": {"path": str(ranker), "device": "cpu"},
                         "fuser": {"path": str(fuser), "device": "cpu", "num_beams": 1, "max_new_tokens": 16},
                         "fusion": "always", "top_k": 2},
            "deployments": {n: zero for n in ["m0", "m1", "m2", "ranker", "fuser", "ingress"]}}


def app_memory_mb(app: str) -> dict:
    import psutil

    rss = uss = 0
    n = 0
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(f"ServeReplica:{app}:" in part for part in (p.info["cmdline"] or [])):
                info = p.memory_full_info()
                rss, uss, n = rss + info.rss, uss + info.uss, n + 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return {"replicas": n, "rss_mb": rss / 2**20, "uss_mb": uss / 2**20}


def p50(xs):
    return statistics.median(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", choices=["cpu", "scripted"], default="scripted")
    parser.add_argument("--requests", type=int, default=None, help="requests per interface (default: 3 cpu, 30 scripted)")
    args = parser.parse_args()
    n = args.requests or (3 if args.app == "cpu" else 30)

    import openai
    import ray
    import yaml
    from ray import serve

    from blender_serve.testing.apps import free_port

    from deployments.builder import build_app
    from deployments.protocol import BlendRequest

    tmp = Path(tempfile.mkdtemp(prefix="bsl-", dir="/tmp"))
    app_args = (yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text())["applications"][0]["args"]
                if args.app == "cpu" else scripted_args(tmp))
    port = free_port()
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp / "ray"))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app(app_args), name="blender", route_prefix="/")
    start_s = time.perf_counter() - t0
    memory = app_memory_mb("blender")
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=900)
    handle = serve.get_app_handle("blender")
    question = [{"role": "user", "content": "What is the capital of France?"}]
    client.chat.completions.create(model="blender", messages=question)  # warm-up
    http_s, handle_s = [], []
    for _ in range(n):  # interleaved, so drift on a noisy machine hits both alike
        t = time.perf_counter()
        client.chat.completions.create(model="blender", messages=question)
        http_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        handle.blend.remote(BlendRequest(messages=question)).result(timeout_s=900)
        handle_s.append(time.perf_counter() - t)
    serve.shutdown()
    ray.shutdown()
    out = {"app": args.app, "requests": n, "start_s": start_s, "memory": memory,
           "http_p50_s": p50(http_s), "handle_p50_s": p50(handle_s), "http_s": http_s, "handle_s": handle_s}
    print(f"app={args.app}: ready {start_s:.1f}s after ray.init; {memory['replicas']} replicas, "
          f"USS {memory['uss_mb']:.0f} MB (RSS {memory['rss_mb']:.0f} MB); "
          f"p50 over {n} requests: HTTP {out['http_p50_s']:.3f}s, handle {out['handle_p50_s']:.3f}s")
    (ROOT / "bench_results").mkdir(exist_ok=True)
    (ROOT / "bench_results" / f"serve_latency_{args.app}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
