"""The ``blender-serve`` command.

    blender-serve demo [--prompt TEXT] [--max-tokens N] [--no-fuse] [--json]
        Run the ensemble in-process on the small real CPU models (see blender_serve.demo) and
        print the candidates, their ranking and the final answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Optional, Sequence

__all__ = ["main"]


def _print_result(prompt: str, result, load_s: float) -> None:
    print(f"\nprompt: {prompt}\n")
    print(f"candidates (ranked by {result.strategy}):")
    for c in result.candidates:
        mark = "*" if c.chosen else " "
        text = " ".join(c.text.split())
        print(f" {mark} #{c.rank} {c.model:<14} score {c.score:+.3f}  {c.latency_s:5.1f}s  {text[:160]}")
    for model, err in result.errors.items():
        print(f"   dropped {model}: {err}")
    how = f"fused from {', '.join(result.chosen)}" if result.fused else f"top candidate ({result.fusion_skipped_reason})"
    print(f"\nfinal answer [{how}]:\n{result.text.strip()}\n")
    t = result.timings
    print(f"load {load_s:.1f}s | generate {t['generate_s']:.1f}s, rank {t['rank_s']:.2f}s, fuse {t['fuse_s']:.1f}s, "
          f"total {t['total_s']:.1f}s | tokens: {result.usage.prompt_tokens} prompt, {result.usage.completion_tokens} completion")


async def _demo(prompt: str, max_tokens: int, fuse: bool, as_json: bool) -> int:
    from blender_serve.demo import demo_config
    from blender_serve.pipeline import Blender

    t0 = time.perf_counter()
    print("preparing the local models (first run converts SmolLM2 and builds the demo ranker)...", file=sys.stderr)
    blender = Blender(demo_config(max_tokens=max_tokens, fuse=fuse))
    await blender.start()
    load_s = time.perf_counter() - t0
    print(f"ensemble ready in {load_s:.1f}s; asking {len(blender.generators)} base models...", file=sys.stderr)
    result = await blender.blend(prompt)
    await blender.close()
    if as_json:
        print(result.model_dump_json(indent=2))
    else:
        _print_result(prompt, result, load_s)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="blender-serve", description="LLM-Blender ensembles, served.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the ensemble in-process on small real CPU models")
    demo.add_argument("--prompt", default="What is the capital of France, and what is it famous for?")
    demo.add_argument("--max-tokens", type=int, default=64)
    demo.add_argument("--no-fuse", action="store_true", help="return the top-ranked candidate, skip fusion")
    demo.add_argument("--json", action="store_true", help="print the whole BlendResult as JSON")
    args = parser.parse_args(argv)
    if args.command == "demo":
        import torch

        torch.set_num_threads(max(1, torch.get_num_threads()))
        return asyncio.run(_demo(args.prompt, args.max_tokens, not args.no_fuse, args.json))
    return 2


if __name__ == "__main__":
    sys.exit(main())
