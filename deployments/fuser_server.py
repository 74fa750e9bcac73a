"""The fuser as a deployment: one-shot ``fuse`` and token-streaming ``stream``."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Optional, Sequence

from blender_serve.config import FuserConfig
from blender_serve.errors import validated
from blender_serve.types import FusionOutput, GenerationChunk, SamplingParams

__all__ = ["FuserServer"]


class FuserServer:
    async def __init__(self, config: dict[str, Any]):
        from blender_serve.fuser import build_fuser

        self.config = validated(FuserConfig, config, "fuser config")
        self.fuser = await asyncio.to_thread(build_fuser, self.config)

    @classmethod
    def default_options(cls, config: FuserConfig) -> dict[str, Any]:
        gpu = str(config.device).startswith("cuda") or config.device_map is not None
        return {"ray_actor_options": {"num_cpus": 0.1, **({"num_gpus": 1} if gpu else {})},
                "max_ongoing_requests": 8, "health_check_period_s": 10.0}

    async def fuse(self, instruction: str, input: str, candidates: Sequence[str],
                   sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        return await self.fuser.afuse(instruction, input, list(candidates), sampling, **overrides)

    async def stream(self, instruction: str, input: str, candidates: Sequence[str],
                     sampling: Optional[SamplingParams] = None, **overrides) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.fuser.stream(instruction, input, list(candidates), sampling, **overrides):
            yield chunk
