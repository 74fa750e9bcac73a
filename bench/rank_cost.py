"""Ranker cost against the number of candidates, per strategy: forward pairs and seconds per request.

The library's PairRanker alone (no Serve), on a small ranker (a DeBERTa-v2 4x128 built by
``bench/_rankers.py``, random weights; 20-60-token candidates), for N = 4, 8, 12, 16 candidates and every
registered strategy (``blender_serve.ranker.STRATEGIES``). Each repeat times every (N, strategy)
once, in a rotating order, so drift on a shared machine hits all cells alike; the table gives the
median over repeats and the pairs each request scored.

    python -m bench rank_cost [--sizes 4,8,12,16] [--repeats 7] [--threads 1] [--quick]

Writes bench_results/rank_cost.json.
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
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHAPE = {"layers": 4, "hidden": 128, "heads": 2, "intermediate": 512}  # small enough for minutes on 2 cores
NAME = "DeBERTa-v2 4x128"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="4,8,12,16", help="candidates per request, comma-separated")
    parser.add_argument("--repeats", type=int, default=7, help="timed requests per (N, strategy)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1, as in a served replica)")
    parser.add_argument("--quick", action="store_true", help="smoke test: N = 4, 8 and 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.repeats = "4,8", 2

    import torch

    from bench._rankers import build_checkpoint, workload
    from blender_serve.ranker import STRATEGIES, PairRanker

    torch.set_num_threads(args.threads)
    sizes = [int(x) for x in args.sizes.split(",")]
    strategies = list(STRATEGIES)
    with tempfile.TemporaryDirectory(prefix="bsrc-") as tmp:
        path = build_checkpoint(Path(tmp), SHAPE, "cpu", source_max=128, cand_max=64)
        ranker = PairRanker.from_pretrained(path, device="cpu", dtype="float32")
        # One question per (N, repeat), the same for every strategy: candidates differ from repeat to repeat.
        work = {n: list(zip(*workload(ranker.tokenizer, args.repeats + 1, n, (20, 60)))) for n in sizes}
        lengths = [len(ids) for rs in work.values() for s, c in rs for ids in ranker.encoder.encode_group(s, c).candidate_ids]
        cells = [(n, s) for n in sizes for s in strategies]
        times: dict[tuple[int, str], list[float]] = {c: [] for c in cells}
        pairs: dict[tuple[int, str], int] = {}
        for n, s in cells:  # warm-up: one untimed request per cell
            pairs[(n, s)] = ranker.rank(*work[n][-1], strategy=s).num_forward_pairs
        for r in range(args.repeats):
            shift = r % len(cells)
            for n, s in cells[shift:] + cells[:shift]:
                source, cands = work[n][r]
                t0 = time.perf_counter()
                ranker.rank(source, cands, strategy=s)
                times[(n, s)].append(time.perf_counter() - t0)

    rows = [{"candidates": n, "strategy": s, "forward_pairs": pairs[(n, s)], "median_s": statistics.median(times[(n, s)]),
             "min_s": min(times[(n, s)]), "ms_per_pair": 1000 * statistics.median(times[(n, s)]) / pairs[(n, s)],
             "repeats": len(times[(n, s)])} for n, s in cells]
    print(f"{NAME} ranker, CPU fp32, {args.threads} torch thread(s), candidates of {min(lengths)}-{max(lengths)} tokens, "
          f"median of {args.repeats} requests per cell: forward pairs / seconds per request")
    print(f"{'N':>4}" + "".join(f"{s:>22}" for s in strategies))
    for n in sizes:
        cell = {r["strategy"]: r for r in rows if r["candidates"] == n}
        print(f"{n:>4}" + "".join(f"{cell[s]['forward_pairs']:>10} / {cell[s]['median_s']:7.3f}s" for s in strategies))
    dest = ROOT / "bench_results" / "rank_cost.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"shape": SHAPE, "threads": args.threads, "candidate_tokens": [min(lengths), max(lengths)],
                                "repeats": args.repeats, "rows": rows}, indent=2))
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
