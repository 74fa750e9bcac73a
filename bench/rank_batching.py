"""The ranker deployment's cross-request batching, on vs off: throughput and latency under concurrency.

The ranker deployment (``RankerServer``, its ``GreedyBatcher``) alone on a local Ray, serving the
small ranker of ``bench rank_cost`` (a DeBERTa-v2 4x128, random weights; 4-6 candidates of 20-60
tokens per request, max_logits), once per batching setting (default: max_batch_size 1 = off and
16 = on, both at the app's default batch_wait_timeout_s), all deployed side by side. Clients call
the deployment's handle at concurrency 1, 8 and 32; the settings take turns burst by burst (each
leading in turn), so drift on a shared machine hits them alike. Reports requests/s, p50 and p99 latency, the mean batch
size the replica formed, and each setting's ratio to the first (off).

    python -m bench rank_batching [--settings 1:0.005,16:0.005] [--concurrency 1,8,32] [--bursts 6] [--quick]

Writes bench_results/rank_batching.json.
"""

from __future__ import annotations

import argparse
import asyncio
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


def parse_settings(text: str) -> list[tuple[int, float]]:
    """'1:0.005,16:0' -> [(1, 0.005), (16, 0.0)]: (max_batch_size, batch_wait_timeout_s) pairs."""
    out = []
    for item in text.split(","):
        size, wait = item.split(":")
        out.append((int(size), float(wait)))
    return out


def label(size: int, wait: float) -> str:
    return f"batch {size:>2}, wait {wait * 1000:g} ms"


async def burst(handle, reqs, concurrency: int) -> tuple[list[float], float]:
    """Latencies of every request of ``reqs``, sent ``concurrency`` at a time, and the burst's wall time."""
    queue = list(reqs)
    lat: list[float] = []

    async def client():
        while queue:
            source, cands = queue.pop()
            t0 = time.perf_counter()
            await handle.rank.remote(source, cands)
            lat.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return lat, time.perf_counter() - t0


