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
from typing import Any, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, ValidationError

from blender_serve.config import GeneratorConfig
from blender_serve.errors import BlenderError, GenerationError, InvalidInputError
from blender_serve.types import ChatMessage, Generation, GenerationChunk, SamplingParams, Usage

__all__ = ["Generator", "NoOptions", "StopMatcher", "normalize_messages", "truncate_at_stop", "chat_as_plain_prompt"]

_MESSAGE_HINT = "each message is {'role': 'system'|'user'|'assistant', 'content': '<text>'}"


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

    def __init__(self, config: GeneratorConfig):
        if isinstance(config, dict):
            config = _validate(GeneratorConfig, config, "generator config")
        if not isinstance(config, GeneratorConfig):
            raise InvalidInputError(
                f"a generator needs a GeneratorConfig (or a dict of its fields), got {type(config).__name__}"
            )
        self.config = config
        try:
            self.options = self.Options.model_validate(config.options)
        except ValidationError as e:
            fields = ", ".join(self.Options.model_fields) or "none"
            raise InvalidInputError(
                f"invalid options for the {self.backend!r} generator {config.name!r}: "
                f"{_brief(e)}. Valid options: {fields}"
            ) from None
        self._started = False
        self._start_lock: Optional[asyncio.Lock] = None
        self._start_lock_loop: Optional[asyncio.AbstractEventLoop] = None

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
            except BlenderError:
                raise
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

    def prepare(
        self, messages: Sequence[ChatMessage | dict], params: SamplingParams | dict | None = None
    ) -> tuple[list[ChatMessage], SamplingParams]:
        """The checked conversation (system prompt added) and the effective sampling settings."""
        chat = normalize_messages(messages)
        if self.config.system_prompt and not any(m.role == "system" for m in chat):
            chat.insert(0, ChatMessage(role="system", content=self.config.system_prompt))
        return chat, self._merge_params(params)

    # ------------------------------------------------------------------------- backend extension
    async def _start(self) -> None:  # noqa: B027 - optional hook
        """Load what the backend needs (default: nothing)."""

    async def _close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``_start`` acquired (default: nothing)."""

    @abc.abstractmethod
    def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        """Yield text pieces; the last chunk must carry finish_reason and usage."""

    async def _generate(self, chat: list[ChatMessage], params: SamplingParams) -> _Collected:
        """Default one-shot path: collect ``_stream``."""
        pieces: list[str] = []
        ttft = finish = usage = None
        async for chunk in self._stream(chat, params):
            if chunk.text:
                ttft = ttft or time.perf_counter()
                pieces.append(chunk.text)
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
        return _Collected("".join(pieces), usage or Usage(), finish, ttft)

    # ------------------------------------------------------------------------------------ helpers
    async def _checked_stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        await self.start()
        final_seen = False
        try:
            async for chunk in self._stream(chat, params):
                final_seen = final_seen or chunk.finish_reason is not None or chunk.usage is not None
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
        if isinstance(params, dict):
            params = _validate(SamplingParams, params, "sampling params")
        if not isinstance(params, SamplingParams):
            raise InvalidInputError(
                f"params must be a SamplingParams, a dict of its fields or None, got {type(params).__name__}"
            )
        return params.merged_over(self.config.sampling)

    def _failure(self, e: BaseException) -> GenerationError:
        return GenerationError(f"generator {self.name!r} ({self.backend}) failed: {type(e).__name__}: {e}")


# ---------------------------------------------------------------------------------- pure helpers
def normalize_messages(messages: Any) -> list[ChatMessage]:
    """Check a conversation and return it as a new list of ChatMessage.

    Raises InvalidInputError, naming the offending index, for a non-list, an empty list, an item
    that is neither a ChatMessage nor a dict of one, a conversation without a user turn, or a last
    message with empty content.
    """
    if isinstance(messages, (str, bytes, dict, ChatMessage)) or not isinstance(messages, Sequence):
        raise InvalidInputError(
            f"messages must be a list of chat messages ({_MESSAGE_HINT}), got {type(messages).__name__}"
        )
    if not messages:
        raise InvalidInputError(f"messages is empty: pass at least one user message ({_MESSAGE_HINT})")
    chat: list[ChatMessage] = []
    for i, m in enumerate(messages):
        if isinstance(m, ChatMessage):
            chat.append(m)
        elif isinstance(m, dict):
            chat.append(_validate(ChatMessage, m, f"messages[{i}]", hint=_MESSAGE_HINT))
        else:
            raise InvalidInputError(f"messages[{i}] is a {type(m).__name__}; {_MESSAGE_HINT}")
    if not any(m.role == "user" for m in chat):
        raise InvalidInputError("messages has no user turn: add a {'role': 'user', 'content': ...} message")
    if not chat[-1].content.strip():
        raise InvalidInputError(
            f"the last message (messages[{len(chat) - 1}]) has empty content: send the text to answer"
        )
    return chat


def chat_as_plain_prompt(chat: Sequence[ChatMessage]) -> str:
    """A 'role: content' transcript ending in 'assistant:', for tokenizers without a chat template."""
    return "".join(f"{m.role}: {m.content}\n" for m in chat) + "assistant:"


def truncate_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text, False) if cut < 0 else (text[:cut], True)


class StopMatcher:
    """Applies stop strings to streamed text: emits what is safe, holds back a possible stop prefix.

    ``push(piece)`` returns the text that can be sent now; after a stop string appears, ``stopped``
    is true and nothing more is returned. ``flush()`` returns the held-back tail at the end.
    """

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self._held + piece
        cut, hit = truncate_at_stop(text, self.stops)
        if hit:
            self.stopped, self._held = True, ""
            return cut
        # Longest tail of `text` that could still grow into a stop string.
        keep = max((k for s in self.stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        out, self._held = ("" if self.stopped else self._held), ""
        return out


def _validate(model: type[BaseModel], value: Any, what: str, hint: str = "") -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as e:
        raise InvalidInputError(f"{what} is invalid: {_brief(e)}" + (f"; {hint}" if hint else "")) from None


def _brief(e: ValidationError) -> str:
    """A one-line summary of a pydantic error: 'field: problem' for each problem."""
    parts = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "value"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
