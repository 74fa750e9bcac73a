"""Fusion decoding speed: a random T5 gen_fuser (Flan-T5-XL's shape) loaded as GenFuser, ms per token
for 128 new tokens with 4 beams and greedy, under each decoding mode (dynamic, static, compiled).

    python -m bench gpu_fuser [--device cuda] [--shape flan-t5-xl|small|tiny] [--threads 1] [--budget 90]

``run(device, quick)`` is the entry point of the GPU script (bench/gpu.py): Flan-T5-XL's shape in
bfloat16 on cuda, or the tests' tiny T5 when ``quick`` (a CPU smoke run of the same code, seconds).
The checkpoint is written in the gen_fuser_3b layout and loaded through ``GenFuser.from_pretrained``,
as a user's would be. Every answer is forced to its full length (eos is masked until then), so each
call decodes exactly 128 tokens. First calls (warm-up; compilation for 'compiled') are reported on
their own rows. The whole run keeps to a time budget: rows that no longer fit are skipped with a
note row. Imports only torch, transformers and blender_serve modules that load neither ray nor fastapi.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "fuser"
NEW_TOKENS = 128
# Seconds a first 'compiled' call may take (a decoder graph per shape): an item starts only if this fits.
COMPILE_RESERVE_S = {"flan-t5-xl": 40.0, "small": 20.0, "tiny": 3.0}


def _row(what: str, value: float, unit: str) -> dict:
    return {"section": SECTION, "what": what, "value": float(value), "unit": unit}


def _item() -> tuple[str, str, list[str]]:
    """A gen_fuser request of about 700 input tokens with the tiny tokenizer (3 candidates)."""
    from blender_serve.testing.tiny_models import CORPUS

    text = " ".join(CORPUS[:9])
    return ("Answer the question in one short paragraph.", "Which city is the capital of France, and why?",
            [text[:400], text[200:600], text[400:800]])


def run(device: str, quick: bool, budget_s: float = 90.0) -> list[dict]:
    """Rows {"section": "fuser", "what", "value", "unit"}: Flan-T5-XL's shape on ``device`` (bfloat16
    on cuda), or, when ``quick``, the tiny T5 decoding 32 tokens once per mode (a smoke run of the
    code, not a measurement); at most about ``budget_s`` seconds in all."""
    if quick:
        return measure(device, "tiny", budget_s=min(budget_s, 20.0), new_tokens=32, repeats=1)
    return measure(device, "flan-t5-xl", budget_s=budget_s, repeats=1)


def measure(device: str, shape: str, *, budget_s: float = 90.0, new_tokens: int = NEW_TOKENS,
            modes: tuple[str, ...] = ("dynamic", "compiled", "static"), beams: tuple[int, ...] = (4, 1),
            backend: str | None = None, repeats: int = 2) -> list[dict]:
    """ms/token of each (decoding mode, beams), highest priority first: 4 beams under every mode, then
    greedy; each the best of ``repeats`` calls after a first one. ``backend``: the compiled mode's
    torch.compile backend (default: inductor, but aot_eager on cpu for the tiny shape, where
    inductor's C++ build alone would take a minute). On cuda, if inductor fails, 'compiled' is
    retried once on the 'cudagraphs' backend (CUDA graphs of the eager kernels, no compiler needed)."""
    import torch
    import transformers
    from torch._dynamo.utils import counters

    from blender_serve.fuser import GenFuser
    from blender_serve.hf_generation import StaticDecoding
    from blender_serve.testing.tiny_models import build_gen_fuser

    start = time.perf_counter()
    elapsed = lambda: time.perf_counter() - start  # noqa: E731
    rows: list[dict] = []
    cuda = device.startswith("cuda")
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    StaticDecoding.backend = backend or ("aot_eager" if not cuda and shape == "tiny" else "inductor")
    ckpt = Path(tempfile.mkdtemp(prefix="gen-fuser-bench-")) / "ckpt"
    fusers: dict[str, GenFuser] = {}

    def fuser(mode: str) -> GenFuser:
        if mode not in fusers:
            if mode == "compiled":  # its own copy: compiling patches the forward of the model it is given
                fusers[mode] = GenFuser.from_pretrained(str(ckpt), device=device, max_new_tokens=new_tokens, decoding=mode)
            else:
                fusers[mode] = GenFuser(fusers["dynamic"].model, fusers["dynamic"].tokenizer,
                                        max_new_tokens=new_tokens, decoding=mode)
            fusers[mode].model.generation_config.min_new_tokens = new_tokens  # eos masked until the full length
        return fusers[mode]

    try:
        t0 = time.perf_counter()
        build_gen_fuser(ckpt, shape=shape, device=device, dtype=torch.bfloat16 if cuda else torch.float32)
        rows.append(_row(f"{shape} T5 built and saved (gen_fuser layout) on {name}", time.perf_counter() - t0, "s"))
        t0 = time.perf_counter()
        fusers["dynamic"] = GenFuser.from_pretrained(str(ckpt), device=device, max_new_tokens=new_tokens)
        model = fusers["dynamic"].model
        rows.append(_row(f"loaded with GenFuser.from_pretrained ({model.dtype}, torch {torch.__version__}, "
                         f"transformers {transformers.__version__})", time.perf_counter() - t0, "s"))
        rows.append(_row("parameters", sum(p.numel() for p in model.parameters()) / 1e9, "B"))
        item = _item()
        rows.append(_row("prompt tokens", len(fusers["dynamic"].build_input_ids(*item)), "tokens"))
        results: dict[tuple[str, int], float] = {}
        for n_beams in beams:
            for mode in modes:
                while True:
                    label = (f"{mode}{f'[{StaticDecoding.backend}]' if mode == 'compiled' else ''}, "
                             f"{n_beams} beam{'s' * (n_beams > 1)}")
                    reserve = COMPILE_RESERVE_S.get(shape, 40.0) if mode == "compiled" else 0.0
                    if elapsed() + reserve > budget_s:
                        rows.append(_row(f"note: skipped {label} (budget {budget_s:.0f} s; {reserve:.0f} s more needed)",
                                         elapsed(), "s"))
                        break
                    try:
                        first, per_token = _time(fuser(mode), item, n_beams, new_tokens, repeats)
                    except Exception as exc:  # noqa: BLE001 - a failed mode is a result; the others still run
                        rows.append(_row(f"error: {label}: {type(exc).__name__}: {str(exc)[:300]}", elapsed(), "s"))
                        if mode == "compiled" and cuda and StaticDecoding.backend == "inductor":
                            fusers.pop(mode)._worker.close()
                            torch._dynamo.reset()
                            StaticDecoding.backend = "cudagraphs"
                            continue
                        break
                    rows.append(_row(f"{label}: first call ({'compiles' if mode == 'compiled' else 'warm-up, 8 tokens'})",
                                     first, "s"))
                    rows.append(_row(f"{label}: per token, {new_tokens} new tokens", per_token * 1e3, "ms/token"))
                    results[(mode, n_beams)] = per_token
                    break
        for (mode, n_beams), per_token in results.items():
            if mode != "dynamic" and ("dynamic", n_beams) in results:
                rows.append(_row(f"speed-up of {mode} over dynamic, {n_beams} beam{'s' * (n_beams > 1)}",
                                 results[("dynamic", n_beams)] / per_token, "x"))
        if "compiled" in fusers:
            rows.append(_row("compiled: graphs compiled (dynamo)", counters["stats"]["unique_graphs"], "graphs"))
            if cuda:
                rows.append(_row("compiled: CUDA graph skips (inductor; 0 = every compiled step replays a CUDA graph)",
                                 counters["inductor"]["cudagraph_skips"], "skips"))
        rows.append(_row("fuser section total", elapsed(), "s"))
        return rows
    finally:
        for f in fusers.values():
            f._worker.close()
        fusers.clear()
        torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()
        shutil.rmtree(ckpt.parent, ignore_errors=True)


def _time(fuser, item, n_beams: int, new_tokens: int, repeats: int) -> tuple[float, float]:
    """(seconds of the first call, best seconds per token over ``repeats`` more calls). The first call
    of a 'compiled' fuser decodes the full length (the shape it compiles); others warm up on 8 tokens."""
    config = fuser.model.generation_config
    warm = new_tokens if fuser.decoding == "compiled" else min(8, new_tokens)
    t0 = time.perf_counter()
    config.min_new_tokens = warm
    try:
        fuser.fuse(*item, num_beams=n_beams, max_new_tokens=warm)
    finally:
        config.min_new_tokens = new_tokens
    first = time.perf_counter() - t0
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fuser.fuse(*item, num_beams=n_beams)
        seconds = time.perf_counter() - t0
        if out.usage.completion_tokens != new_tokens:
            raise RuntimeError(f"decoded {out.usage.completion_tokens} tokens, not {new_tokens}")
        best = min(best, seconds / new_tokens)
    return first, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--shape", default=None, choices=["tiny", "small", "flan-t5-xl"],
                        help="default: flan-t5-xl on cuda, small on cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on cpu")
    parser.add_argument("--budget", type=float, default=90.0, help="seconds; rows that no longer fit are skipped")
    parser.add_argument("--modes", default="dynamic,compiled,static")
    parser.add_argument("--beams", default="4,1")
    parser.add_argument("--backend", default=None, help="torch.compile backend of 'compiled' (default inductor)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls per row (the best counts)")
    args = parser.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    shape = args.shape or ("flan-t5-xl" if device.startswith("cuda") else "small")
    if device == "cpu":
        torch.set_num_threads(args.threads)
    rows = measure(device, shape, budget_s=args.budget, modes=tuple(args.modes.split(",")),
                   beams=tuple(int(b) for b in args.beams.split(",")), backend=args.backend,
                   repeats=args.repeats)
    for r in rows:
        print(f"{r['value']:10.3f} {r['unit']:9} {r['what']}")
    out = ROOT / "bench_results" / f"gpu_fuser_{device.split(':')[0]}_{shape}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"device": device, "shape": shape, "threads": args.threads, "rows": rows}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
