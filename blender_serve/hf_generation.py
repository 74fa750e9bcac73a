"""A transformers model's ``generate`` behind an async server, written once for the fusers and the
transformers backend.

- One worker thread per model: calls reach the model one at a time, in arrival order (a
  transformers model is not safe to call from two threads at once), and never block an event loop.
- Cancellation: a stopping criterion watches a ``threading.Event``, so a deadline, a client that
  left or a matched stop string ends the generation at its next token.
- Token streaming: text pieces as they are decoded, with the generated ids known at the end.
- Batches of prompts, padded on the side the architecture continues from; the ids that end a
  sequence (eos); the mapping of sampling settings to ``generate`` keywords; the finish reason.
- Opt-in decoding modes (``DECODINGS``): preallocated static KV caches, reused from call to call,
  and a ``torch.compile``'d decoding step on top of them (CUDA graphs on cuda): see ``StaticDecoding``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, AsyncIterator, Optional, Sequence

from blender_serve.devices import MODEL_LOAD_LOCK

__all__ = ["GenerationWorker", "TokenStream", "StaticDecoding", "DECODINGS", "generate_kwargs", "eos_token_ids"]

#: How a worker decodes. 'dynamic': transformers' default cache, grown token by token. 'static': KV
#: caches of fixed shape, allocated once per shape and reused (the same tokens as 'dynamic').
#: 'compiled': 'static' plus a torch.compile'd decoding step (CUDA graphs on cuda): the first call of
#: each shape compiles, later ones replay; prompts are padded to a multiple of ``PAD_MULTIPLE``.
DECODINGS = ("dynamic", "static", "compiled")

#: With 'compiled' decoding, prompt widths (and static cache lengths) round up to a multiple of this,
#: so a server sees a few shapes (one compiled graph each) instead of one per prompt length.
PAD_MULTIPLE = 64


def eos_token_ids(model, tokenizer) -> set[int]:
    """The ids that end a sequence: the generation config's, else the tokenizer's eos."""
    eos = model.generation_config.eos_token_id
    eos = tokenizer.eos_token_id if eos is None else eos
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


def generate_kwargs(*, max_new_tokens: int, do_sample: bool, num_beams: int = 1, temperature: Optional[float] = None,
                    top_p: Optional[float] = None, top_k: Optional[int] = None, stop: Sequence[str] = (),
                    tokenizer=None) -> dict[str, Any]:
    """``generate`` keyword arguments for one call.

    Greedy and beam search get the sampling knobs cleared (a checkpoint's own temperature would only
    earn "unused flag" warnings); stop strings end the generation inside ``generate``, which needs
    the tokenizer for them. Callers cut the decoded text at the stop string themselves.
    """
    kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "num_beams": num_beams, "do_sample": do_sample}
    if do_sample:
        kwargs.update({k: v for k, v in (("temperature", temperature), ("top_p", top_p), ("top_k", top_k)) if v is not None})
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if stop:
        kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
    return kwargs


class GenerationWorker:
    """Runs one transformers model's ``generate`` calls on its own thread, one at a time.

    Example:
        >>> worker = GenerationWorker(model, tokenizer, name="fuser")
        >>> (new_ids,) = await worker.arun([prompt_ids], generate_kwargs(max_new_tokens=32, do_sample=False))
        >>> stream = worker.stream(prompt_ids, generate_kwargs(max_new_tokens=32, do_sample=False))
        >>> async for piece in stream: print(piece, end="")
        >>> stream.new_ids
    """

    def __init__(self, model, tokenizer, name: str, decoding: str = "dynamic"):
        if decoding not in DECODINGS:
            raise ValueError(f"decoding must be one of {DECODINGS}, got {decoding!r}")
        with MODEL_LOAD_LOCK:  # transformers' lazy first imports are not thread-safe
            from transformers import AsyncTextIteratorStreamer, StoppingCriteria, StoppingCriteriaList
        self._streamer_cls, self._criteria_list = AsyncTextIteratorStreamer, StoppingCriteriaList
        self._stop_when_set = _stop_criterion_class(StoppingCriteria)
        self.model = model
        self.tokenizer = tokenizer
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        self.eos_ids = eos_token_ids(model, tokenizer)
        # Causal LMs often ship without a pad token; their eos pads just as well behind a mask.
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids, default=0)
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"generate-{name}")
        self.closed = False
        self.decode_steps = 0  # tokens decoded so far over all calls (one per step, per batch); shows when work stops
        self.decoding = decoding
        self._static = None if decoding == "dynamic" else StaticDecoding(model, compiled=decoding == "compiled")

    def close(self) -> None:
        """Stop the worker thread; queued calls are cancelled, a running one finishes."""
        self.closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)

    def check_health(self) -> None:
        """RuntimeError when this worker can no longer generate (closed, or its model is gone)."""
        if self.closed or self.model is None:
            raise RuntimeError("the generation worker is closed")

    def _count_step(self) -> None:
        self.decode_steps += 1

    # -- one-shot -----------------------------------------------------------------------------
    def run(self, prompts: Sequence[Sequence[int]], kwargs: dict[str, Any], seed: Optional[int] = None) -> list[list[int]]:
        """Generate for a batch of prompts, blocking the calling thread; returns each row's new ids."""
        return self._executor.submit(self._generate, prompts, kwargs, seed, threading.Event(), None).result()

    async def arun(self, prompts: Sequence[Sequence[int]], kwargs: dict[str, Any], seed: Optional[int] = None,
                   streamer=None, logits: Optional[list] = None) -> list[list[int]]:
        """``run`` awaited: cancelling the caller (a deadline, a client gone) stops the generation
        at its next token, so the model is free for the next call. A ``logits`` list (one prompt)
        receives the raw logits of every step, a 1-D float tensor each."""
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._generate, prompts, kwargs, seed, cancel, streamer, logits)
        try:
            return await future
        except asyncio.CancelledError:
            cancel.set()
            raise

    # -- streaming ----------------------------------------------------------------------------
    def stream(self, prompt: Sequence[int], kwargs: dict[str, Any], seed: Optional[int] = None,
               logits: Optional[list] = None) -> "TokenStream":
        """One prompt's generation as text pieces (see :class:`TokenStream`); ``logits`` as on ``arun``."""
        return TokenStream(self, prompt, kwargs, seed, logits)

    def finish_reason(self, new_ids: Sequence[int], max_new_tokens: int, stopped: bool) -> str:
        """'stop' for an eos or a stop string, 'length' when the token budget ran out."""
        if stopped or (new_ids and new_ids[-1] in self.eos_ids):
            return "stop"
        return "length" if len(new_ids) >= max_new_tokens else "stop"

    # -- on the worker thread ----------------------------------------------------------------
    def _generate(self, prompts, kwargs, seed, cancel: threading.Event, streamer, logits: Optional[list] = None
                  ) -> list[list[int]]:
        import torch

        try:
            if cancel.is_set():  # the caller left while this call waited its turn
                return [[] for _ in prompts]
            input_ids, mask = self._pad(prompts)
            device = self.model.device
            if seed is not None:
                torch.manual_seed(seed)  # global RNG: this thread is the only one sampling from this model
            extra: dict[str, Any] = {"pad_token_id": self.pad_id,
                                     "stopping_criteria": self._criteria_list([self._stop_when_set(cancel, self._count_step)])}
            if streamer is not None:
                extra["streamer"] = streamer
            if logits is not None:
                extra.update(output_logits=True, return_dict_in_generate=True)
            with torch.inference_mode():  # a reused cache holds inference tensors: reset it in this mode
                if self._static is not None:
                    extra.update(self._static.generate_kwargs(rows=len(prompts) * kwargs.get("num_beams", 1),
                                                              width=input_ids.shape[1],
                                                              max_new_tokens=kwargs["max_new_tokens"]))
                out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                          **kwargs, **extra)
            if logits is not None:
                logits.extend(step[0].float().cpu() for step in out.logits)
                out = out.sequences
            return self._completions(out, input_ids.shape[1])
        finally:
            # generate ends a stream itself on success; after an error or an early exit its consumer
            # still needs the end signal. A second one is never read.
            if streamer is not None:
                try:
                    streamer.end()
                except RuntimeError:
                    pass  # the consumer's event loop is closed: nobody is listening any more

    def _pad(self, prompts):
        import torch

        width = max(len(p) for p in prompts)
        if self._static is not None and self._static.compiled:
            width = _round_up(width, PAD_MULTIPLE)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            # Decoder-only models continue from the last column, so their prompts sit on the right.
            cols = slice(0, len(ids)) if self.encoder_decoder else slice(width - len(ids), width)
            input_ids[row, cols] = torch.tensor(list(ids), dtype=torch.long)
            mask[row, cols] = 1
        return input_ids, mask

    def _completions(self, out, prompt_width: int) -> list[list[int]]:
        """Each row's generated ids, up to and including its first eos (padding after it dropped)."""
        # Seq2seq output starts with the decoder start token; causal output repeats the prompt.
        rows = out[:, 1:] if self.encoder_decoder else out[:, prompt_width:]
        completions = []
        for row in rows.tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in self.eos_ids), len(row))
            completions.append(row[:end])
        return completions


