"""Any Hugging Face causal LM, run in-process with transformers: the portable backend.

The model runs on one dedicated worker thread, so the event loop never blocks and requests reach
the model one at a time (a transformers model is not safe to call from two threads at once, and
batch-1 calls keep every request's output independent of its neighbours). For throughput under
concurrency use the vllm backend.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.devices import resolve_device, resolve_dtype
from blender_serve.errors import InvalidInputError
from blender_serve.generators.base import (
    Generator,
    StopMatcher,
    _Collected,
    chat_as_plain_prompt,
    truncate_at_stop,
)
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, Usage

__all__ = ["TransformersGenerator"]

# transformers resolves its names lazily, and two threads doing a first import at once can see a
# half-initialised module ("cannot import name AutoModelForCausalLM"): an ensemble starts its
# generators concurrently, so first imports are serialised here.
_IMPORT_LOCK = threading.Lock()


def _transformers_names():
    with _IMPORT_LOCK:
        from transformers import (
            AsyncTextIteratorStreamer,
            AutoModelForCausalLM,
            AutoTokenizer,
            StoppingCriteriaList,
        )
    return AutoModelForCausalLM, AutoTokenizer, AsyncTextIteratorStreamer, StoppingCriteriaList


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


class TransformersGenerator(Generator):
    """A causal LM loaded with AutoModelForCausalLM from ``config.model`` (local dir or hub id). Example::

        GeneratorConfig(name="smol", backend="transformers", model="/models/SmolLM2-135M-Instruct",
                        sampling={"temperature": 0}, options={"max_new_tokens": 64})
    """

    Options = TransformersOptions

    def __init__(self, config):
        super().__init__(config)
        if not config.model:
            raise InvalidInputError(f"generator {config.name!r} (transformers) needs `model`: a checkpoint directory or hub id")
        self._model = self._tokenizer = None
        self._executor: Optional[concurrent.futures.ThreadPoolExecutor] = None

    # ------------------------------------------------------------------------------ lifecycle
    async def _start(self) -> None:
        # One worker thread = one request on the model at a time, in arrival order.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"gen-{self.name}")
        loop = asyncio.get_running_loop()
        try:
            self._model, self._tokenizer = await loop.run_in_executor(self._executor, self._load)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _load(self):
        import torch

        AutoModelForCausalLM, AutoTokenizer, self._streamer_cls, self._criteria_cls = _transformers_names()
        o = self.options
        if o.torch_threads:
            torch.set_num_threads(o.torch_threads)
        device = resolve_device(o.device) if o.device_map is None else None
        dtype = resolve_dtype(o.dtype, device or "cuda", half="bfloat16")
        common: dict[str, Any] = {"trust_remote_code": o.trust_remote_code, "revision": o.revision}
        if o.gguf_file:
            common["gguf_file"] = o.gguf_file
        from blender_serve.local_models import resolve_model_path

        model_path = resolve_model_path(self.config.model)
        tokenizer = AutoTokenizer.from_pretrained(model_path, **common)
        kwargs: dict[str, Any] = dict(common, dtype=dtype)
        if o.device_map is not None:
            kwargs["device_map"] = o.device_map
        from blender_serve.devices import MODEL_LOAD_LOCK

        with MODEL_LOAD_LOCK:
            model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
        if device is not None:
            model.to(device)
        model.eval()
        if tokenizer.pad_token_id is None:  # generate() wants one even at batch 1
            tokenizer.pad_token = tokenizer.eos_token
        return model, tokenizer

    async def _close(self) -> None:
        executor, self._executor = self._executor, None
        self._model = self._tokenizer = None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    # ---------------------------------------------------------------------------- generation
    async def _generate(self, chat: list[ChatMessage], params: SamplingParams) -> _Collected:
        input_ids = self._encode(chat)
        cancel = threading.Event()
        clock = _FirstTokenClock()
        kwargs = self._generation_kwargs(params, cancel, streamer=clock)
        try:
            new_ids = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, input_ids, kwargs, params.seed
            )
        except asyncio.CancelledError:
            cancel.set()  # a deadline fired: free the model thread at the next token
            raise
        raw = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        text, hit = truncate_at_stop(raw, params.stop)
        usage = Usage(prompt_tokens=len(input_ids), completion_tokens=len(new_ids))
        return _Collected(text, usage, self._finish_reason(new_ids, kwargs, hit), clock.first_token_at)

    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        input_ids = self._encode(chat)
        cancel = threading.Event()
        streamer = self._streamer_cls(self._tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generation_kwargs(params, cancel, streamer=streamer)
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._run, input_ids, kwargs, params.seed
        )
        matcher = StopMatcher(params.stop)
        try:
            async for piece in streamer:
                text = matcher.push(piece)
                if text:
                    yield GenerationChunk(text=text)
                if matcher.stopped:
                    cancel.set()  # keep draining so the thread's end-of-stream is consumed
            tail = matcher.flush()
            if tail:
                yield GenerationChunk(text=tail)
            new_ids = await future
        finally:
            if not future.done():  # the consumer left early or was cancelled
                cancel.set()
                future.cancel()
        usage = Usage(prompt_tokens=len(input_ids), completion_tokens=len(new_ids))
        yield GenerationChunk(finish_reason=self._finish_reason(new_ids, kwargs, matcher.stopped), usage=usage)

    # ------------------------------------------------------------------------------- helpers
    def _encode(self, chat: list[ChatMessage]) -> list[int]:
        tok = self._tokenizer
        if getattr(tok, "chat_template", None):
            prompt = tok.apply_chat_template(
                [m.model_dump() for m in chat], add_generation_prompt=True, tokenize=False
            )
            # The template already wrote any BOS the model expects.
            return tok(prompt, add_special_tokens=False)["input_ids"]
        return tok(chat_as_plain_prompt(chat))["input_ids"]

    def _generation_kwargs(self, params: SamplingParams, cancel: threading.Event, streamer) -> dict:
        defaults = self._model.generation_config
        # temperature None -> the checkpoint's own default (greedy unless it says do_sample).
        do_sample = bool(defaults.do_sample) if params.temperature is None else params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_tokens or self.options.max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": self._tokenizer.pad_token_id,
            "stopping_criteria": self._criteria_cls([_Cancelled(cancel)]),
            "streamer": streamer,
        }
        if do_sample:
            for key in ("temperature", "top_p", "top_k"):
                if getattr(params, key) is not None:
                    kwargs[key] = getattr(params, key)
        else:  # the checkpoint's sampling knobs would only trigger "unused flag" warnings
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:
            kwargs.update(stop_strings=list(params.stop), tokenizer=self._tokenizer)
        return kwargs

    def _run(self, input_ids: list[int], kwargs: dict, seed: Optional[int]) -> list[int]:
        """On the model thread: one generate() call; returns the new token ids."""
        import torch

        streamer = kwargs["streamer"]
        try:
            model = self._model
            ids = torch.tensor([input_ids], device=model.device)
            with torch.inference_mode():
                if seed is not None:
                    # Global RNG is fine here: this thread is the only one sampling from this model.
                    torch.manual_seed(seed)
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)
            return out[0, len(input_ids):].tolist()
        except BaseException:
            streamer.end()  # unblock a stream consumer; the raised error reaches it through the future
            raise

    def _finish_reason(self, new_ids: list[int], kwargs: dict, stopped: bool) -> str:
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if stopped or (new_ids and new_ids[-1] in eos_ids):
            return "stop"
        return "length" if len(new_ids) >= kwargs["max_new_tokens"] else "stop"


class _Cancelled:
    """A stopping criterion that ends generation once its event is set (client gone, deadline)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


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
