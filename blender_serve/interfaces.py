"""The seams of the pipeline: what ``Blender`` needs of a base model, a ranker and a fuser.

Two kinds of objects satisfy them: the in-process components of ``blender_serve`` (a
``Generator``, a ``PairRanker``, a ``Fuser``), and the deployment-handle adapters of the serving
layer (``deployments.handle_adapters``), so the ingress runs the very same pipeline with each
component in its own Ray Serve deployment. A test checks both against these Protocols, methods and
signatures alike. Every method the pipeline awaits is async; streams are async iterators whose
last chunk carries the finish reason and the usage.
"""

from __future__ import annotations

from typing import AsyncIterator, Optional, Protocol, Sequence, runtime_checkable

from blender_serve.types import ChatMessage, FusionOutput, Generation, GenerationChunk, RankResult, SamplingParams

__all__ = ["GeneratorProtocol", "RankerProtocol", "FuserProtocol"]


@runtime_checkable
class GeneratorProtocol(Protocol):
    """One base LLM: answers a chat, in one piece or streamed."""

    @property
    def name(self) -> str:
        """The model's name in the ensemble (``Generation.model``)."""

    async def start(self) -> None:
        """Be ready to answer (load the model, open the client); idempotent."""

    async def close(self) -> None:
        """Release what ``start`` acquired; idempotent."""

    async def generate(self, messages: Sequence[ChatMessage], params: Optional[SamplingParams] = None) -> Generation:
        """The whole answer, with usage, finish reason and latency."""

    def stream(self, messages: Sequence[ChatMessage],
               params: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        """The answer as chunks; the last one carries finish_reason and usage."""


@runtime_checkable
class RankerProtocol(Protocol):
    """A pairwise ranker of candidate answers to one source text."""

    async def arank(self, source: str, candidates: Sequence[str], strategy: str = "max_logits",
                    top_k: Optional[int] = None) -> RankResult:
        """Order and scores of ``candidates`` (at least two) as answers to ``source``."""

    async def acompare(self, source: str, candidate_a: str, candidate_b: str, mode: str = "both") -> float:
        """The logit that ``candidate_a`` is the better answer (> 0: a is better)."""


@runtime_checkable
class FuserProtocol(Protocol):
    """Writes one answer from the top-ranked candidates, bounded by the request's sampling settings."""

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None) -> FusionOutput:
        """The fused answer in one piece, with usage and finish reason."""

    def stream(self, instruction: str, input: str, candidates: Sequence[str],
               sampling: Optional[SamplingParams] = None) -> AsyncIterator[GenerationChunk]:
        """The fused answer as chunks; the last one carries finish_reason and usage."""