class TokenStream:
    """Text pieces of one generation as the model writes them; ``new_ids`` holds the generated ids
    once the pieces are exhausted. Leaving the loop early (break, cancellation) stops the generation
    at its next token; ``stop()`` does so while the remaining pieces are still drained (a stop
    string matched). A failure of the generation is raised, as it is, after the last piece."""

    def __init__(self, worker: GenerationWorker, prompt: Sequence[int], kwargs: dict[str, Any], seed: Optional[int],
                 logits: Optional[list] = None):
        self._worker, self._prompt, self._kwargs, self._seed, self._logits = worker, list(prompt), kwargs, seed, logits
        self._cancel = threading.Event()
        self.new_ids: Optional[list[int]] = None

    def stop(self) -> None:
        """End the generation at its next token."""
        self._cancel.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        worker = self._worker
        streamer = worker._streamer_cls(worker.tokenizer, skip_prompt=True, skip_special_tokens=True)
        future = asyncio.get_running_loop().run_in_executor(
            worker._executor, worker._generate, [self._prompt], self._kwargs, self._seed, self._cancel, streamer,
            self._logits)
        try:
            async for piece in streamer:
                if piece:
                    yield piece
            (self.new_ids,) = await future
        finally:
            if not future.done():  # the consumer left early or was cancelled
                self._cancel.set()
                future.cancel()


