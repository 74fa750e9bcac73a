"""Served-app numbers on this machine: start time, memory, and latency of one ensemble request over
HTTP (official openai client) and over a Serve handle, with the per-stage times the answer reports.

    python -m bench serve_latency --app cpu        # configs/cpu.yaml: real SmolLM2 x3 on transformers, MiniLM ranker, SmolLM2 fuser
    python -m bench serve_latency --app cpu,cpu-llama-cpp   # both CPU demos side by side on one cluster, requests in turns
                                                   # (configs/cpu-llama-cpp.yaml: the same models on llama.cpp from the GGUF)
    python -m bench serve_latency --app scripted   # scripted base models (fixed 50 ms latency), tiny ranker/fuser:
                                                   # the orchestration overhead of the serving layer itself
    python -m bench serve_latency --app cpu-llama-cpp --fusion always,never
                                                   # one app, the requests' fusion modes in turns: rank-and-pick
                                                   # against rank-and-fuse on the same questions

Several apps run at once, each under its own route prefix, and take turns request by request, so
drift on a noisy machine hits all alike; so do the fusion modes of ``--fusion`` (the request's
``blender.fusion``). Writes bench_results/serve_latency_<app>[_fusion-<mode>].json per variant.
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
    parser.add_argument("--fusion", default="", help="comma-separated fusion modes (always, never, auto) asked per request "
                        "in turns on every app (default: each app's own)")
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
    modes = [m for m in args.fusion.split(",") if m] or [None]

    import openai
    import ray
    import yaml
    from ray import serve

    from blender_serve.testing.apps import free_port

    from blender_serve.config import BlendOptions
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
    # A new prompt for every request, its tag first: a repeated one would be served from llama.cpp's
    # KV prefix cache and flatter it (transformers keeps none). Round i asks every app and fusion mode
    # question i (over HTTP) and question i + 4 (over the handle), so all compare on the same ones.
    from bench.backends import PROMPTS

    def asked(i: int, tag: str) -> list[dict]:
        return [{"role": "user", "content": f"Request {tag}. {PROMPTS[i % len(PROMPTS)]}"}]

    variants = [(app, mode, app if mode is None else f"{app}_fusion-{mode}") for app in apps for mode in modes]

    def chat(app: str, mode, messages):
        extra = {"extra_body": {"blender": {"fusion": mode}}} if mode else {}
        return clients[app].chat.completions.create(model="blender", messages=messages, **extra)

    first, first_stages = {}, {}
    for app, mode, label in variants:  # the first answer of each, after deployment
        t = time.perf_counter()
        resp = chat(app, mode, asked(0, f"{label}-first"))
        first[label] = time.perf_counter() - t
        first_stages[label] = resp.model_extra["blender"]["timings"]
    http_s = {v[2]: [] for v in variants}
    handle_s = {v[2]: [] for v in variants}
    stages = {v[2]: [] for v in variants}
    for i in range(n):  # interleaved, so drift on a noisy machine hits every variant alike
        for app, mode, label in variants:
            question, handle_question = asked(i, f"{label}-{i}"), asked(i + 4, f"{label}-{i}-handle")
            t = time.perf_counter()
            resp = chat(app, mode, question)
            http_s[label].append(time.perf_counter() - t)
            stages[label].append(resp.model_extra["blender"]["timings"])
            t = time.perf_counter()
            options = BlendOptions(fusion=mode) if mode else BlendOptions()
            handles[app].blend.remote(BlendRequest(messages=handle_question, options=options)).result(timeout_s=900)
            handle_s[label].append(time.perf_counter() - t)
    serve.shutdown()
    ray.shutdown()
    (ROOT / "bench_results").mkdir(exist_ok=True)
    for app, mode, label in variants:
        stage_p50 = {k: p50([s[k] for s in stages[label] if k in s]) for k in stages[label][0]} if stages[label] else {}
        out = {"app": app, "fusion": mode, "requests": n, "start_s": start_s[app], "memory": memory[app], "first_answer_s": first[label], "first_answer_stages_s": first_stages[label],
               "http_p50_s": p50(http_s[label]), "handle_p50_s": p50(handle_s[label]), "stage_p50_s": stage_p50,
               "http_s": http_s[label], "handle_s": handle_s[label], "side_by_side_with": [v[2] for v in variants if v[2] != label]}
        print(f"{label}: ready {start_s[app]:.1f}s; {memory[app]['replicas']} replicas, "
              f"USS {memory[app]['uss_mb']:.0f} MB (RSS {memory[app]['rss_mb']:.0f} MB); first answer {first[label]:.2f}s ("
              + ", ".join(f"{k} {v:.2f}s" for k, v in first_stages[label].items()) + "); "
              f"p50 over {n} requests: HTTP {out['http_p50_s']:.3f}s, handle {out['handle_p50_s']:.3f}s; "
              f"stages p50: " + ", ".join(f"{k} {v:.2f}s" for k, v in stage_p50.items()))
        (ROOT / "bench_results" / f"serve_latency_{label}.json").write_text(json.dumps(out, indent=2))
    base = variants[0][2]
    for _, _, label in variants[1:]:
        print(f"HTTP p50 {label} / {base}: {p50(http_s[label]) / p50(http_s[base]):.2f}")


if __name__ == "__main__":
    main()
