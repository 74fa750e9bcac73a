"""One GPU check of the ranker: a PairRM-shaped DeBERTa (24x1024) with eager/sdpa/flex attention in fp16 and bf16, vs llm-blender.

Builds a ranker the shape of PairRM (deberta-v3-large: 24 layers, hidden 1024, 16 heads,
intermediate 4096, position buckets 256; random standard-scale weights, std 0.05) in the original
PairRM layout in a temporary directory, then measures, side by side in one run:

- fp32 equality: max |logit diff| of sdpa and flex against eager at one pair per pass;
- one request (12 candidates of 60-300 tokens, full matrix: 132 pairs) in seconds, and 32 requests
  at once (``rank_batch``) in pairs/s, for eager/sdpa/flex x fp16/bf16, and the reference
  (llm-blender 0.0.2, when installed) on the same files;
- fp16/bf16 against fp32: top-1 agreement and mean Spearman over the first 8 requests;
- the fuser section of ``bench/gpu_fuser.py`` when that module exists;
- with ``--compile``, the sdpa model under ``torch.compile(dynamic=True)``, if the time left allows.

A time guard skips what no longer fits (a printed note each), so a full run stays under 4 minutes.
Needs only torch and transformers (llm-blender and pydantic as small extras): no Ray, no vLLM.

    python -m bench gpu [--quick] [--budget-s 225] [--compile] [--no-reference] [--device cuda]

``--quick`` (alias ``--tiny``) runs everything on CPU at a tiny shape (2 layers, hidden 64) in
under a minute. Prints one table and writes bench_results/gpu.json.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

from bench._rankers import agreement, build_checkpoint, workload

ROOT = Path(__file__).resolve().parents[1]
FULL = {"layers": 24, "hidden": 1024, "heads": 16, "intermediate": 4096}
TINY = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 256}
N_CANDIDATES, N_REQUESTS, N_AGREE = 12, 32, 8  # --quick: 4 candidates, 2 requests


class Clock:
    """The time guard: what is left of the budget, and the notes of what was skipped."""

    def __init__(self, budget_s: float):
        self.start = time.perf_counter()
        self.end = self.start + budget_s
        self.notes: list[str] = []

    def left(self) -> float:
        return self.end - time.perf_counter()

    def allows(self, what: str, need_s: float) -> bool:
        if self.left() >= need_s:
            return True
        note = f"skipped {what}: {self.left():.0f} s left, needs about {need_s:.0f} s"
        self.notes.append(note)
        print("  " + note, flush=True)
        return False


class Table:
    """Rows of {section, what, value, unit}, printed as they come and at the end."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, section: str, what: str, value, unit: str = "") -> None:
        row = {"section": section, "what": what, "value": value, "unit": unit}
        self.rows.append(row)
        print(f"  {section:<30} {what:<44} {_fmt(value):>12} {unit}", flush=True)

    def print(self, title: str) -> None:
        print("\n" + title)
        print(f"{'section':<30} {'what':<44} {'value':>12} unit")
        for r in self.rows:
            print(f"{str(r['section']):<30} {str(r['what']):<44} {_fmt(r['value']):>12} {r.get('unit', '')}")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


# ---------------------------------------------------------------------------- measurements
def make_ranker(base, model, dtype, batch_size: int):
    from blender_serve.ranker import PairRanker

    return PairRanker(model, base.tokenizer, source_max_length=base.encoder.source_max_length,
                      candidate_max_length=base.encoder.candidate_max_length, device=base.device, dtype=dtype,
                      batch_size=batch_size)


def variant(base_model, impl: str, dtype):
    """A copy of the fp32 model in ``dtype`` with ``impl`` attention (same weights)."""
    from blender_serve.ranker.fast_attention import use_fast_attention

    model = copy.deepcopy(base_model).to(dtype=dtype)
    use_fast_attention(model, impl)
    return model.eval()


def time_ranker(ranker, label: str, sources, cands, table: Table, clock: Clock, fp32_scores, repeats: int) -> dict:
    """One-request seconds (median), 32-request pairs/s, and agreement with fp32 on the first N_AGREE."""
    t0 = time.perf_counter()
    n = len(cands[0])
    ranker.rank(sources[0], cands[0])  # warm-up (and compile, for flex)
    warm = time.perf_counter() - t0
    one = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ranker.rank(sources[0], cands[0])
        one.append(time.perf_counter() - t0)
    t1 = statistics.median(one)
    table.add(f"1 request ({n * (n - 1)} pairs)", label, t1, "s")
    out = {"one_s": t1, "warmup_s": warm}
    if clock.allows(f"{label}: {len(sources)} requests", need_s=len(sources) * t1 * 0.9 + 5):
        t0 = time.perf_counter()
        results = ranker.rank_batch(sources, cands)
        seconds = time.perf_counter() - t0
        pairs = sum(r.num_forward_pairs for r in results)
        table.add(f"{len(sources)} requests at once", label, pairs / seconds, "pairs/s")
        if fp32_scores is not None:
            top1, rho = agreement([r.scores for r in results[:len(fp32_scores)]], fp32_scores)
            section = f"vs fp32 ({len(fp32_scores)} requests)"
            table.add(section, f"{label} top-1 agreement", top1, "fraction")
            table.add(section, f"{label} Spearman", rho, "mean")
        out.update(pairs_per_s=pairs / seconds)
    return out


