"""vLLM's async engine: the production backend (continuous batching across concurrent requests).

Written against vLLM 0.32 (``vllm.v1.engine.async_llm.AsyncLLM``, the engine ``vllm serve`` uses).
Chats are rendered by the engine's own renderer, so a model answers exactly what ``vllm serve``
would give it. ``vllm`` is imported in ``start()`` only. A started engine belongs to the event loop
that first used it (vLLM's output handler is an asyncio task of that loop).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.errors import InvalidInputError
from blender_serve.generators.base import Generator
from blender_serve.logprobs import top_entry
from blender_serve.prompts import chat_as_plain_prompt
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, TokenLogprob, TopLogprob, Usage

__all__ = ["VLLMGenerator"]


class VLLMOptions(BaseModel):
    """Engine settings; anything vLLM's AsyncEngineArgs takes can go in ``engine_args``."""

    model_config = ConfigDict(extra="forbid")
    dtype: str = Field("auto", description="Weights/activation dtype: 'auto', 'float32', 'float16', 'bfloat16'.")
    max_model_len: Optional[int] = Field(None, ge=16, description="Context length (prompt + answer); default: the model's.")
    gpu_memory_utilization: Optional[float] = Field(
        None, gt=0.0, le=1.0,
        description="Fraction of GPU memory (CPU build: of node memory) vLLM reserves; lower it to share a GPU between replicas.",
    )
    kv_cache_memory_bytes: Optional[int] = Field(
        None, ge=1 << 20, description="Exact KV-cache size in bytes (overrides gpu_memory_utilization); handy on CPU."
    )
    enforce_eager: bool = Field(False, description="Skip CUDA graphs / torch.compile: faster start, slower decode. Use True on CPU.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one replica shards the model over.")
    max_num_seqs: Optional[int] = Field(None, ge=1, description="Most sequences batched in one engine step.")
    trust_remote_code: bool = Field(False, description="Allow the checkpoint's own modelling code to run.")
    max_new_tokens: int = Field(256, ge=1, description="Most new tokens when the request sets no max_tokens.")
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra vllm.AsyncEngineArgs fields (e.g. quantization, seed); they win over the fields above."
    )


