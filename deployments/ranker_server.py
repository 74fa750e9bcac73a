"""The PairRanker as a deployment: rank and compare calls from concurrent requests are batched
into shared forward passes (``deployments.batching.GreedyBatcher``: a batch takes every call queued
when the ranker is free, so a lone call never waits)."""

from __future__ import annotations

import asyncio
from typing import Any, Optional, Sequence

from blender_serve.config import RankerConfig
from blender_serve.errors import BlenderError, validated
from blender_serve.types import RankResult
from deployments.batching import GreedyBatcher
from deployments.health import EngineHealth

__all__ = ["RankerServer"]


class RankerServer:
    async def __init__(self, config: dict[str, Any], max_batch_size: int = 16, batch_wait_timeout_s: float = 0.0):
        from blender_serve.ranker import build_ranker

        self.config = validated(RankerConfig, config, "ranker config")
        self.ranker = await asyncio.to_thread(build_ranker, self.config)
        self.health = EngineHealth("the ranker", lambda: self.ranker.compare("Say ok.", "ok", "okay"))
        # One batcher per method; both run on this replica's one model, one forward at a time (its lock).
        self._ranks = GreedyBatcher(lambda jobs: self._run(self._rank_jobs, jobs), max_batch_size, batch_wait_timeout_s)
        self._compares = GreedyBatcher(lambda jobs: self._run(self._compare_jobs, jobs), max_batch_size, batch_wait_timeout_s)

    @classmethod
    def default_options(cls, config: RankerConfig) -> dict[str, Any]:
        gpu = str(config.device).startswith("cuda")
        return {"ray_actor_options": {"num_cpus": 0.1, **({"num_gpus": 0.25} if gpu else {})},
                "max_ongoing_requests": 64, "max_queued_requests": 256, "health_check_period_s": 10.0}

    async def rank(self, source: str, candidates: Sequence[str], strategy: Optional[str] = None,
                   top_k: Optional[int] = None) -> RankResult:
        out = await self._ranks.submit((source, list(candidates), strategy or self.config.strategy, top_k))
        if isinstance(out, BaseException):
            raise out
        return out

    async def compare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        out = await self._compares.submit((source, candidate_a, candidate_b, mode))
        if isinstance(out, BaseException):
            raise out
        return out

    async def _run(self, fn, jobs: list[tuple]) -> list:
        try:
            return await asyncio.to_thread(fn, jobs)
        except Exception as exc:  # the model itself failed: every job of the batch gets the error
            self.health.saw(exc)
            return [exc] * len(jobs)

    def _rank_jobs(self, jobs: list[tuple]) -> list:
        """One rank_batch per (strategy, top_k) group; a bad job fails alone, not its batch-mates."""
        results: list = [None] * len(jobs)
        groups: dict[tuple, list[int]] = {}
        for k, (_, _, strategy, top_k) in enumerate(jobs):
            groups.setdefault((strategy, top_k), []).append(k)
        for (strategy, top_k), idx in groups.items():
            try:
                outs = self.ranker.rank_batch([jobs[k][0] for k in idx], [jobs[k][1] for k in idx], strategy=strategy, top_k=top_k)
            except BlenderError:
                outs = [self._one(lambda k=k: self.ranker.rank(jobs[k][0], jobs[k][1], strategy, top_k)) for k in idx]
            for k, out in zip(idx, outs):
                results[k] = out
        return results

    def _compare_jobs(self, jobs: list[tuple]) -> list:
        results: list = [None] * len(jobs)
        groups: dict[str, list[int]] = {}
        for k, job in enumerate(jobs):
            groups.setdefault(job[3], []).append(k)
        for mode, idx in groups.items():
            try:
                outs = self.ranker.compare_batch(*[[jobs[k][f] for k in idx] for f in range(3)], mode=mode)
            except BlenderError:
                outs = [self._one(lambda k=k: self.ranker.compare(*jobs[k])) for k in idx]
            for k, out in zip(idx, outs):
                results[k] = out
        return results

    @staticmethod
    def _one(call):
        try:
            return call()
        except BlenderError as exc:
            return exc

    async def check_health(self) -> None:
        """Raises when the model cannot score a pair (an unexpected failure the probe confirms)."""
        await self.health.check()

    async def stats(self) -> dict[str, Any]:
        """Batches run so far and the rank/compare calls they served (jobs / batches: the mean batch size)."""
        return {"batches": self._ranks.batches + self._compares.batches, "jobs": self._ranks.jobs + self._compares.jobs}
