"""Served-app numbers on this machine: start time, memory, and latency of one ensemble request over
HTTP (official openai client) and over a Serve handle, with the per-stage times the answer reports.

    python -m bench serve_latency --app cpu        # configs/cpu.yaml: real SmolLM2 x3 on transformers, MiniLM ranker, SmolLM2 fuser
    python -m bench serve_latency --app cpu,cpu-llama-cpp   # both CPU demos side by side on one cluster, requests in turns
                                                   # (configs/cpu-llama-cpp.yaml: the same models on llama.cpp from the GGUF)
    python -m bench serve_latency --app scripted   # scripted base models (fixed 50 ms latency), tiny ranker/fuser:
                                                   # the orchestration overhead of the serving layer itself

Several apps run at once, each under its own route prefix, and take turns request by request, so
drift on a noisy machine hits all alike. Writes bench_results/serve_latency_<app>.json per app.
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


CONFIG_APPS = {"cpu": "cpu.yaml", "cpu-llama-cpp": "cpu-llama-cpp.yaml"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="scripted",
                        help=f"comma-separated, of {', '.join([*CONFIG_APPS, 'scripted'])} or Serve config files (*.yaml)")
    parser.add_argument("--requests", type=int, default=None, help="requests per interface (default: 3 cpu apps, 30 scripted)")
    args = parser.parse_args()
    apps, files = [], dict(CONFIG_APPS)
    for app in args.app.split(","):
        if app.endswith(".yaml"):  # any Serve config file: its stem names the app
            files[Path(app).stem] = str(Path(app).resolve())
            app = Path(app).stem
        elif app not in CONFIG_APPS and app != "scripted":
            raise SystemExit(f"unknown app {app!r}; use {', '.join([*CONFIG_APPS, 'scripted'])} or a config file")
        apps.append(app)
    n = args.requests or (30 if apps == ["scripted"] else 3)

    import openai
    import ray
    import yaml
    from ray import serve

    from blender_serve.testing.apps import free_port

    from deployments.builder import build_app
    from deployments.protocol import BlendRequest

    tmp = Path(tempfile.mkdtemp(prefix="bsl-", dir="/tmp"))
    port = free_port()
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, _temp_dir=str(tmp / "ray"))
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    start_s, memory, clients, handles = {}, {}, {}, {}
    for app in apps:
        app_args = (yaml.safe_load((ROOT / "configs" / files[app]).read_text())["applications"][0]["args"]
                    if app in files else scripted_args(tmp))
        serve.run(build_app(app_args), name=app, route_prefix=f"/{app}")
        start_s[app] = time.perf_counter() - t0
        t0 = time.perf_counter()
        memory[app] = app_memory_mb(app)
        clients[app] = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/{app}/v1", api_key="unused", max_retries=0, timeout=900)
        handles[app] = serve.get_app_handle(app)
    # A new question for every request: a repeated prompt would be served from llama.cpp's KV prefix
    # cache and flatter it (transformers keeps none); every app gets the same questions in turn.
    from bench.backends import PROMPTS

    def asked(i: int) -> list[dict]:
        return [{"role": "user", "content": f"{PROMPTS[i % len(PROMPTS)]} (request {i})"}]

    question = asked(0)
    first, first_stages = {}, {}
    for app in apps:
        t = time.perf_counter()
        resp = clients[app].chat.completions.create(model="blender", messages=question)
        first[app] = time.perf_counter() - t
        first_stages[app] = resp.model_extra["blender"]["timings"]
    http_s = {a: [] for a in apps}
    handle_s = {a: [] for a in apps}
    stages = {a: [] for a in apps}
    for i in range(n):  # interleaved, so drift on a noisy machine hits every app alike
        question, handle_question = asked(2 * i + 1), asked(2 * i + 2)
        for app in apps:
            t = time.perf_counter()
            resp = clients[app].chat.completions.create(model="blender", messages=question)
            http_s[app].append(time.perf_counter() - t)
            stages[app].append(resp.model_extra["blender"]["timings"])
            t = time.perf_counter()
            handles[app].blend.remote(BlendRequest(messages=handle_question)).result(timeout_s=900)
            handle_s[app].append(time.perf_counter() - t)
    serve.shutdown()
    ray.shutdown()
    (ROOT / "bench_results").mkdir(exist_ok=True)
    for app in apps:
        stage_p50 = {k: p50([s[k] for s in stages[app] if k in s]) for k in stages[app][0]} if stages[app] else {}
        out = {"app": app, "requests": n, "start_s": start_s[app], "memory": memory[app], "first_answer_s": first[app], "first_answer_stages_s": first_stages[app],
               "http_p50_s": p50(http_s[app]), "handle_p50_s": p50(handle_s[app]), "stage_p50_s": stage_p50,
               "http_s": http_s[app], "handle_s": handle_s[app], "side_by_side_with": [a for a in apps if a != app]}
        print(f"app={app}: ready {start_s[app]:.1f}s; {memory[app]['replicas']} replicas, "
              f"USS {memory[app]['uss_mb']:.0f} MB (RSS {memory[app]['rss_mb']:.0f} MB); first answer {first[app]:.2f}s ("
              + ", ".join(f"{k} {v:.2f}s" for k, v in first_stages[app].items()) + "); "
              f"p50 over {n} requests: HTTP {out['http_p50_s']:.3f}s, handle {out['handle_p50_s']:.3f}s; "
              f"stages p50: " + ", ".join(f"{k} {v:.2f}s" for k, v in stage_p50.items()))
        (ROOT / "bench_results" / f"serve_latency_{app}.json").write_text(json.dumps(out, indent=2))
    if len(apps) > 1:
        base = apps[0]
        for app in apps[1:]:
            print(f"HTTP p50 {app} / {base}: {p50(http_s[app]) / p50(http_s[base]):.2f}")


if __name__ == "__main__":
    main()
