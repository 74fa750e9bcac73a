"""A stand-in fuser: the top candidate's text after a fixed latency, no model.

For measuring orchestration (``FuserConfig(kind="scripted", path="scripted", options={"latency_s": 0.05})``):
a one-shot fusion takes ``latency_s`` (once per batch, as one batched generation would); a stream
waits ``latency_s`` and then sends the answer word by word, ``token_latency_s`` apart. The answer
is the first (top-ranked) candidate, cut to the request's ``max_tokens`` words.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator, Optional, Sequence

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.errors import validated
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.types import FusionOutput, GenerationChunk, SamplingParams, Usage

__all__ = ["ScriptedFuser", "ScriptedFuserOptions"]


class ScriptedFuserOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency_s: float = Field(0.0, ge=0.0, description="Seconds a one-shot fusion (or a stream's first piece) takes.")
    token_latency_s: float = Field(0.0, ge=0.0, description="Seconds between streamed words.")


class ScriptedFuser(Fuser):
    kind = "scripted"

    def __init__(self, latency_s: float = 0.0, token_latency_s: float = 0.0, max_new_tokens: int = 128):
        self.latency_s, self.token_latency_s, self.max_new_tokens = latency_s, token_latency_s, max_new_tokens

    @classmethod
    def from_config(cls, config) -> "ScriptedFuser":
        o = validated(ScriptedFuserOptions, config.options, "options of the scripted fuser")
        return cls(o.latency_s, o.token_latency_s, config.max_new_tokens)

    def _answer(self, candidates: Sequence[str], sampling: Optional[SamplingParams]) -> tuple[list[str], str]:
        words = candidates[0].split()
        sampling = validated(SamplingParams, sampling, "sampling params") if sampling is not None else None
        cap = min(self.max_new_tokens, sampling.max_tokens) if sampling and sampling.max_tokens else self.max_new_tokens
        return words[:cap], "length" if len(words) > cap else "stop"

    def fuse_batch(self, items: Sequence[FuseItem], sampling: Optional[SamplingParams] = None,
                   **generate_overrides) -> list[FusionOutput]:
        for item in items:
            check_item(*item)
        time.sleep(self.latency_s)
        out = []
        for instruction, input, candidates in items:
            words, finish = self._answer(candidates, sampling)
            out.append(FusionOutput(text=" ".join(words), finish_reason=finish, latency_s=self.latency_s,
                                    usage=Usage(prompt_tokens=sum(len(c.split()) for c in candidates), completion_tokens=len(words))))
        return out

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **generate_overrides) -> FusionOutput:
        """Waits on the event loop, not in a thread: a scripted fusion holds no worker."""
        check_item(instruction, input, candidates)
        await asyncio.sleep(self.latency_s)
        words, finish = self._answer(candidates, sampling)
        return FusionOutput(text=" ".join(words), finish_reason=finish, latency_s=self.latency_s,
                            usage=Usage(prompt_tokens=sum(len(c.split()) for c in candidates), completion_tokens=len(words)))

    async def stream(self, instruction: str, input: str, candidates: Sequence[str], sampling: Optional[SamplingParams] = None,
                     **generate_overrides) -> AsyncIterator[GenerationChunk]:
        check_item(instruction, input, candidates)
        await asyncio.sleep(self.latency_s)
        words, finish = self._answer(candidates, sampling)
        for i, word in enumerate(words):
            if i and self.token_latency_s:
                await asyncio.sleep(self.token_latency_s)
            yield GenerationChunk(text=(" " if i else "") + word)
        yield GenerationChunk(finish_reason=finish, usage=Usage(prompt_tokens=sum(len(c.split()) for c in candidates),
                                                                completion_tokens=len(words)))
