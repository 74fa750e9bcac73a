"""Deployment handles dressed as blender_serve components, so the ingress runs the very same
``Blender`` pipeline as the library, with each component in its own deployment."""

from __future__ import annotations

from typing import AsyncIterator, Optional, Sequence

from blender_serve.types import ChatMessage, FusionOutput, Generation, GenerationChunk, RankResult, SamplingParams

__all__ = ["RemoteGenerator", "RemoteRanker", "RemoteFuser"]


class RemoteGenerator:
    """Duck-types blender_serve.generators.Generator over an LLMServer handle."""

    def __init__(self, name: str, handle):
        self.name, self.handle = name, handle
        self.started = True

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def generate(self, messages: list[ChatMessage], params: Optional[SamplingParams] = None) -> Generation:
        return await self.handle.generate.remote(messages, params)

    async def stream(self, messages: list[ChatMessage], params: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.handle.options(stream=True).stream.remote(messages, params):
            yield chunk


class RemoteRanker:
    def __init__(self, handle):
        self.handle = handle

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        return await self.handle.rank.remote(source, list(candidates), strategy, top_k)

    async def compare(self, source: str, a: str, b: str, mode: str = "both") -> float:
        return await self.handle.compare.remote(source, a, b, mode)


class RemoteFuser:
    def __init__(self, handle):
        self.handle = handle

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str], **overrides) -> FusionOutput:
        return await self.handle.fuse.remote(instruction, input, list(candidates), **overrides)

    async def stream(self, instruction: str, input: str, candidates: Sequence[str], **overrides) -> AsyncIterator[str]:
        async for piece in self.handle.options(stream=True).stream.remote(instruction, input, list(candidates), **overrides):
            yield piece
