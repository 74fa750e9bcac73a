"""How much batching the fuser speeds up `eval`'s blender method: the miniature's SmolLM2 fuser on real
top-2 candidates, one record per generate call vs `--fuse-batch-size` records per call, side by side.

    python -m bench fusion_batch [--records 32] [--batch 8] [--threads 2]

Prints the records per second of each and their ratio; writes bench_results/fusion_batch.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from blender_serve.config import load_ensemble_config
    from blender_serve.data import iter_records
    from blender_serve.fuser import build_fuser

    fuser = build_fuser(load_ensemble_config(str(ROOT / "configs" / "miniature.yaml")).fuser)
    items = []
    for r in iter_records(ROOT / "blender_serve" / "miniature" / "data" / "candidates_test.jsonl.gz"):
        items.append((r.instruction, r.input, [c.text for c in r.candidates[:2]]))
        if len(items) == args.records:
            break
    fuser.fuse_batch(items[:1])  # warm-up
    timings = {}
    for label, size in (("one at a time", 1), (f"batch {args.batch}", args.batch)):
        t0 = time.perf_counter()
        tokens = 0
        for start in range(0, len(items), size):
            tokens += sum(o.usage.completion_tokens for o in fuser.fuse_batch(items[start:start + size]))
        seconds = time.perf_counter() - t0
        timings[label] = {"seconds": seconds, "records_per_s": len(items) / seconds, "completion_tokens": tokens}
        print(f"{label:>14}: {len(items)} records in {seconds:6.1f} s, {len(items) / seconds:5.2f} rec/s, {tokens} tokens")
    one, many = timings["one at a time"], timings[f"batch {args.batch}"]
    ratio = one["seconds"] / many["seconds"]
    print(f"speed-up of batch {args.batch}: {ratio:.2f}x")
    out = ROOT / "bench_results" / "fusion_batch.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"records": len(items), "threads": args.threads, "timings": timings,
                               "speedup": ratio}, indent=2) + "\n")


if __name__ == "__main__":
    main()
