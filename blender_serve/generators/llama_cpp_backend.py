"""GGUF models as they are, run in-process by llama.cpp (through ``llama-cpp-python``): a fast CPU backend.

``model`` is a ``.gguf`` file (or ``local:smollm2-135m-instruct-gguf``): quantized weights are read
as they are, with no conversion. ``llama-cpp-python`` has no wheels on PyPI and compiles llama.cpp
when installed (minutes), so it is the opt-in ``llama-cpp`` extra (``scripts/llama_cpp.sh`` builds
it with only what this backend uses).

- One worker thread per model: calls reach llama.cpp one at a time, in arrival order, and never
  block the event loop; a deadline, a client that left or a matched stop string ends the generation
  at its next token. llama.cpp reuses the KV cache of the prompt prefix it saw last.
- The chat template is the GGUF's own (``tokenizer.chat_template``, or ``options.chat_template``),
  rendered with jinja2 as transformers renders templates. Template markup is tokenized with
  special-token parsing on, message contents with it off (``tokenize_safe.chat_segments`` splits
  them), so a special token a user types never opens a turn.
- Sampling: temperature 0 or None is greedy; top_k and top_p apply only when set (llama.cpp's own
  defaults, top_k 40 and min_p 0.05, are switched off so a request means what it says elsewhere).
- Token log-probabilities (``SamplingParams.logprobs``) come from the logits each token was sampled
  from, sent with the text they belong to (``blender_serve.logprobs``).
"""

from __future__ import annotations

import asyncio
import codecs
import concurrent.futures
import random
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from blender_serve.errors import CheckpointError, InvalidInputError
from blender_serve.generators.base import Generator
from blender_serve.logprobs import token_logprob
from blender_serve.prompts import chat_as_plain_prompt
from blender_serve.stops import StopMatcher
from blender_serve.tokenize_safe import Segment, chat_segments
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, TokenLogprob, Usage

__all__ = ["LlamaCppGenerator", "LlamaCppOptions", "GGUFChatTemplate"]

INSTALL_HINT = ("the llama_cpp backend needs llama-cpp-python, which compiles llama.cpp on install: "
                "`bash scripts/llama_cpp.sh` (or `pip install blender-serve[llama-cpp]`)")


class LlamaCppOptions(BaseModel):
    """How to load and run a GGUF model with llama.cpp."""

    model_config = ConfigDict(extra="forbid")
    n_ctx: int = Field(4096, ge=16, description="Context window in tokens (prompt + answer); the KV cache is sized for it.")
    n_threads: Optional[int] = Field(
        None, ge=1, description="CPU threads for decoding (None: llama.cpp's default); set 1 per replica when several share a CPU.")
    n_threads_batch: Optional[int] = Field(
        None, ge=1, description="CPU threads for reading prompts (None: as n_threads). llama.cpp's own default is every "
        "core, which replicas sharing a CPU oversubscribe: measured here, 3 replicas' concurrent prompts took 1.2 s instead of 0.15 s.")
    n_batch: int = Field(512, ge=1, description="Prompt tokens evaluated per llama.cpp batch.")
    max_new_tokens: int = Field(256, ge=1, description="Most new tokens when the request sets no max_tokens.")
    chat_template: Optional[str] = Field(None, description="A Jinja chat template to use instead of the GGUF file's own.")


class GGUFChatTemplate:
    """A GGUF file's chat template, rendered the way transformers renders chat templates (a sandboxed
    jinja2 environment, trim_blocks and lstrip_blocks, ``raise_exception``), so that
    ``tokenize_safe.chat_segments`` can split its output into markup and contents."""

    def __init__(self, template: str, bos_token: str = "", eos_token: str = ""):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise InvalidInputError(f"the model's chat template refused the messages: {message}")

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
        env.globals["raise_exception"] = raise_exception
        self._template = env.from_string(template)
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def apply_chat_template(self, messages, tokenize: bool = False, add_generation_prompt: bool = False, **kwargs) -> str:
        assert not tokenize, "GGUFChatTemplate renders text only"
        return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                     **self._tokens, **kwargs)


