"""Time to rank 12 candidates on this machine: blender_serve's PairRanker vs the reference, side by side.

The ranker is a DeBERTa-v2 the size of deberta-v3-xsmall (12 layers, hidden 384; random weights:
speed does not depend on them) saved in the original PairRM layout, so both implementations load
the same files. Candidates are 30-96-word answers to one question; the tiny test tokenizer cuts them into
109-353 tokens, so these are long answers (`bench rank_cpu` uses 42-157-token ones).

    python -m bench rank_latency [--repeats 5] [--threads 2] [--no-reference]

Prints a table and writes bench_results/rank_latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_small_ranker(directory: Path) -> Path:
    import torch
    from transformers import DebertaV2Model

    from blender_serve.testing import tiny_models

    tokenizer = tiny_models.deberta_tokenizer()
    config = tiny_models.deberta_config(len(tokenizer), hidden=384, layers=12, heads=6)
    config.intermediate_size = 1536
    torch.manual_seed(0)
    DebertaV2Model(config).save_pretrained(directory / "backbone")
    tokenizer.save_pretrained(directory / "backbone")
    return tiny_models.build_pairrm_original(directory / "ranker", directory / "backbone",
                                             source_maxlength=1224, candidate_maxlength=412)


def workload(n: int = 12):
    words = "the model answers with a detailed explanation of the question and some extra words".split()
    source = "Explain in a few sentences why the sky looks blue during the day but red at sunset, please."
    cands = [" ".join(words[(k + i) % len(words)] for i in range(30 + 6 * k)) for k in range(n)]
    return source, cands


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from blender_serve.ranker import PairRanker

    source, cands = workload()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = build_small_ranker(Path(tmp))
        ranker = PairRanker.from_pretrained(path, device="cpu", dtype="float32", batch_size=args.batch_size)
        n_tokens = [len(ranker.encoder.encode_group(source, [c]).candidate_ids[0]) for c in cands]
        for strategy in ("max_logits", "single_order", "bubble"):
            times = timed(lambda: ranker.rank(source, cands, strategy=strategy), args.repeats)
            rows.append({"impl": "blender_serve", "strategy": strategy, "pairs": ranker.rank(source, cands, strategy=strategy).num_forward_pairs,
                         "median_s": statistics.median(times), "min_s": min(times)})
        if not args.no_reference:
            from blender_serve.testing.reference import import_reference

            import_reference()
            from llm_blender.blender.blender import Blender

            ref = Blender()
            ref.blender_config.use_tqdm = False
            ref.loadranker(str(path), device="cpu")
            times = timed(lambda: ref.rank([source], [cands], return_scores=True, batch_size=1), args.repeats)
            rows.append({"impl": "llm-blender 0.0.2", "strategy": "max_logits", "pairs": 132,
                         "median_s": statistics.median(times), "min_s": min(times)})
            times = timed(lambda: ref.get_best_of_n([source], [cands], pairrm_cmp_type="bubble", batch_size=1), args.repeats)
            rows.append({"impl": "llm-blender 0.0.2", "strategy": "bubble", "pairs": 22,
                         "median_s": statistics.median(times), "min_s": min(times)})
    print(f"12 candidates ({min(n_tokens)}-{max(n_tokens)} tokens each), DeBERTa-v2 12x384, CPU fp32, "
          f"{args.threads} threads, batch_size {args.batch_size}, {args.repeats} repeats")
    print(f"{'implementation':<20}{'strategy':<14}{'pairs':>6}{'median s':>10}{'min s':>9}")
    for r in rows:
        print(f"{r['impl']:<20}{r['strategy']:<14}{r['pairs']:>6}{r['median_s']:>10.3f}{r['min_s']:>9.3f}")
    out = ROOT / "bench_results"
    out.mkdir(exist_ok=True)
    (out / "rank_latency.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
