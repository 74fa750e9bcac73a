"""The scripted ranker and fuser: stand-ins with fixed latencies, built from configs like the real ones."""

from __future__ import annotations

import asyncio
import time

import pytest

from blender_serve import BlenderConfig, InvalidInputError
from blender_serve.config import FuserConfig, RankerConfig
from blender_serve.fuser import build_fuser
from blender_serve.pipeline import Blender
from blender_serve.ranker import STRATEGIES, ScriptedRanker, build_ranker

CANDS = ["Paris is the capital.", "It is Lyon.", "Paris.", "I do not know."]


def test_scripted_ranker_is_deterministic_and_plays_every_strategy():
    ranker = build_ranker(RankerConfig(kind="scripted", path="scripted"))
    assert isinstance(ranker, ScriptedRanker)
    full = ranker.rank("q", CANDS)
    assert full.order == ranker.rank("q", CANDS).order and len(full.scores) == 4
    for name in STRATEGIES:
        assert ranker.rank("q", CANDS, name).order[0] == full.order[0]  # consistent logits: every strategy agrees on top-1
    assert ranker.compare("q", CANDS[full.order[0]], CANDS[full.order[-1]]) > 0
    with pytest.raises(InvalidInputError):
        ranker.rank("q", ["only one"])


def test_scripted_ranker_takes_its_latency_once_per_batch():
    ranker = build_ranker(RankerConfig(kind="scripted", path="scripted", options={"latency_s": 0.1}))
    t0 = time.perf_counter()
    ranker.rank_batch(["a", "b", "c"], [CANDS, CANDS, CANDS])
    assert 0.1 <= time.perf_counter() - t0 < 0.2
    with pytest.raises(InvalidInputError, match="latency"):
        build_ranker(RankerConfig(kind="scripted", path="scripted", options={"latency": 1}))


def test_scripted_fuser_answers_the_top_candidate_one_shot_and_streamed():
    fuser = build_fuser(FuserConfig(kind="scripted", path="scripted", max_new_tokens=3, options={"latency_s": 0.05}))
    out = fuser.fuse("q", "", ["one two three four", "other"])
    assert (out.text, out.finish_reason, out.usage.completion_tokens) == ("one two three", "length", 3)

    async def both():
        t0 = time.perf_counter()
        one = await fuser.afuse("q", "", ["one two"], {"max_tokens": 1})
        took = time.perf_counter() - t0
        pieces = [c async for c in fuser.stream("q", "", ["one two"])]
        return one, took, pieces

    one, took, pieces = asyncio.run(both())
    assert one.text == "one" and 0.05 <= took < 0.2
    assert "".join(p.text for p in pieces) == "one two" and pieces[-1].finish_reason == "stop"


def test_a_blender_built_from_scripted_configs_runs_end_to_end():
    gens = [{"name": n, "backend": "scripted", "options": {"template": f"{n} says {{prompt}}", "latency_s": 0.05}}
            for n in ("a", "b", "c")]
    config = BlenderConfig(generators=gens, ranker={"kind": "scripted", "path": "scripted", "options": {"latency_s": 0.05}},
                           fuser={"kind": "scripted", "path": "scripted", "options": {"latency_s": 0.05}},
                           fusion="always", top_k=2)
    blender = Blender(config)
    blender.blend_sync("warm")
    t0 = time.perf_counter()
    result = blender.blend_sync("hello")
    took = time.perf_counter() - t0
    assert result.fused and result.text == result.candidates[0].text
    assert 0.15 <= took < 0.4  # the critical path: 0.05 generate + 0.05 rank + 0.05 fuse
