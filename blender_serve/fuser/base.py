"""The fuser interface: read an instruction, an input and the top-K candidates; write one answer."""

from __future__ import annotations

import abc
import asyncio
from typing import TYPE_CHECKING, AsyncIterator, ClassVar, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.types import FusionOutput

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig

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
    Build one from a config with ``Fuser.from_config(config)`` or ``build_fuser(config)``.
    """

    #: The ``FuserConfig.kind`` this class serves (the registry key).
    kind: ClassVar[str] = ""

    @abc.abstractmethod
    def fuse_batch(self, items: Sequence[FuseItem], **generate_overrides) -> list[FusionOutput]:
        """Fuse several requests in one batched generation.

        Args:
            items: (instruction, input, candidates) per request.
            **generate_overrides: per-call generation settings (see the subclass).

        Returns:
            one FusionOutput per item, in order.
        """

    @abc.abstractmethod
    def stream(self, instruction: str, input: str, candidates: Sequence[str], **generate_overrides) -> AsyncIterator[str]:
        """Fuse one request, yielding text pieces as they are generated (greedy by default)."""

    def fuse(self, instruction: str, input: str, candidates: Sequence[str], **generate_overrides) -> FusionOutput:
        """Fuse one request's candidates into one answer (blocking).

        Args:
            instruction: what was asked ('' when the request is only an input).
            input: the request's input text ('' when there is none).
            candidates: the answers to fuse, best first (the ranker's top-K).
            **generate_overrides: per-call generation settings, e.g. ``num_beams=1``.

        Returns:
            FusionOutput with the text, token usage and latency.

        Example:
            >>> fuser.fuse("Name a French city.", "", ["Paris", "Lyon is in France"]).text
        """
        return self.fuse_batch([(instruction, input, candidates)], **generate_overrides)[0]

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str], **generate_overrides) -> FusionOutput:
        """``fuse`` run in a worker thread, so the event loop keeps serving while the model works.

        Example:
            >>> out = await fuser.afuse("Name a French city.", "", ["Paris", "Lyon"])
        """
        return await asyncio.to_thread(self.fuse, instruction, input, candidates, **generate_overrides)

    @classmethod
    def from_config(cls, config: "FuserConfig") -> "Fuser":
        """Build a fuser from a FuserConfig: ``Fuser.from_config`` picks the class by ``config.kind``.

        Example:
            >>> Fuser.from_config(FuserConfig(kind="seq2seq", path="llm-blender/gen_fuser_3b"))
        """
        if cls is Fuser:
            from blender_serve.fuser import build_fuser  # the registry imports the subclasses, which import us

            return build_fuser(config)
        if config.kind != cls.kind:
            raise InvalidInputError(
                f"{cls.__name__} serves kind={cls.kind!r}, but the config says kind={config.kind!r}; "
                "use Fuser.from_config or build_fuser to pick the class from the config"
            )
        return cls._from_config(config)

    @classmethod
    def _from_config(cls, config: "FuserConfig") -> "Fuser":
        raise NotImplementedError(f"{cls.__name__} cannot be built from a config")