class VLLMGenerator(Generator):
    """A model served by an in-process vLLM AsyncLLM engine. Example::

        GeneratorConfig(name="llama", backend="vllm", model="meta-llama/Llama-3.1-8B-Instruct",
                        options={"max_model_len": 8192, "gpu_memory_utilization": 0.45})
    """

    Options = VLLMOptions
    token_logprobs = True

    def __init__(self, config):
        super().__init__(config)
        if not self.config.model:
            raise InvalidInputError(f"generator {self.name!r} (vllm) needs `model`: a checkpoint directory or hub id")
        self._engine = None
        self._defaults: dict[str, Any] = {}

    def engine_kwargs(self) -> dict[str, Any]:
        """The AsyncEngineArgs keyword arguments this generator starts the engine with."""
        o = self.options
        kwargs: dict[str, Any] = {
            "model": _resolve(self.config.model),
            "dtype": o.dtype,
            "enforce_eager": o.enforce_eager,
            "tensor_parallel_size": o.tensor_parallel_size,
            "trust_remote_code": o.trust_remote_code,
            "disable_log_stats": True,  # per-request stats logging is the serving layer's job
        }
        optional = {
            "max_model_len": o.max_model_len,
            "gpu_memory_utilization": o.gpu_memory_utilization,
            "kv_cache_memory_bytes": o.kv_cache_memory_bytes,
            "max_num_seqs": o.max_num_seqs,
        }
        kwargs.update({k: v for k, v in optional.items() if v is not None})
        kwargs.update(o.engine_args)
        return kwargs

    async def _start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        args = AsyncEngineArgs(**self.engine_kwargs())
        # Building the engine starts its core process and loads weights (seconds to minutes): do it
        # off the event loop. AsyncLLM binds to a loop only on its first request.
        self._engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        self._defaults = self._engine.model_config.get_diff_sampling_param()

    async def _close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is None:
            return
        # Stop vLLM's output-handler task first: otherwise it sees the engine process exit and logs
        # a spurious "EngineDeadError" on every orderly shutdown.
        handler = getattr(engine, "output_handler", None)
        if handler is not None:
            handler.cancel()
        await asyncio.to_thread(engine.shutdown)

    async def _check_health(self) -> None:
        """vLLM's own probe: raises once its engine core process has died."""
        await self._engine.check_health()

    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        engine = self._engine
        prompt = await self._render(chat)
        request_id = f"{self.name}-{uuid.uuid4().hex}"
        outputs = engine.generate(prompt, self._sampling(params), request_id)
        prompt_tokens = completion_tokens = 0
        finish = None
        try:
            async for out in outputs:
                if out.prompt_token_ids and not prompt_tokens:
                    prompt_tokens = len(out.prompt_token_ids)
                piece = out.outputs[0]
                completion_tokens += len(piece.token_ids)  # DELTA outputs: only the new ids
                logprobs = _logprobs(piece, params.logprobs)
                if logprobs and out.finished and piece.finish_reason == "stop" and not isinstance(piece.stop_reason, str):
                    logprobs = logprobs[:-1] or None  # an end-of-sequence token ended it: not in the text, no entry
                if piece.text or logprobs:
                    yield GenerationChunk(text=piece.text, logprobs=logprobs)
                if out.finished:
                    finish = piece.finish_reason
        finally:
            # Closing vLLM's generator early (client gone, deadline) aborts the request in the engine.
            await outputs.aclose()
        yield GenerationChunk(finish_reason=finish, usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens))

    async def _render(self, chat: list[ChatMessage]):
        """The engine input for a chat, rendered like ``vllm serve`` renders /v1/chat/completions."""
        renderer = self._engine.renderer
        if getattr(self._engine.get_tokenizer(), "chat_template", None):
            from vllm.renderers import ChatParams

            params = ChatParams(chat_template_kwargs={"add_generation_prompt": True})
            _, (prompt,) = await renderer.render_chat_async([[m.model_dump() for m in chat]], params)
        else:
            (prompt,) = await renderer.render_cmpl_async([{"prompt": chat_as_plain_prompt(chat)}])
        return prompt

    def _sampling(self, params: SamplingParams):
        from vllm import SamplingParams as VSamplingParams
        from vllm.sampling_params import RequestOutputKind

        # Unset fields follow the checkpoint's generation_config (temperature, top_p, repetition
        # penalty...), as `vllm serve` does; the answer length is ours to bound.
        kwargs: dict[str, Any] = {k: v for k, v in self._defaults.items() if k != "max_tokens"}
        for key in ("temperature", "top_p", "top_k", "seed"):
            if getattr(params, key) is not None:
                kwargs[key] = getattr(params, key)
        fmt = params.response_format
        if fmt is not None and fmt.type != "text":
            kwargs["structured_outputs"] = _structured_outputs(fmt)
        if params.logprobs is not None:
            kwargs["logprobs"] = params.logprobs
        return VSamplingParams(
            **kwargs,
            max_tokens=params.max_tokens or self.options.max_new_tokens,
            stop=list(params.stop) or None,
            output_kind=RequestOutputKind.DELTA,
        )


def _logprobs(piece, top: Optional[int]) -> Optional[list[TokenLogprob]]:
    """The new tokens' entries from vLLM's (one {token id: Logprob} dict per token: the chosen one
    and the ``top`` most likely, ranked; vLLM's log-probabilities are of the raw logits)."""
    if top is None or not piece.logprobs:
        return None

    def entry(token_id: int, lp) -> TopLogprob:
        return top_entry((lp.decoded_token or "").encode("utf-8"), lp.logprob)

    out = []
    for token_id, ranked in zip(piece.token_ids, piece.logprobs):
        best = sorted((item for item in ranked.items() if item[1].rank is not None and item[1].rank <= top),
                      key=lambda item: item[1].rank)
        out.append(TokenLogprob(**entry(token_id, ranked[token_id]).model_dump(),
                                top_logprobs=[entry(t, lp) for t, lp in best[:top]]))
    return out


def _structured_outputs(fmt):
    """vLLM's guided decoding for a response_format: the engine can only write JSON (of the schema)."""
    from vllm.sampling_params import StructuredOutputsParams

    if fmt.type == "json_schema":
        return StructuredOutputsParams(json=fmt.json_schema.schema_)
    return StructuredOutputsParams(json_object=True)


def _resolve(model: str) -> str:
    from blender_serve.loading import resolve_model_path

    return resolve_model_path(model)