def guarded(table: Table, section: str, what: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``; an error becomes a row (the rest of the run goes on)."""
    try:
        return fn(*args, **kwargs)
    except Exception as e:  # one failing row must not cost the whole device run
        traceback.print_exc()
        table.add(section, f"{what} FAILED", f"{type(e).__name__}: {str(e)[:120]}")
        return None


def fp32_equality(base, impl: str, sources, cands, eager_matrix, table: Table) -> None:
    import torch

    fast = make_ranker(base, variant(base.model, impl, torch.float32), torch.float32, batch_size=1)
    matrix = np.array(fast.rank(sources[0], cands[0]).matrix, dtype=float)
    table.add("fp32 equality (1 pair/pass)", f"{impl} vs eager max |logit diff|", float(np.nanmax(np.abs(matrix - eager_matrix))), "abs")


def load_reference(path: Path, device: str, table: Table):
    """llm-blender 0.0.2's Blender with this ranker loaded, or None (and a row) when it is not installed."""
    try:
        from blender_serve.testing.reference import import_reference

        import_reference()
        from llm_blender.blender.blender import Blender
    except ImportError as e:
        table.add("reference", "llm-blender", f"absent ({e.name})")
        return None
    ref = Blender()
    ref.blender_config.use_tqdm = False
    ref.loadranker(str(path), device=device)  # fp16 on accelerators (its default), fp32 on CPU
    return ref


def reference_rows(ref, name: str, dtype, sources, cands, table: Table, clock: Clock, batched: bool) -> None:
    """The reference's one-request seconds and, when ``batched`` and time allows, its pairs/s on all requests."""
    ref.ranker = ref.ranker.to(dtype)
    ref.rank(sources[:1], cands[:1], return_scores=True, batch_size=1)  # warm-up
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        ref.rank(sources[:1], cands[:1], return_scores=True, batch_size=1)
        times.append(time.perf_counter() - t0)
    t1 = statistics.median(times)
    n, k = len(sources), len(cands[0])
    table.add(f"1 request ({k * (k - 1)} pairs)", f"llm-blender {name}", t1, "s")
    if batched and clock.allows(f"llm-blender {name}: {n} requests", need_s=n * t1 * 0.6 + 5):
        t0 = time.perf_counter()
        ref.rank(sources, cands, return_scores=True, batch_size=n)  # one forward per ordered pair, n rows each
        table.add(f"{n} requests at once", f"llm-blender {name}", n * k * (k - 1) / (time.perf_counter() - t0), "pairs/s")


def fuser_rows(device: str, quick: bool, table: Table) -> None:
    if importlib.util.find_spec("bench.gpu_fuser") is None:
        table.add("fuser", "bench/gpu_fuser.py", "absent")
        print("  the fuser section is absent (no bench/gpu_fuser.py)")
        return
    from bench import gpu_fuser

    for row in gpu_fuser.run(device, quick):
        table.add(row.get("section", "fuser"), row.get("what", "?"), row.get("value"), row.get("unit", ""))


def compile_rows(base, sources, cands, table: Table, clock: Clock, fp32_scores, repeats: int) -> None:
    """The sdpa fp16 model with its backbone under torch.compile (dynamic shapes: one graph for every width)."""
    import torch

    model = variant(base.model, "sdpa", torch.float16)
    model.pretrained_model = torch.compile(model.pretrained_model, dynamic=True)
    ranker = make_ranker(base, model, torch.float16, batch_size=32)
    time_ranker(ranker, "ours sdpa fp16 compiled", sources, cands, table, clock, fp32_scores, repeats)


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", "--tiny", action="store_true", help="CPU, tiny shape, in under a minute")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu with --quick)")
    parser.add_argument("--budget-s", type=float, default=None, help="time guard (default 225 s; 55 s with --quick)")
    parser.add_argument("--compile", action="store_true", help="also time the sdpa model under torch.compile")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    clock = Clock(args.budget_s or (55.0 if args.quick else 225.0))
    device = args.device or ("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    if device == "cpu":
        torch.set_num_threads(1)
    shape = TINY if args.quick else FULL
    n_requests, n_cands = (2, 4) if args.quick else (N_REQUESTS, N_CANDIDATES)
    lengths = (10, 40) if args.quick else (60, 300)
    repeats = 1 if args.quick else args.repeats
    table = Table()
    info = {"device": torch.cuda.get_device_name(0) if device.startswith("cuda") else "cpu",
            "torch": torch.__version__, "shape": shape, "requests": n_requests, "candidates": n_cands}
    import transformers

    info["transformers"] = transformers.__version__
    print(f"bench gpu: {info}", flush=True)
    from blender_serve.ranker import PairRanker

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_checkpoint(Path(tmp), shape, device, source_max=128, cand_max=lengths[1] + 30)
        base = PairRanker.from_pretrained(path, device=device, dtype="float32", batch_size=1)
        table.add("setup", f"build + load {shape['layers']}x{shape['hidden']}", time.perf_counter() - t0, "s")
        sources, cands = workload(base.tokenizer, n_requests, n_cands, lengths)
        n_tokens = [len(base.encoder.encode_group(sources[0], [c]).candidate_ids[0]) for c in cands[0]]
        table.add("setup", "candidate tokens (min-max)", f"{min(n_tokens)}-{max(n_tokens)}")

        # fp32: eager at one pair per pass (the equality oracle), batched on N_AGREE requests (agreement oracle)
        eager_matrix = np.array(base.rank(sources[0], cands[0]).matrix, dtype=float)
        table.add("fp32 equality (1 pair/pass)", "eager max |logit|", float(np.nanmax(np.abs(eager_matrix))), "abs")
        guarded(table, "fp32 equality (1 pair/pass)", "sdpa", fp32_equality, base, "sdpa", sources, cands, eager_matrix, table)
        base.batch_size = 32
        fp32_scores = [r.scores for r in base.rank_batch(sources[:N_AGREE], cands[:N_AGREE])]

        ref = None
        if not args.no_reference and clock.allows("llm-blender load", need_s=30 if not args.quick else 3):
            ref = guarded(table, "reference", "llm-blender load", load_reference, path, device, table)
        half = "fp32" if device == "cpu" else "fp16"  # the reference's own dtype on this device
        for dname, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            for impl in ("eager", "sdpa", "flex"):
                label = f"ours {impl} {dname}"
                if impl == "flex" and dname == "fp16" and clock.allows("flex fp32 equality", need_s=40 if not args.quick else 3):
                    # flex's one GPU correctness check; its first call per dtype compiles
                    guarded(table, "fp32 equality (1 pair/pass)", "flex", fp32_equality, base, "flex", sources, cands,
                            eager_matrix, table)
                if not clock.allows(label, need_s=(45 if impl == "flex" else 20) if not args.quick else 2):
                    continue
                ranker = make_ranker(base, variant(base.model, impl, dtype), dtype, batch_size=32)
                guarded(table, "rank", label, time_ranker, ranker, label, sources, cands, table, clock, fp32_scores, repeats)
                ranker = None  # free the copy before the next one
            if dname == "fp16":
                if ref is not None and clock.allows(f"llm-blender {half}", need_s=15 if not args.quick else 2):
                    guarded(table, "reference", f"llm-blender {half}", reference_rows, ref, half,
                            torch.float32 if half == "fp32" else torch.float16, sources, cands, table, clock, batched=True)
                if clock.allows("fuser section", need_s=30 if not args.quick else 3):
                    guarded(table, "fuser", "gpu_fuser.run", fuser_rows, device, args.quick, table)
        if ref is not None and device != "cpu" and clock.allows("llm-blender bf16", need_s=15):
            guarded(table, "reference", "llm-blender bf16", reference_rows, ref, "bf16", torch.bfloat16, sources, cands,
                    table, clock, batched=False)
        ref = None
        if args.compile and clock.allows("torch.compile (sdpa fp16)", need_s=90 if not args.quick else 20):
            guarded(table, "rank", "compiled", compile_rows, base, sources, cands, table, clock, fp32_scores, repeats)
        elif not args.compile:
            clock.notes.append("torch.compile rows not run (pass --compile)")

    total = time.perf_counter() - clock.start
    table.print(f"bench gpu on {info['device']} ({shape['layers']}x{shape['hidden']}, {n_cands} candidates, "
                f"{n_requests} requests; torch {info['torch']}, transformers {info['transformers']}) in {total:.0f} s")
    for note in clock.notes:
        print(f"note: {note}")
    out = ROOT / "bench_results"
    out.mkdir(exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({"args": vars(args), "info": info, "total_s": total, "rows": table.rows,
                                              "notes": clock.notes}, indent=2, default=str) + "\n")


if __name__ == "__main__":
    sys.exit(main())