def _stop_criterion_class(base):
    class StopWhenSet(base):
        """Ends generation once its event is set (a deadline, a client gone, a stop string matched)."""

        def __init__(self, event: threading.Event, on_step=None):
            self.event, self.on_step = event, on_step

        def __call__(self, input_ids, scores, **kwargs):
            import torch

            if self.on_step is not None:
                self.on_step()
            return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet


class StaticDecoding:
    """Static KV caches for one model's ``generate`` calls, and optionally a compiled decoding step.

    transformers supports both for T5 (``_can_compile_fullgraph``) and most decoder-only LMs, but
    as a whole it does not fit a server: ``cache_implementation="static"`` allocates a new cache
    per call, and a CUDA graph bakes in its tensors' addresses, so every request would re-record the
    graphs; ``generate`` compiles greedy and sampling steps only (beam search calls the eager
    forward); and beam search reorders a static cache into new tensors, checking each layer's
    length on the host (a device sync per layer and step). So this keeps one cache per shape
    (rows, encoder width, length), resets it between calls and passes it in; reorders beams in
    place; and, when ``compiled``, routes the decoding loop's steps through one ``torch.compile``'d
    forward (mode 'reduce-overhead', i.e. CUDA graphs, on cuda), leaving prefills eager.

    Example:
        >>> static = StaticDecoding(model, compiled=True)
        >>> model.generate(input_ids, **static.generate_kwargs(rows=4, width=input_ids.shape[1], max_new_tokens=128),
        ...                num_beams=4, max_new_tokens=128)
    """

    #: Caches kept (one per shape seen lately); each holds rows x layers x heads x length x head_dim x 2.
    keep = 4
    #: torch.compile backend of 'compiled' decoding: 'inductor' (with CUDA graphs on cuda) needs a C
    #: compiler on the host; 'cudagraphs' needs none; 'aot_eager' (traced, not optimised) tests the routing.
    backend = "inductor"

    def __init__(self, model, compiled: bool):
        from transformers.generation.utils import ALL_CACHE_NAMES

        self.model, self.compiled = model, compiled
        self.encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        # generate's keyword for a cache object: 'past_key_values' in transformers 5.17, 'cache' in 5.24.
        self.cache_name = ALL_CACHE_NAMES[0]
        self._caches: dict[tuple[int, int, int], Any] = {}
        if not hasattr(model, "_reorder_cache"):  # a model's own reorder (RAG, ...) stays
            model._reorder_cache = _reorder_in_place
        if compiled:
            _compile_decoding_step(model, self.encoder_decoder, self.backend)

    def generate_kwargs(self, *, rows: int, width: int, max_new_tokens: int) -> dict[str, Any]:
        """``generate`` keywords for a call on ``rows`` sequences (batch x beams) of prompts padded
        to ``width``: a reset cache of that shape, and transformers' own compilation turned off."""
        length = (1 if self.encoder_decoder else width) + max_new_tokens  # decoder start token, or the prompt
        if self.compiled:
            length = _round_up(length, PAD_MULTIPLE)
        key = (rows, width if self.encoder_decoder else 0, length)
        cache = self._caches.pop(key, None)
        if cache is None:
            cache = self._new_cache(width, length)
            while len(self._caches) >= self.keep:
                self._caches.pop(next(iter(self._caches)))  # least recently used first
        else:
            cache.reset()
        self._caches[key] = cache
        return {self.cache_name: cache, "cache_implementation": None, "disable_compile": True}

    def _new_cache(self, width: int, length: int):
        from transformers import EncoderDecoderCache, StaticCache

        config = self.model.config.get_text_config(decoder=True)
        cache = StaticCache(config=config, max_cache_len=length)
        # Cross-attention keys span exactly the encoder's (padded) width: attention reads all of them.
        return EncoderDecoderCache(cache, StaticCache(config=config, max_cache_len=width)) if self.encoder_decoder else cache


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _cache_parts(cache) -> list:
    return [cache.self_attention_cache, cache.cross_attention_cache] if hasattr(cache, "cross_attention_cache") else [cache]


