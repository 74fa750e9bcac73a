"""The fuser as a deployment: one-shot ``fuse`` and token-streaming ``stream``."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Optional, Sequence

from blender_serve.activity import Activity
from blender_serve.config import FuserConfig
from blender_serve.errors import validated
from blender_serve.types import FusionOutput, GenerationChunk, SamplingParams
from deployments.health import EngineHealth

__all__ = ["FuserServer"]


class FuserServer:
    async def __init__(self, config: dict[str, Any]):
        from blender_serve.fuser import build_fuser

        self.config = validated(FuserConfig, config, "fuser config")
        self.fuser = await asyncio.to_thread(build_fuser, self.config)
        self.activity = Activity()
        self.health = EngineHealth("the fuser", lambda: self.fuser.fuse("Say ok.", "", ["ok", "okay"], max_new_tokens=1, num_beams=1))

    @classmethod
    def default_options(cls, config: FuserConfig) -> dict[str, Any]:
        gpu = str(config.device).startswith("cuda") or config.device_map is not None
        return {"ray_actor_options": {"num_cpus": 0.1, **({"num_gpus": 1} if gpu else {})},
                "max_ongoing_requests": 8, "max_queued_requests": 64, "health_check_period_s": 10.0}

    async def fuse(self, instruction: str, input: str, candidates: Sequence[str],
                   sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        with self.activity.track():
            try:
                return await self.fuser.afuse(instruction, input, list(candidates), sampling, **overrides)
            except Exception as exc:
                self.health.saw(exc)
                raise

    async def stream(self, instruction: str, input: str, candidates: Sequence[str],
                     sampling: Optional[SamplingParams] = None, **overrides) -> AsyncIterator[GenerationChunk]:
        with self.activity.track():
            try:
                async for chunk in self.fuser.stream(instruction, input, list(candidates), sampling, **overrides):
                    self.activity.chunks += 1
                    yield chunk
            except Exception as exc:
                self.health.saw(exc)
                raise

    async def check_health(self) -> None:
        """Raises when the model cannot fuse (an unexpected failure the probe confirms)."""
        await self.health.check()

    async def stats(self) -> dict[str, Any]:
        """Call counts, and the tokens the model decoded so far (it stops growing when work is cancelled)."""
        return {**self.activity.as_dict(), "decode_steps": getattr(self.fuser, "decode_steps", None)}
