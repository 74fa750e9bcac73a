"""The one interface every base-LLM backend implements, and the logic they all share.

A backend subclasses :class:`Generator`, declares its ``Options`` model and implements ``_stream``
(text pieces, the last one carrying ``finish_reason`` and ``usage``). It may also override
``_generate`` when it has a cheaper non-streaming path; by default ``generate`` collects the stream.
Everything else (message checks, the system prompt, sampling defaults, timing, wrapping backend
failures in :class:`GenerationError`) lives here, once.
"""

from __future__ import annotations

import abc
import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import ClassVar, Optional

from pydantic import BaseModel, ConfigDict

from blender_serve.activity import Activity
from blender_serve.config import GeneratorConfig
from blender_serve.errors import BlenderError, GenerationError, UnsupportedParameterError, validated
from blender_serve.prompts import normalize_messages
from blender_serve.types import ChatMessage, Generation, GenerationChunk, SamplingParams, TokenLogprob, Usage

__all__ = ["Generator", "NoOptions"]


class NoOptions(BaseModel):
    """Options of a backend that takes none."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class _Collected:
    """What a backend's one-shot path returns; the base class adds the model name and timings.

    ``time_to_first_token_s`` is an absolute ``time.perf_counter()`` reading (None if unknown).
    """

    text: str
    usage: Usage
    finish_reason: Optional[str]
    time_to_first_token_s: Optional[float] = None
    logprobs: Optional[list[TokenLogprob]] = None


class Generator(abc.ABC):
    """One base LLM behind an async chat interface.

    Build one with :func:`blender_serve.generators.build_generator`; construction validates the
    options and loads nothing. ``start()`` loads the model (or opens the client); ``generate`` and
    ``stream`` call it lazily. Example::

        gen = build_generator(GeneratorConfig(name="a", backend="scripted", options={"template": "hi"}))
        out = await gen.generate([{"role": "user", "content": "Hello"}])
        assert out.text == "hi" and out.model == "a"
    """

    backend: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: Whether ``chat_raw`` relays a whole OpenAI chat completion body (tools, logprobs...) to the
    #: model's own server; backends that generate text here take chats through ``generate`` only.
    raw_chat: ClassVar[bool] = False
    #: Whether the backend computes token log-probabilities (``SamplingParams.logprobs``); the
    #: others refuse a request for them with UnsupportedParameterError.
    token_logprobs: ClassVar[bool] = False

    def __init__(self, config: GeneratorConfig):
        self.config = config = validated(GeneratorConfig, config, "generator config")
        self.options = validated(self.Options, config.options, f"options of the {self.backend!r} generator {config.name!r}",
                                 hint=f"valid options: {', '.join(self.Options.model_fields) or 'none'}")
        self._started = False
        self._start_lock: Optional[asyncio.Lock] = None
        self._start_lock_loop: Optional[asyncio.AbstractEventLoop] = None
        self.activity = Activity()

    @property
    def name(self) -> str:
        """The generator's name in the ensemble (``config.name``); also ``Generation.model``."""
        return self.config.name

    @property
    def started(self) -> bool:
        """Whether ``start()`` has completed (and ``close()`` has not been called since)."""
        return self._started

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.config.model!r})"

    # ----------------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Load the model or open the client. Idempotent and safe to call concurrently."""
        if self._started:
            return
        loop = asyncio.get_running_loop()
        # asyncio locks bind to one loop; a generator may outlive a loop (tests, notebooks).
        if self._start_lock is None or self._start_lock_loop is not loop:
            self._start_lock, self._start_lock_loop = asyncio.Lock(), loop
        async with self._start_lock:
            if self._started:
                return
            try:
                await self._start()
            except Exception as e:
                raise GenerationError(
                    f"generator {self.name!r} ({self.backend}) could not start: {type(e).__name__}: {e}"
                ) from e
            self._started = True

    async def close(self) -> None:
        """Release the model or client. Idempotent; a later call to generate() starts it again."""
        if not self._started:
            return
        self._started = False
        await self._close()

    async def check_health(self) -> None:
        """Raise when this generator cannot answer now: not started, or its engine is dead (the
        backend's ``_check_health``). A serving replica reports this to Ray Serve, which replaces it."""
        if not self._started:
            raise GenerationError(f"generator {self.name!r} is not started")
        await self._check_health()

    async def __aenter__(self) -> "Generator":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------- serving
    async def generate(
        self, messages: Sequence[ChatMessage | dict], params: SamplingParams | dict | None = None
    ) -> Generation:
        """Answer a chat in one piece.

        Args:
            messages: the conversation, as ChatMessage objects or OpenAI-style dicts.
            params: sampling settings; unset fields fall back to ``config.sampling``.
        Returns:
            a Generation with the text, token usage, finish reason and timings.
        Raises:
            InvalidInputError for malformed messages or params; GenerationError when the backend fails.
        """
        chat, sampling = self.prepare(messages, params)
        await self.start()
        started = time.perf_counter()
        with self.activity.track():
            try:
                out = await self._generate(chat, sampling)
            except BlenderError:
                raise
            except Exception as e:
                raise self._failure(e) from e
        ttft = out.time_to_first_token_s
        return Generation(
            model=self.name,
            text=out.text,
            usage=out.usage,
            finish_reason=out.finish_reason,
            latency_s=time.perf_counter() - started,
            time_to_first_token_s=None if ttft is None else ttft - started,
            logprobs=out.logprobs,
        )

    def stream(
        self, messages: Sequence[ChatMessage | dict], params: SamplingParams | dict | None = None
    ) -> AsyncIterator[GenerationChunk]:
        """Answer a chat piece by piece.

        The input is checked right away (InvalidInputError here, not on the first iteration). The
        pieces' texts join to the full answer; the last chunk carries ``finish_reason`` and ``usage``.
        Example::

            async for chunk in gen.stream([{"role": "user", "content": "Hi"}]):
                print(chunk.text, end="")
        """
        chat, sampling = self.prepare(messages, params)
        return self._checked_stream(chat, sampling)

    async def chat_raw(self, body: dict, stream: bool = False):
        """An OpenAI chat completion body, answered by the model's own server as it is (see
        ``raw_chat``). Backends without a server of their own raise UnsupportedParameterError."""
        raise UnsupportedParameterError(f"generator {self.name!r} ({self.backend}) takes text chats only, not whole "
                                        f"OpenAI request bodies; use a base model on the openai backend")

    def prepare(
        self, messages: Sequence[ChatMessage | dict], params: SamplingParams | dict | None = None
    ) -> tuple[list[ChatMessage], SamplingParams]:
        """The checked conversation (system prompt added) and the effective sampling settings."""
        chat = normalize_messages(messages)
        if self.config.system_prompt and not any(m.role == "system" for m in chat):
            chat.insert(0, ChatMessage(role="system", content=self.config.system_prompt))
        sampling = self._merge_params(params)
        if sampling.logprobs is not None and not self.token_logprobs:
            raise UnsupportedParameterError(f"generator {self.name!r} ({self.backend}) does not compute token "
                                            "log-probabilities; drop logprobs", param="logprobs")
        return chat, sampling

    # ------------------------------------------------------------------------- backend extension
    async def _start(self) -> None:  # noqa: B027 - optional hook
        """Load what the backend needs (default: nothing)."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``_start`` acquired (default: nothing)."""

    async def _check_health(self) -> None:  # noqa: B027 - optional hook
        """Raise when the started engine can no longer answer (default: it always can)."""

    @abc.abstractmethod
    def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        """Yield text pieces; the last chunk must carry finish_reason and usage."""

    async def _generate(self, chat: list[ChatMessage], params: SamplingParams) -> _Collected:
        """Default one-shot path: collect ``_stream``."""
        pieces: list[str] = []
        logprobs: Optional[list[TokenLogprob]] = [] if params.logprobs is not None else None
        ttft = finish = usage = None
        async for chunk in self._stream(chat, params):
            if chunk.text:
                ttft = ttft or time.perf_counter()
                pieces.append(chunk.text)
            if logprobs is not None and chunk.logprobs:
                logprobs.extend(chunk.logprobs)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
        return _Collected("".join(pieces), usage or Usage(), finish, ttft, logprobs)

    # ------------------------------------------------------------------------------------ helpers
    async def _checked_stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        await self.start()
        final_seen = False
        with self.activity.track():
            try:
                async for chunk in self._stream(chat, params):
                    final_seen = final_seen or chunk.finish_reason is not None or chunk.usage is not None
                    self.activity.chunks += 1
                    yield chunk
            except BlenderError:
                raise
            except Exception as e:  # CancelledError / GeneratorExit are BaseExceptions and pass through
                raise self._failure(e) from e
        if not final_seen:  # keep the promise that the last chunk carries the metadata
            yield GenerationChunk(text="", finish_reason=None, usage=Usage())

    def _merge_params(self, params: SamplingParams | dict | None) -> SamplingParams:
        if params is None:
            return self.config.sampling.model_copy()
        return validated(SamplingParams, params, "sampling params").merged_over(self.config.sampling)

    def _failure(self, e: BaseException) -> GenerationError:
        return GenerationError(f"generator {self.name!r} ({self.backend}) failed: {type(e).__name__}: {e}")
