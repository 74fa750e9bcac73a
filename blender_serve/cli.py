"""The in-process demo and result printing used by the ``blender-serve`` command (deployments.cli)."""

from __future__ import annotations

import asyncio
import sys
import time

__all__ = ["run_demo", "print_result"]


def print_result(prompt: str, result, load_s: float) -> None:
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
        print_result(prompt, result, load_s)
    return 0


def run_demo(prompt: str, max_tokens: int = 64, fuse: bool = True, as_json: bool = False) -> int:
    """Run the in-process demo ensemble once and print its result."""
    return asyncio.run(_demo(prompt, max_tokens, fuse, as_json))