def _reorder_in_place(cache, beam_idx):
    """Beam search's cache reorder (``generate`` calls a model's ``_reorder_cache``), writing static
    layers in place: their tensors keep the addresses a compiled step captured, and no per-layer
    length check syncs the device. Static cross-attention layers are left as they are: every beam
    of a prompt holds the same encoder keys, and a reorder only moves rows among one prompt's beams.
    Other layers reorder as transformers does."""
    for part in _cache_parts(cache):
        cross = part is getattr(cache, "cross_attention_cache", None)
        for layer in part.layers:
            if not (getattr(layer, "is_compileable", False) and layer.is_initialized):
                layer.reorder_cache(beam_idx)
            elif not cross:
                index = beam_idx.to(layer.keys.device)
                layer.keys.copy_(layer.keys.index_select(0, index))
                layer.values.copy_(layer.values.index_select(0, index))
    return cache


def _is_decoding_step(cache) -> bool:
    """A static cache already filled (and, in an encoder-decoder, its cross-attention keys written):
    a step of the decoding loop, not a prefill."""
    parts = _cache_parts(cache) if cache is not None else []
    if not parts or not all(p.layers and getattr(p.layers[0], "is_compileable", False) and p.layers[0].is_initialized
                            for p in parts):
        return False
    updated = getattr(cache, "is_updated", None)
    return updated is None or (bool(updated) and all(updated.values()))


def _compile_decoding_step(model, encoder_decoder: bool, backend: str) -> None:
    """Route the decoding loop's one-token steps through ``torch.compile(model.forward)``; prefills
    (a causal prompt, a seq2seq model's first step, which writes the cross-attention keys) stay eager:
    one graph per shape, and the cache is first allocated outside it."""
    import functools

    import torch

    eager = model.forward
    mode = "reduce-overhead" if model.device.type == "cuda" and backend == "inductor" else None
    compiled = torch.compile(eager, backend=backend, mode=mode)
    ids_name = "decoder_input_ids" if encoder_decoder else "input_ids"

    @functools.wraps(eager)  # generate inspects the forward's signature
    def forward(*args, **kwargs):
        ids = kwargs.get(ids_name)
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        step = not args and ids is not None and ids.shape[1] == 1 and _is_decoding_step(cache)
        return (compiled if step else eager)(*args, **kwargs)

    model.forward = forward
