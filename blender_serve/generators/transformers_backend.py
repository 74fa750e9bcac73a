"""Any Hugging Face causal LM, run in-process with transformers: the portable backend.

The model runs on one dedicated worker thread, so the event loop never blocks and requests reach
the model one at a time (a transformers model is not safe to call from two threads at once, and
batch-1 calls keep every request's output independent of its neighbours). For throughput under
concurrency use the vllm backend. Messages' contents are tokenized as plain text inside the chat
template's markup, so a special token a user types never opens a turn (``blender_serve.tokenize_safe``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.errors import InvalidInputError
from blender_serve.generators.base import Generator, _Collected
from blender_serve.logprobs import token_logprob
from blender_serve.prompts import chat_as_plain_prompt
from blender_serve.stops import StopMatcher, truncate_at_stop
from blender_serve.tokenize_safe import encode_chat, encode_plain
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, TokenLogprob, Usage

__all__ = ["TransformersGenerator"]


class TransformersOptions(BaseModel):
    """How to load and run a transformers causal LM."""

    model_config = ConfigDict(extra="forbid")
    device: str = Field("auto", description="'auto' (cuda, else mps, else cpu), 'cpu', 'cuda', 'cuda:1'... Ignored with device_map.")
    dtype: str = Field("auto", description="'auto' (bfloat16 on an accelerator, float32 on cpu), 'float32', 'float16' or 'bfloat16'.")
    device_map: Optional[Union[str, dict[str, Any]]] = Field(
        None, description="accelerate device_map for models larger than one device (e.g. 'auto'); overrides `device`."
    )
    trust_remote_code: bool = Field(False, description="Allow the checkpoint's own modelling code to run.")
    gguf_file: Optional[str] = Field(None, description="Load weights from this .gguf file inside the model directory (dequantized).")
    max_new_tokens: int = Field(256, ge=1, description="Most new tokens when the request sets no max_tokens.")
    torch_threads: Optional[int] = Field(
        None, ge=1, description="torch.set_num_threads at start (process-wide); set 1 per replica when several share a CPU."
    )
    revision: Optional[str] = Field(None, description="Hub revision (branch, tag or commit) when `model` is a hub id.")
    decoding: Literal["dynamic", "static", "compiled"] = Field(
        "dynamic", description="'dynamic' (transformers' default cache), 'static' (preallocated KV caches reused between calls, "
        "the same tokens) or 'compiled' (static plus a torch.compile'd decoding step; the first call of each shape compiles).")


class TransformersGenerator(Generator):
    """A causal LM loaded with AutoModelForCausalLM from ``config.model`` (local dir or hub id). Example::

        GeneratorConfig(name="smol", backend="transformers", model="/models/SmolLM2-135M-Instruct",
                        sampling={"temperature": 0}, options={"max_new_tokens": 64})
    """

    Options = TransformersOptions
    token_logprobs = True

    def __init__(self, config):
        super().__init__(config)
        if not self.config.model:
            raise InvalidInputError(f"generator {self.name!r} (transformers) needs `model`: a checkpoint directory or hub id")
        self._worker = None  # a GenerationWorker once started

    # ------------------------------------------------------------------------------ lifecycle
    async def _start(self) -> None:
        self._worker = await asyncio.to_thread(self._load)

    def _load(self):
        from blender_serve.hf_generation import GenerationWorker
        from blender_serve.loading import load_pretrained

        o = self.options
        if o.torch_threads:
            import torch

            torch.set_num_threads(o.torch_threads)
        model, tokenizer, _ = load_pretrained(
            "AutoModelForCausalLM", self.config.model, device=o.device, dtype=o.dtype, half="bfloat16",
            device_map=o.device_map, trust_remote_code=o.trust_remote_code, revision=o.revision, gguf_file=o.gguf_file)
        return GenerationWorker(model, tokenizer, name=self.name, decoding=o.decoding)

    async def _close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()

    # ---------------------------------------------------------------------------- generation
    async def _check_health(self) -> None:
        if self._worker is None:
            raise RuntimeError("the model is not loaded")
        self._worker.check_health()

    async def _generate(self, chat: list[ChatMessage], params: SamplingParams) -> _Collected:
        input_ids = self._encode(chat)
        kwargs = self._kwargs(params)
        clock = _FirstTokenClock()
        logits = [] if params.logprobs is not None else None
        (new_ids,) = await self._worker.arun([input_ids], kwargs, params.seed, streamer=clock, logits=logits)
        text, hit = truncate_at_stop(self._worker.tokenizer.decode(new_ids, skip_special_tokens=True), params.stop)
        usage = Usage(prompt_tokens=len(input_ids), completion_tokens=len(new_ids))
        return _Collected(text, usage, self._worker.finish_reason(new_ids, kwargs["max_new_tokens"], hit),
                          clock.first_token_at, self._logprobs(new_ids, logits, params.logprobs))

    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        input_ids = self._encode(chat)
        kwargs = self._kwargs(params)
        logits = [] if params.logprobs is not None else None
        stream = self._worker.stream(input_ids, kwargs, params.seed, logits)
        matcher = StopMatcher(params.stop)
        async for piece in stream:
            text = matcher.push(piece)
            if text:
                yield GenerationChunk(text=text)
            if matcher.stopped:
                stream.stop()  # keep draining so the generation's end is consumed
        tail = matcher.flush()
        if tail:
            yield GenerationChunk(text=tail)
        new_ids = stream.new_ids
        usage = Usage(prompt_tokens=len(input_ids), completion_tokens=len(new_ids))
        finish = self._worker.finish_reason(new_ids, kwargs["max_new_tokens"], matcher.stopped)
        # generate() hands out the logits once it is done: they come with the last chunk
        yield GenerationChunk(finish_reason=finish, usage=usage, logprobs=self._logprobs(new_ids, logits, params.logprobs))

    # ------------------------------------------------------------------------------- helpers
    def _logprobs(self, new_ids: list[int], logits: Optional[list], top: Optional[int]) -> Optional[list[TokenLogprob]]:
        """Each generated token's entry (an end-of-sequence token has none: it is not in the text)."""
        if logits is None or top is None:
            return None
        tok = self._worker.tokenizer

        def token_bytes(t: int) -> bytes:
            # A byte-level token holding part of a character decodes to U+FFFD: its bytes are those.
            return tok.decode([t], skip_special_tokens=False).encode("utf-8")

        return [token_logprob(row.numpy(), t, top, token_bytes)
                for t, row in zip(new_ids, logits) if t not in self._worker.eos_ids]

    def _encode(self, chat: list[ChatMessage]) -> list[int]:
        tok = self._worker.tokenizer
        if getattr(tok, "chat_template", None):
            # The template already wrote any BOS the model expects.
            return encode_chat(tok, [m.model_dump() for m in chat], add_generation_prompt=True)
        return encode_plain(tok, chat_as_plain_prompt(chat), add_special_tokens=True)

    def _kwargs(self, params: SamplingParams) -> dict[str, Any]:
        from blender_serve.hf_generation import generate_kwargs

        # temperature None -> the checkpoint's own default (greedy unless it says do_sample).
        default = bool(self._worker.model.generation_config.do_sample)
        return generate_kwargs(
            max_new_tokens=params.max_tokens or self.options.max_new_tokens,
            do_sample=default if params.temperature is None else params.temperature > 0,
            temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            stop=params.stop, tokenizer=self._worker.tokenizer,
        )


class _FirstTokenClock:
    """A minimal streamer that records when the first new token came out (generate() path)."""

    def __init__(self):
        self.first_token_at: Optional[float] = None
        self._puts = 0

    def put(self, value) -> None:
        self._puts += 1  # the first put is the prompt
        if self._puts == 2:
            self.first_token_at = time.perf_counter()

    def end(self) -> None:
        pass
