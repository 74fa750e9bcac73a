"""A stand-in ranker: deterministic pairwise logits after a fixed latency, no model.

For measuring orchestration (``RankerConfig(kind="scripted", path="scripted", options={"latency_s": 0.05})``):
the critical path of a request is known exactly when the ranker's cost is. Each call to
``rank_batch`` or ``compare_batch`` takes ``latency_s`` once, however many sources it scores (as one
batched forward pass would); the logit of a pair is the difference of the two texts' fixed
pseudo-qualities, and the ranking strategies are played on that matrix as on a real one.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from typing import Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from blender_serve.errors import InvalidInputError, validated
from blender_serve.ranker.aggregation import get_strategy, play
from blender_serve.types import RankResult

__all__ = ["ScriptedRanker", "ScriptedRankerOptions"]


class ScriptedRankerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_s: float = Field(0.0, ge=0.0, description="Seconds every rank_batch / compare_batch call takes.")


def _quality(text: str) -> float:
    return (zlib.crc32(text.encode("utf-8", "surrogatepass")) % 1000) / 1000.0


class ScriptedRanker:
    def __init__(self, latency_s: float = 0.0, strategy: str = "max_logits", seed: int = 0):
        self.latency_s, self.strategy, self.seed = latency_s, strategy, seed

    @classmethod
    def from_config(cls, config) -> "ScriptedRanker":
        o = validated(ScriptedRankerOptions, config.options, "options of the scripted ranker")
        return cls(o.latency_s, config.strategy, config.seed)

    def _logit(self, a: str, b: str) -> float:
        return _quality(a) - _quality(b)

    def rank_batch(self, sources: Sequence[str], candidates: Sequence[Sequence[str]], strategy: str = "max_logits",
                   top_k: Optional[int] = None, seed: Optional[int] = None) -> list[RankResult]:
        strat = get_strategy(strategy)
        if len(sources) != len(candidates) or any(len(c) < 2 for c in candidates):
            raise InvalidInputError("pass one list of at least two candidates per source")
        time.sleep(self.latency_s)
        rng = np.random.default_rng(self.seed if seed is None else seed)
        out = []
        for cands in candidates:
            M = np.array([[self._logit(a, b) if i != j else 0.0 for j, b in enumerate(cands)] for i, a in enumerate(cands)])
            r = play(strat, M, rng)
            out.append(RankResult(order=r.order[:top_k] if top_k else list(r.order), scores=[float(x) for x in r.scores],
                                  strategy=strat.name, matrix=None if r.matrix is None else r.matrix.tolist(),
                                  num_forward_pairs=r.num_pairs))
        return out

    def rank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
             top_k: Optional[int] = None, seed: Optional[int] = None) -> RankResult:
        return self.rank_batch([source], [candidates], strategy, top_k, seed)[0]

    def compare_batch(self, sources: Sequence[str], candidates_a: Sequence[str], candidates_b: Sequence[str],
                      mode: str = "both") -> list[float]:
        time.sleep(self.latency_s)
        return [self._logit(a, b) for a, b in zip(candidates_a, candidates_b)]

    def compare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        return self.compare_batch([source], [candidate_a], [candidate_b], mode)[0]

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        return await asyncio.to_thread(self.rank, source, candidates, strategy, top_k)

    async def acompare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        return await asyncio.to_thread(self.compare, source, candidate_a, candidate_b, mode)
