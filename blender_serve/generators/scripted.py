"""A deterministic stand-in LLM: scripted text, latency and failures. For tests and benchmarks.

It runs no model, so orchestration (fan-out, deadlines, dropped models, streaming) can be tested
and timed on its own. Tokens are whitespace-separated words.
"""

from __future__ import annotations

import asyncio
import random
import re
import string
from collections.abc import AsyncIterator
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blender_serve.generators.base import Generator
from blender_serve.stops import truncate_at_stop
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, Usage

__all__ = ["ScriptedGenerator"]

_TEMPLATE_FIELDS = {"model", "prompt", "call"}


class ScriptedOptions(BaseModel):
    """What the scripted model answers, how fast, and when it fails."""

    model_config = ConfigDict(extra="forbid")
    responses: Optional[list[str]] = Field(
        None, min_length=1, description="Answers returned in turn, cycling (call 0 gets the first). Overrides `template`."
    )
    template: str = Field(
        "{model} says: {prompt}",
        description="Answer built from {model} (generator name), {prompt} (last user message) and {call} (0-based call number).",
    )
    latency_s: float = Field(0.0, ge=0.0, description="Seconds before the first piece.")
    token_latency_s: float = Field(0.0, ge=0.0, description="Seconds between streamed pieces (one word each).")
    jitter_s: float = Field(0.0, ge=0.0, description="Extra first-piece delay drawn uniformly from [0, jitter_s], seeded.")
    seed: int = Field(0, description="Seed of the jitter draws, so a benchmark replays exactly.")
    load_latency_s: float = Field(0.0, ge=0.0, description="Seconds start() takes, to mimic loading a model.")
    fail: bool = Field(False, description="Every call fails with GenerationError.")
    fail_every: Optional[int] = Field(None, ge=1, description="Calls number n, 2n, 3n... (1-based) fail.")
    fail_after_pieces: Optional[int] = Field(
        None, ge=0, description="A failing call fails after streaming this many pieces (default: before the first)."
    )
    error_message: str = Field("scripted failure", description="Message of the simulated failure.")
    hang: bool = Field(False, description="Calls never finish (a stuck model); only cancellation ends them.")
    die_after_calls: Optional[int] = Field(
        None, ge=0, description="The engine dies after this many calls: every later call fails and check_health fails "
        "(a crashed engine, which a serving replica reports so that Ray Serve replaces it)."
    )

    @field_validator("template")
    @classmethod
    def _known_fields(cls, v: str) -> str:
        used = {name for _, name, _, _ in string.Formatter().parse(v) if name is not None}
        unknown = used - _TEMPLATE_FIELDS
        if unknown or "" in used:
            raise ValueError(f"template may only use {sorted(_TEMPLATE_FIELDS)}, found {sorted(unknown or {''})}")
        return v


class _ScriptedFailure(RuntimeError):
    """The failure a scripted model was told to simulate."""


class ScriptedGenerator(Generator):
    """A model whose answers, pace and failures come from its options. Example::

        GeneratorConfig(name="fast", backend="scripted",
                        options={"responses": ["Paris.", "Rome."], "latency_s": 0.05, "fail_every": 3})
    """

    Options = ScriptedOptions

    def __init__(self, config):
        super().__init__(config)
        self._calls = 0
        self._rng = random.Random(self.options.seed)

    @property
    def calls(self) -> int:
        """How many generate/stream calls this generator has received."""
        return self._calls

    async def _start(self) -> None:
        if self.options.load_latency_s:
            await asyncio.sleep(self.options.load_latency_s)

    def answer(self, chat: list[ChatMessage], params: SamplingParams, call: int) -> tuple[str, str]:
        """The text and finish reason of call number ``call`` (pure: no waiting, no failure)."""
        o = self.options
        if o.responses is not None:
            text = o.responses[call % len(o.responses)]
        else:
            prompt = next(m.content for m in reversed(chat) if m.role == "user")
            text = o.template.format(model=self.name, prompt=prompt, call=call)
        finish = "stop"
        if params.max_tokens is not None and len(text.split()) > params.max_tokens:
            text = "".join(_pieces(text)[: params.max_tokens + (1 if text[:1].isspace() else 0)]).rstrip()
            finish = "length"
        text, hit = truncate_at_stop(text, params.stop)
        return text, ("stop" if hit else finish)

    @property
    def engine_dead(self) -> bool:
        return self.options.die_after_calls is not None and self._calls >= self.options.die_after_calls

    async def _check_health(self) -> None:
        if self.engine_dead:
            raise RuntimeError(f"the scripted engine died after {self._calls} calls")

    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        o = self.options
        if self.engine_dead:
            raise _ScriptedFailure("the scripted engine is dead")
        call, self._calls = self._calls, self._calls + 1
        failing = o.fail or (o.fail_every is not None and (call + 1) % o.fail_every == 0)
        delay = o.latency_s + (self._rng.uniform(0.0, o.jitter_s) if o.jitter_s else 0.0)
        if delay:
            await asyncio.sleep(delay)
        if o.hang:
            await asyncio.Event().wait()  # never set: only cancellation (a deadline) ends this call
        if failing and not o.fail_after_pieces:
            raise _ScriptedFailure(o.error_message)
        text, finish = self.answer(chat, params, call)
        for i, piece in enumerate(_pieces(text)):
            if failing and i == o.fail_after_pieces:
                raise _ScriptedFailure(o.error_message)
            if i and o.token_latency_s:
                await asyncio.sleep(o.token_latency_s)
            yield GenerationChunk(text=piece)
        if failing:  # fewer pieces than fail_after_pieces: fail at the end rather than succeed
            raise _ScriptedFailure(o.error_message)
        usage = Usage(
            prompt_tokens=sum(len(m.content.split()) for m in chat), completion_tokens=len(text.split())
        )
        yield GenerationChunk(text="", finish_reason=finish, usage=usage)


def _pieces(text: str) -> list[str]:
    """Words with their trailing whitespace (a leading-whitespace run is its own piece); they join to ``text``."""
    return re.findall(r"\S+\s*|\s+", text)
