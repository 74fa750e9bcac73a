"""A transformers model's ``generate`` behind an async server, written once for the fusers and the
transformers backend.

- One worker thread per model: calls reach the model one at a time, in arrival order (a
  transformers model is not safe to call from two threads at once), and never block an event loop.
- Cancellation: a stopping criterion watches a ``threading.Event``, so a deadline, a client that
  left or a matched stop string ends the generation at its next token.
- Token streaming: text pieces as they are decoded, with the generated ids known at the end.
- Batches of prompts, padded on the side the architecture continues from; the ids that end a
  sequence (eos); the mapping of sampling settings to ``generate`` keywords; the finish reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any, AsyncIterator, Optional, Sequence

from blender_serve.devices import MODEL_LOAD_LOCK

__all__ = ["GenerationWorker", "TokenStream", "generate_kwargs", "eos_token_ids"]


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

    def __init__(self, model, tokenizer, name: str):
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
                   streamer=None) -> list[list[int]]:
        """``run`` awaited: cancelling the caller (a deadline, a client gone) stops the generation
        at its next token, so the model is free for the next call."""
        cancel = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            self._executor, self._generate, prompts, kwargs, seed, cancel, streamer)
        try:
            return await future
        except asyncio.CancelledError:
            cancel.set()
            raise

    # -- streaming ----------------------------------------------------------------------------
    def stream(self, prompt: Sequence[int], kwargs: dict[str, Any], seed: Optional[int] = None) -> "TokenStream":
        """One prompt's generation as text pieces (see :class:`TokenStream`)."""
        return TokenStream(self, prompt, kwargs, seed)

    def finish_reason(self, new_ids: Sequence[int], max_new_tokens: int, stopped: bool) -> str:
        """'stop' for an eos or a stop string, 'length' when the token budget ran out."""
        if stopped or (new_ids and new_ids[-1] in self.eos_ids):
            return "stop"
        return "length" if len(new_ids) >= max_new_tokens else "stop"

    # -- on the worker thread ----------------------------------------------------------------
    def _generate(self, prompts, kwargs, seed, cancel: threading.Event, streamer) -> list[list[int]]:
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
            with torch.inference_mode():
                out = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                          **kwargs, **extra)
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

    def __init__(self, worker: GenerationWorker, prompt: Sequence[int], kwargs: dict[str, Any], seed: Optional[int]):
        self._worker, self._prompt, self._kwargs, self._seed = worker, list(prompt), kwargs, seed
        self._cancel = threading.Event()
        self.new_ids: Optional[list[int]] = None

    def stop(self) -> None:
        """End the generation at its next token."""
        self._cancel.set()

    async def __aiter__(self) -> AsyncIterator[str]:
        worker = self._worker
        streamer = worker._streamer_cls(worker.tokenizer, skip_prompt=True, skip_special_tokens=True)
        future = asyncio.get_running_loop().run_in_executor(
            worker._executor, worker._generate, [self._prompt], self._kwargs, self._seed, self._cancel, streamer)
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
