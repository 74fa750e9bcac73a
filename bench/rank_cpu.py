"""The CPU ranker against the reference: fp32, bf16 and int8, eager and sdpa attention, on a 12x384 DeBERTa.

A ranker the shape of deberta-v3-xsmall (12 layers, hidden 384, 6 heads, position buckets 256;
random standard-scale weights, see ``bench._rankers``) in the original PairRM layout, so both
implementations load the same files. Side by side in one run, interleaved:

- speed: one request of 12 candidates (40-150 tokens) ranked with the full matrix (132 pairs, the
  reference's default comparison), median seconds, and the ratio to the reference;
- accuracy, on a well-conditioned model: a random DeBERTa is not one (its scores are near-ties or,
  with wider weights, chaotic, so any rounding reorders them), so each precision is judged on the
  demo ranker (a real pretrained MiniLM encoder, the trained head when ``scripts/miniature.sh`` has
  built it) ranking the first ``--agree`` MixInstruct-format records of the miniature test split with
  the full matrix: top-1 agreement, mean Spearman and pairwise sign agreement against its fp32 scores.

    python -m bench rank_cpu [--repeats 2] [--threads 1] [--agree 40] [--no-reference] [--quick]

Prints a table and writes bench_results/rank_cpu.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._rankers import agreement, build_checkpoint, workload

ROOT = Path(__file__).resolve().parents[1]
SHAPE = {"layers": 12, "hidden": 384, "heads": 6, "intermediate": 1536}
TINY = {"layers": 2, "hidden": 64, "heads": 4, "intermediate": 256}
#: label -> (attention, quantize, dtype)
VARIANTS = {
    "fp32": ("eager", "none", "float32"),
    "fp32 sdpa": ("sdpa", "none", "float32"),
    "bf16": ("eager", "none", "bfloat16"),
    "bf16 sdpa": ("sdpa", "none", "bfloat16"),
    "int8": ("eager", "int8", "float32"),
    "int8 sdpa": ("sdpa", "int8", "float32"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a ranker replica uses 1)")
    parser.add_argument("--agree", type=int, default=100, help="records of the agreement check")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a tiny model, 4 candidates, 4 agreement records")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from blender_serve.ranker import PairRanker

    shape, n_cands = (TINY, 4) if args.quick else (SHAPE, 12)
    n_agree = 4 if args.quick else args.agree
    labels = [v.strip() for v in args.variants.split(",") if v.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = build_checkpoint(Path(tmp), shape, "cpu", source_max=128, cand_max=190)
        rankers = {label: PairRanker.from_pretrained(path, device="cpu", dtype=VARIANTS[label][2],
                                                     attention=VARIANTS[label][0], quantize=VARIANTS[label][1])
                   for label in labels}
        base = rankers.get("fp32") or PairRanker.from_pretrained(path, device="cpu", dtype="float32")
        (source,), (cands,) = workload(base.tokenizer, 1, n_cands, (40, 150))
        calls = {label: (lambda r=r: r.rank(source, cands, strategy="max_logits")) for label, r in rankers.items()}
        if not args.no_reference:
            from blender_serve.testing.reference import import_reference

            import_reference()
            from llm_blender.blender.blender import Blender

            ref = Blender()
            ref.blender_config.use_tqdm = False
            ref.loadranker(str(path), device="cpu")
            calls["llm-blender 0.0.2"] = lambda: ref.rank([source], [cands], return_scores=True, batch_size=1)
        times: dict[str, list[float]] = {label: [] for label in calls}
        for call in calls.values():
            call()  # warm-up
        for _ in range(args.repeats):
            for label, call in calls.items():
                t0 = time.perf_counter()
                call()
                times[label].append(time.perf_counter() - t0)
        rows = []
        ref_s = statistics.median(times["llm-blender 0.0.2"]) if "llm-blender 0.0.2" in times else None
        for label, ts in times.items():
            row = {"variant": label, "median_s": statistics.median(ts), "times_s": ts}
            if ref_s:
                row["speedup_vs_reference"] = ref_s / row["median_s"]
            rows.append(row)
        accuracy = measure_agreement(n_agree, {VARIANTS[label][1:] for label in labels})
    lengths = [len(base.encoder.encode_group(source, [c]).candidate_ids[0]) for c in cands]
    print(f"DeBERTa-v2 {shape['layers']}x{shape['hidden']}, CPU, {args.threads} thread(s); one request: {n_cands} candidates "
          f"({min(lengths)}-{max(lengths)} tokens), full matrix ({n_cands * (n_cands - 1)} pairs), median of {args.repeats}")
    print(f"{'variant':<20}{'median s':>10}{'vs reference':>14}")
    for r in rows:
        speed = f"{r['speedup_vs_reference']:.2f}x" if "speedup_vs_reference" in r else "-"
        print(f"{r['variant']:<20}{r['median_s']:>10.3f}{speed:>14}")
    print(f"\nagreement with fp32 on {accuracy['records']} records ({accuracy['ranker']}, full matrix)")
    print(f"{'precision':<20}{'top-1 agree':>13}{'Spearman':>10}{'pair signs':>12}{'max |diff|':>12}")
    for r in accuracy["rows"]:
        print(f"{r['precision']:<20}{r['top1_agreement']:>13.3f}{r['spearman']:>10.4f}{r['pair_sign_agreement']:>12.4f}"
              f"{r['max_abs_score_diff']:>12.3g}")
    out = ROOT / "bench_results"
    out.mkdir(exist_ok=True)
    (out / "rank_cpu.json").write_text(json.dumps({"args": vars(args), "shape": shape, "candidate_tokens": lengths, "accuracy": accuracy,
                                                    "rows": rows}, indent=2))


def measure_agreement(n_records: int, precisions: set[tuple[str, str]]) -> dict:
    """Top-1 agreement, mean Spearman and pairwise sign agreement of each (quantize, dtype) against
    fp32, on the demo ranker and the miniature's test records."""
    import itertools

    from blender_serve.data import read_records
    from blender_serve.local_models import MINIATURE_DATA, demo_pairranker
    from blender_serve.ranker import PairRanker

    path = demo_pairranker()
    records = [r for r in itertools.islice(read_records(MINIATURE_DATA / "candidates_test.jsonl.gz"), n_records)
               if len(r.candidates) >= 2]
    sources = [(r.instruction + "\n" + r.input).strip() for r in records]
    cands = [[c.text for c in r.candidates] for r in records]

    def run(quantize: str, dtype: str):
        ranker = PairRanker.from_pretrained(path, device="cpu", dtype=dtype, quantize=quantize)
        return ranker.rank_batch(sources, cands, strategy="max_logits")

    full = run("none", "float32")
    rows = []
    for quantize, dtype in sorted(precisions - {("none", "float32")}):
        got = run(quantize, dtype)
        top1, rho = agreement([g.scores for g in got], [f.scores for f in full])
        signs = [np.sign(np.array(g.matrix)[~np.eye(len(g.scores), dtype=bool)]) ==
                 np.sign(np.array(f.matrix)[~np.eye(len(f.scores), dtype=bool)]) for g, f in zip(got, full)]
        diff = max(float(np.max(np.abs(np.array(g.scores) - np.array(f.scores)))) for g, f in zip(got, full))
        rows.append({"precision": ("int8" if quantize == "int8" else {"bfloat16": "bf16"}.get(dtype, dtype)),
                     "top1_agreement": top1, "spearman": rho, "pair_sign_agreement": float(np.mean(np.concatenate(signs))),
                     "max_abs_score_diff": diff})
    spread = float(np.mean([np.std(f.scores) for f in full]))
    return {"ranker": f"{Path(path).name}, fp32 score std {spread:.2f}", "records": len(records), "rows": rows}


if __name__ == "__main__":
    main()
