"""The fuser interface: read an instruction, an input and the top-K candidates; write one answer."""

from __future__ import annotations

import abc
import asyncio
from typing import AsyncIterator, ClassVar, Optional, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.types import FusionOutput, GenerationChunk, SamplingParams

__all__ = ["Fuser", "FuseItem", "check_item"]

# One fusion request: (instruction, input, candidates).
FuseItem = tuple[str, str, Sequence[str]]


def check_item(instruction: str, input: str, candidates: Sequence[str]) -> None:
    """Raise InvalidInputError, saying what to pass instead, when an item cannot be fused."""
    if not isinstance(instruction, str):
        raise InvalidInputError(f"instruction must be a str, got {type(instruction).__name__}; pass '' when there is none")
    if not isinstance(input, str):
        raise InvalidInputError(f"input must be a str, got {type(input).__name__}; pass '' when there is none")
    # A bare string is a Sequence[str] too, and would be fused letter by letter.
    if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
        raise InvalidInputError("candidates must be a list of str (the top-ranked answers), not a single string")
    if len(candidates) == 0:
        raise InvalidInputError("no candidates to fuse; pass at least one candidate answer")
    for i, cand in enumerate(candidates):
        if not isinstance(cand, str):
            raise InvalidInputError(f"candidate {i} is a {type(cand).__name__}, not a str; pass the answers' texts")
    if not any(c.strip() for c in candidates):
        raise InvalidInputError("every candidate is empty; pass at least one non-empty answer, or skip fusion")
    if not instruction.strip() and not input.strip():
        raise InvalidInputError("instruction and input are both empty; pass the request the candidates answer")


class Fuser(abc.ABC):
    """Writes one answer from several candidate answers to the same request.

    Subclasses implement ``fuse_batch`` and ``stream``; ``fuse`` and ``afuse`` build on them.
    Every method takes the request's ``sampling`` settings (its max_tokens bounds the answer, its
    temperature, seed and stop apply; the fuser's own settings are the default and the cap) and
    library callers' generation keywords. Build one from a config with ``build_fuser(config)``.
    """

    #: The ``FuserConfig.kind`` this class serves (the registry key).
    kind: ClassVar[str] = ""

    @abc.abstractmethod
    def fuse_batch(self, items: Sequence[FuseItem], sampling: Optional[SamplingParams] = None,
                   **generate_overrides) -> list[FusionOutput]:
        """Fuse several requests in one batched generation.

        Args:
            items: (instruction, input, candidates) per request.
            sampling: the requests' sampling settings.
            **generate_overrides: per-call generation settings (see the subclass).

        Returns:
            one FusionOutput per item, in order.
        """

    @abc.abstractmethod
    def stream(self, instruction: str, input: str, candidates: Sequence[str], sampling: Optional[SamplingParams] = None,
               **generate_overrides) -> AsyncIterator[GenerationChunk]:
        """Fuse one request, yielding text pieces as they are generated (greedy by default); the
        last chunk carries the finish reason and the token usage."""

    def fuse(self, instruction: str, input: str, candidates: Sequence[str], sampling: Optional[SamplingParams] = None,
             **generate_overrides) -> FusionOutput:
        """Fuse one request's candidates into one answer (blocking).

        Args:
            instruction: what was asked ('' when the request is only an input).
            input: the request's input text ('' when there is none).
            candidates: the answers to fuse, best first (the ranker's top-K).
            sampling: the request's sampling settings (max_tokens, temperature, seed, stop...).
            **generate_overrides: per-call generation settings, e.g. ``num_beams=1``.

        Returns:
            FusionOutput with the text, token usage, finish reason and latency.

        Example:
            >>> fuser.fuse("Name a French city.", "", ["Paris", "Lyon is in France"]).text
        """
        return self.fuse_batch([(instruction, input, candidates)], sampling, **generate_overrides)[0]

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **generate_overrides) -> FusionOutput:
        """``fuse`` off the event loop, so it keeps serving while the model works.

        Example:
            >>> out = await fuser.afuse("Name a French city.", "", ["Paris", "Lyon"])
        """
        return await asyncio.to_thread(self.fuse, instruction, input, candidates, sampling, **generate_overrides)

    @classmethod
    def from_config(cls, config) -> "Fuser":
        """Build this fuser from a ``FuserConfig`` (``build_fuser`` picks the class by ``config.kind``)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a FuserConfig")