class LlamaCppGenerator(Generator):
    """A GGUF model run by llama.cpp. Example::

        GeneratorConfig(name="smol", backend="llama_cpp", model="/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                        sampling={"temperature": 0}, options={"n_threads": 1})
    """

    Options = LlamaCppOptions
    token_logprobs = True

    def __init__(self, config):
        super().__init__(config)
        if not self.config.model:
            raise InvalidInputError(f"generator {self.name!r} (llama_cpp) needs `model`: a .gguf file")
        self._llama = None
        self._template: Optional[GGUFChatTemplate] = None
        self._eog = None  # token -> bool: does it end a generation
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    # ------------------------------------------------------------------------------ lifecycle
    async def _start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"llama-{self.name}")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from blender_serve.loading import resolve_model_path

        try:
            from llama_cpp import Llama, llama_cpp
        except ImportError as e:
            raise CheckpointError(INSTALL_HINT) from e
        path = Path(resolve_model_path(self.config.model)).expanduser()
        if not path.is_file() or path.suffix != ".gguf":
            raise CheckpointError(f"generator {self.name!r} (llama_cpp): {path} is not a .gguf file; pass the file itself")
        o = self.options
        llama = Llama(model_path=str(path), n_ctx=o.n_ctx, n_threads=o.n_threads, n_batch=o.n_batch, verbose=False,
                      n_threads_batch=o.n_threads_batch or o.n_threads)
        template = o.chat_template or llama.metadata.get("tokenizer.chat_template")
        if template:
            vocab = llama._model  # noqa: SLF001 - the token texts live on the model wrapper only
            self._template = GGUFChatTemplate(template, _token_text(llama, vocab.token_bos()), _token_text(llama, vocab.token_eos()))
        # One token through the model before the first request: it pages the mmap'd weights in
        # (about 2 s of a served first answer here otherwise) and allocates the compute buffers.
        llama.eval(llama.tokenize(b"Hello", add_bos=False, special=False)[:1])
        llama.reset()
        eog = getattr(llama_cpp, "llama_vocab_is_eog", None)
        self._eog = (lambda t: bool(eog(llama._model.vocab, t))) if eog else (lambda t: t == llama.token_eos())  # noqa: SLF001
        self._llama = llama

    async def _close(self) -> None:
        llama, self._llama = self._llama, None
        executor, self._executor = self._executor, None
        if executor is not None:
            if llama is not None:
                executor.submit(llama.close)
            executor.shutdown(wait=False)

    async def _check_health(self) -> None:
        if self._llama is None:
            raise RuntimeError("the model is not loaded")

    # ---------------------------------------------------------------------------- generation
    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        cancel = threading.Event()
        put = lambda item: loop.call_soon_threadsafe(queue.put_nowait, item)  # noqa: E731
        job = loop.run_in_executor(self._executor, self._run, chat, params, cancel, put)
        matcher = StopMatcher(params.stop)
        logprobs: list[TokenLogprob] = []  # the tokens' entries, sent with the next text that goes out
        try:
            while True:
                item = await queue.get()
                if isinstance(item, _Done):
                    break
                if isinstance(item, TokenLogprob):
                    logprobs.append(item)
                    continue
                text = matcher.push(item)
                if text:
                    yield GenerationChunk(text=text, logprobs=logprobs or None)
                    logprobs = []
                if matcher.stopped:
                    cancel.set()  # keep draining until the worker says it is done
            done = await job
        finally:
            cancel.set()  # a consumer that left (deadline, disconnect) ends the generation at its next token
        tail = matcher.flush()
        if tail or logprobs:
            yield GenerationChunk(text=tail, logprobs=logprobs or None)
        finish = "stop" if matcher.stopped or done.eog else "length"
        yield GenerationChunk(finish_reason=finish, usage=Usage(prompt_tokens=done.prompt_tokens,
                                                                completion_tokens=done.completion_tokens))

    def _run(self, chat: list[ChatMessage], params: SamplingParams, cancel: threading.Event, put) -> "_Done":
        """On the worker thread: encode, generate token by token, hand text pieces to ``put``."""
        llama = self._llama
        done = _Done()
        try:
            prompt = self._encode(chat)
            done.prompt_tokens = len(prompt)
            room = llama.n_ctx() - len(prompt)
            if room < 1:
                raise InvalidInputError(f"the prompt is {len(prompt)} tokens; model {self.name!r} holds {llama.n_ctx()} "
                                        "(options.n_ctx): send a shorter conversation")
            limit = min(params.max_tokens or self.options.max_new_tokens, room)
            llama.set_seed(params.seed if params.seed is not None else random.randrange(2**31))
            greedy = not params.temperature
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            tokens = llama.generate(prompt, temp=0.0 if greedy else params.temperature, top_k=params.top_k or 0,
                                    top_p=params.top_p if params.top_p is not None else 1.0, min_p=0.0,
                                    repeat_penalty=1.0)
            for token in tokens:
                if self._eog(token):
                    done.eog = True
                    break
                done.completion_tokens += 1
                if params.logprobs is not None:  # the logits it was sampled from are still the context's last
                    logits = np.ctypeslib.as_array(llama._ctx.get_logits_ith(-1), shape=(llama.n_vocab(),))
                    put(token_logprob(logits, token, params.logprobs, lambda t: llama.detokenize([t], special=True)))
                piece = decoder.decode(llama.detokenize([token]))
                if piece:
                    put(piece)
                if cancel.is_set() or done.completion_tokens >= limit:
                    break
            tail = decoder.decode(b"", final=True)
            if tail:
                put(tail)
            return done
        finally:
            put(done)

    def _encode(self, chat: list[ChatMessage]) -> list[int]:
        llama = self._llama
        if self._template is not None:
            segments = chat_segments(self._template, [m.model_dump() for m in chat], add_generation_prompt=True)
            add_bos = False  # the template writes any BOS the model wants
        else:
            segments: list[Segment] = [(chat_as_plain_prompt(chat), True)]
            add_bos = True
        ids: list[int] = []
        for i, (text, user) in enumerate(segments):
            ids += llama.tokenize(text.encode("utf-8"), add_bos=add_bos and i == 0, special=not user)
        return ids


class _Done:
    """What the worker reports at the end of one generation."""

    def __init__(self):
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.eog = False


def _token_text(llama, token: int) -> str:
    if token is None or token < 0:
        return ""
    return llama.detokenize([token], special=True).decode("utf-8", errors="replace")
