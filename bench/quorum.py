"""Quorum fan-out: what one slow base model costs with and without a quorum, side by side.

Four scripted base models answer in 100-150 ms and a fifth takes 10x as long; the tiny real ranker
and fuser do the rest (in process, no Ray). Each request runs twice, interleaved: waiting for every
model, and with ``quorum=4, quorum_grace_s=0.05``. The quorum's bound is checked per request:

    total <= k-th fastest answer + grace + rank + fuse (+ a small orchestration allowance)

    python -m bench quorum [--requests 40]

Writes bench_results/quorum.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from blender_serve.testing.stats import percentile

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


async def run(n: int, tmp: Path) -> dict:
    from blender_serve import BlenderConfig
    from blender_serve.fuser import GenFuser
    from blender_serve.pipeline import Blender
    from blender_serve.ranker import PairRanker
    from blender_serve.testing import tiny_models

    backbone = tiny_models.build_deberta_backbone(tmp / "bb")
    ranker = PairRanker.from_pretrained(tiny_models.build_pairrm_original(tmp / "ranker", backbone), device="cpu")
    fuser = GenFuser.from_pretrained(tiny_models.build_gen_fuser(tmp / "fuser"), device="cpu", max_new_tokens=8, num_beams=1)
    gens = [{"name": f"fast{i}", "backend": "scripted",
             "options": {"template": f"fast{i} answers {{prompt}}", "latency_s": 0.1, "jitter_s": 0.05, "seed": i}}
            for i in range(4)]
    gens.append({"name": "slow", "backend": "scripted", "options": {"template": "slow answers {prompt}", "latency_s": 1.0,
                                                                   "jitter_s": 0.5, "seed": 9}})
    config = BlenderConfig(generators=gens, ranker={"path": "prebuilt"}, fuser={"path": "prebuilt"}, fusion="always", top_k=2)
    blender = Blender(config, ranker=ranker, fuser=fuser)
    k, grace = 4, 0.05
    rows: dict[str, list[dict]] = {"wait for all": [], f"quorum {k} + {grace}s grace": []}
    await blender.blend("warm up")
    for i in range(n):
        for name, options in (("wait for all", {}), (f"quorum {k} + {grace}s grace", {"quorum": k, "quorum_grace_s": grace})):
            t0 = time.perf_counter()
            result = await blender.blend(f"question {i}", options)
            total = time.perf_counter() - t0
            kth = sorted(c.latency_s for c in result.candidates)[min(k, len(result.candidates)) - 1]
            rows[name].append({"total_s": total, "kth_fastest_s": kth, "rank_s": result.timings["rank_s"],
                               "fuse_s": result.timings["fuse_s"], "skipped": result.skipped})
    out = {}
    for name, rs in rows.items():
        totals = [r["total_s"] for r in rs]
        bound = [r["kth_fastest_s"] + grace + r["rank_s"] + r["fuse_s"] for r in rs]
        out[name] = {"p50_s": statistics.median(totals), "p99_s": percentile(totals, 99),
                     "p99_bound_s": percentile(bound, 99),
                     "over_bound_p99_s": percentile([t - b for t, b in zip(totals, bound)], 99),
                     "skipped_slow": sum("slow" in r["skipped"] for r in rs), "requests": len(rs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bsq-") as tmp:
        out = asyncio.run(run(args.requests, Path(tmp)))
    print(f"{'mode':28} {'p50 s':>7} {'p99 s':>7} {'p99 of k-th+grace+rank+fuse':>28} {'p99 over it':>12} {'slow skipped':>13}")
    for name, r in out.items():
        print(f"{name:28} {r['p50_s']:7.3f} {r['p99_s']:7.3f} {r['p99_bound_s']:28.3f} {r['over_bound_p99_s']:12.3f} "
              f"{r['skipped_slow']:>6}/{r['requests']}")
    names = list(out)
    print(f"p99 with the quorum / waiting for all: {out[names[1]]['p99_s'] / out[names[0]]['p99_s']:.2f}")
    dest = ROOT / "bench_results" / "quorum.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps(out, indent=2))
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