async def measure(apps: list[str], reqs, levels: list[int], bursts: int, per_client: int) -> dict:
    """Per (app, concurrency): latencies, wall time and batches formed, the apps taking turns per burst."""
    from ray import serve

    handles = {a: serve.get_app_handle(a) for a in apps}
    for h in handles.values():  # warm-up: first calls pay for imports and allocation
        await burst(h, reqs[:8], 4)
    out = {}
    cursor = 0
    for c in levels:
        n = max(c * per_client, 8)
        acc = {a: {"latencies": [], "wall_s": 0.0, "batches": 0, "jobs": 0} for a in apps}
        for b in range(bursts):
            shift = b % len(apps)
            for a in apps[shift:] + apps[:shift]:  # each setting leads in turn
                chunk = [reqs[(cursor + i) % len(reqs)] for i in range(n)]
                before = await handles[a].stats.remote()
                lat, wall = await burst(handles[a], chunk, c)
                after = await handles[a].stats.remote()
                acc[a]["latencies"] += lat
                acc[a]["wall_s"] += wall
                acc[a]["batches"] += after["batches"] - before["batches"]
                acc[a]["jobs"] += after["jobs"] - before["jobs"]
            cursor += n
        out[c] = acc
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", default=None,
                        help="max_batch_size:batch_wait_timeout_s pairs, comma-separated; the first is the baseline "
                             "(default: 1 and 16 at the app's default wait)")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--bursts", type=int, default=6, help="bursts per (setting, concurrency)")
    parser.add_argument("--per-client", type=int, default=2, help="requests per client per burst (at least 8 per burst)")
    parser.add_argument("--quick", action="store_true", help="smoke test: concurrency 1 and 8, one short burst")
    args = parser.parse_args()
    if args.quick:
        args.concurrency, args.bursts, args.per_client = "1,8", 1, 1

    import ray
    from ray import serve

    from bench._rankers import build_checkpoint, workload
    from bench.rank_cost import NAME, SHAPE
    from blender_serve.testing import tiny_models
    from blender_serve.testing.apps import free_port
    from blender_serve.config import RankerConfig
    from blender_serve.ranker import PairRanker
    from deployments.config import RankerBatching
    from deployments.ranker_server import RankerServer

    default_wait = RankerBatching().batch_wait_timeout_s
    settings = parse_settings(args.settings or f"1:{default_wait},16:{default_wait}")
    levels = [int(x) for x in args.concurrency.split(",")]
    # 4, 5 and 6 candidates in turn (each batch mixes request sizes, as a served ranker's do)
    groups = [list(zip(*workload(tiny_models.deberta_tokenizer(), 86, k, (20, 60)))) for k in (4, 5, 6)]
    reqs = [r for trio in zip(*groups) for r in trio]
    tmp = tempfile.mkdtemp(prefix="bsrb-", dir="/tmp")
    ranker_dir = build_checkpoint(Path(tmp) / "models", SHAPE, "cpu", source_max=128, cand_max=64)
    config = {"path": str(ranker_dir), "device": "cpu", "dtype": "float32"}
    encoder = PairRanker.from_pretrained(ranker_dir, device="cpu").encoder
    lengths = [len(ids) for s, c in reqs for ids in encoder.encode_group(s, c).candidate_ids]
    ray.init(num_cpus=8, include_dashboard=False, _temp_dir=f"{tmp}/ray", log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    apps = [f"rank{i}" for i in range(len(settings))]
    try:
        for app, (size, wait) in zip(apps, settings):
            # num_cpus 0: Ray's CPUs are logical (its workers then run torch with 1 thread, OMP_NUM_THREADS=1).
            options = {**RankerServer.default_options(RankerConfig(**config)), "ray_actor_options": {"num_cpus": 0}}
            serve.run(serve.deployment(RankerServer).options(name="ranker", **options).bind(config, size, wait),
                      name=app, route_prefix=None)
        raw = asyncio.run(measure(apps, reqs, levels, args.bursts, args.per_client))
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for c in levels:
        for app, (size, wait) in zip(apps, settings):
            r = raw[c][app]
            lat = r["latencies"]
            rows.append({"concurrency": c, "max_batch_size": size, "batch_wait_timeout_s": wait, "requests": len(lat),
                         "throughput_rps": len(lat) / r["wall_s"], "p50_s": percentile(lat, 50), "p99_s": percentile(lat, 99),
                         "mean_batch": r["jobs"] / max(r["batches"], 1)})
    base = {r["concurrency"]: r for r in rows if (r["max_batch_size"], r["batch_wait_timeout_s"]) == settings[0]}
    for r in rows:
        b = base[r["concurrency"]]
        r["throughput_vs_first"] = r["throughput_rps"] / b["throughput_rps"]
        r["p50_vs_first"], r["p99_vs_first"] = r["p50_s"] / b["p50_s"], r["p99_s"] / b["p99_s"]

    print(f"{NAME} ranker deployment (1 torch thread), 4-6 candidates of {min(lengths)}-{max(lengths)} tokens per request, "
          f"max_logits; {args.bursts} interleaved bursts per cell; ratios to '{label(*settings[0])}'")
    print(f"{'conc':>4}  {'setting':<22}{'req/s':>8}{'p50 s':>8}{'p99 s':>8}{'batch':>7}{'req/s x':>9}{'p50 x':>7}{'p99 x':>7}")
    for r in rows:
        print(f"{r['concurrency']:>4}  {label(r['max_batch_size'], r['batch_wait_timeout_s']):<22}{r['throughput_rps']:8.1f}"
              f"{r['p50_s']:8.3f}{r['p99_s']:8.3f}{r['mean_batch']:7.1f}{r['throughput_vs_first']:9.2f}"
              f"{r['p50_vs_first']:7.2f}{r['p99_vs_first']:7.2f}")
    dest = ROOT / "bench_results" / "rank_batching.json"
    dest.parent.mkdir(exist_ok=True)
    dest.write_text(json.dumps({"shape": SHAPE, "candidates_per_request": [4, 6], "candidate_tokens": [min(lengths), max(lengths)],
                                "strategy": "max_logits",
                                "bursts": args.bursts, "rows": rows}, indent=2))
    print(f"saved {dest}")


if __name__ == "__main__":
    main()
