"""Deployment handles dressed as the pipeline's components.

Each adapter satisfies one Protocol of ``blender_serve.interfaces`` over a Ray Serve handle, so the
ingress runs the very same ``Blender`` pipeline as the library, with each component in its own
deployment; the single-model pass-through goes through ``HandleGenerator`` as well. Handles carry
the request id to the component's replica, where it tags the log lines.
"""

from __future__ import annotations

from typing import AsyncIterator, Optional, Sequence

from blender_serve.types import ChatMessage, FusionOutput, Generation, GenerationChunk, RankResult, SamplingParams

__all__ = ["HandleGenerator", "HandleRanker", "HandleFuser"]


class HandleGenerator:
    """A base model served by an ``LLMServer`` deployment (``GeneratorProtocol``)."""

    def __init__(self, name: str, handle):
        self._name, self.handle = name, handle
        self._stream_handle = handle.options(stream=True)

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        """Nothing to do: the deployment loaded its model before it reported ready."""

    async def close(self) -> None:
        """Nothing to release: the deployment owns the model."""

    async def generate(self, messages: Sequence[ChatMessage], params: Optional[SamplingParams] = None) -> Generation:
        return await self.handle.generate.remote(list(messages), params)

    async def stream(self, messages: Sequence[ChatMessage],
                     params: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        async for chunk in self._stream_handle.stream.remote(list(messages), params):
            yield chunk


class HandleRanker:
    """The PairRanker served by a ``RankerServer`` deployment (``RankerProtocol``)."""

    def __init__(self, handle):
        self.handle = handle

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        return await self.handle.rank.remote(source, list(candidates), strategy, top_k)

    async def acompare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        return await self.handle.compare.remote(source, candidate_a, candidate_b, mode)


class HandleFuser:
    """The fuser served by a ``FuserServer`` deployment (``FuserProtocol``)."""

    def __init__(self, handle):
        self.handle = handle
        self._stream_handle = handle.options(stream=True)

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        return await self.handle.fuse.remote(instruction, input, list(candidates), sampling, **overrides)

    async def stream(self, instruction: str, input: str, candidates: Sequence[str],
                     sampling: Optional[SamplingParams] = None, **overrides) -> AsyncIterator[GenerationChunk]:
        async for chunk in self._stream_handle.stream.remote(instruction, input, list(candidates), sampling, **overrides):
            yield chunk
