"""What both transformers fusers share: loading, generation settings, batched generate, streaming."""

from __future__ import annotations

import abc
import itertools
import threading
import time
from typing import Any, AsyncIterator, Optional, Sequence

from blender_serve.devices import resolve_device, resolve_dtype
from blender_serve.errors import CheckpointError, GenerationError, InvalidInputError
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.types import FusionOutput, Usage

__all__ = ["TransformersFuser", "OVERRIDES", "generation_params", "load_pretrained"]

#: The per-call generation settings every transformers fuser accepts.
OVERRIDES = ("num_beams", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed")

_stream_ids = itertools.count()


def generation_params(overrides: dict[str, Any], *, num_beams: int, max_new_tokens: int,
                      streaming: bool = False) -> tuple[dict[str, Any], Optional[int]]:
    """``generate`` keyword arguments and the seed, from a fuser's defaults and a call's overrides.

    ``None`` values mean "use the default", so callers can pass SamplingParams fields as they are.
    temperature 0 means greedy (the OpenAI convention); a positive temperature turns sampling on;
    sampling uses one beam unless ``num_beams`` is given. Streaming always decodes one beam.
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise InvalidInputError(f"unknown generation settings {unknown}; the fuser accepts {', '.join(OVERRIDES)}")
    o = {k: v for k, v in overrides.items() if v is not None}
    temperature = o.get("temperature")
    if temperature is not None and not temperature >= 0:
        raise InvalidInputError(f"temperature must be >= 0, got {temperature}")
    do_sample = bool(o.get("do_sample", temperature is not None and temperature > 0))
    if temperature == 0:
        do_sample = False
    if streaming:
        if o.get("num_beams", 1) != 1:
            raise InvalidInputError("beam search cannot stream; drop num_beams (or set it to 1), or call fuse()")
        beams = 1
    else:
        beams = o.get("num_beams", 1 if do_sample else num_beams)
    new_tokens = o.get("max_new_tokens", max_new_tokens)
    for name, value in (("num_beams", beams), ("max_new_tokens", new_tokens)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{name} must be an int >= 1, got {value!r}")
    if "top_p" in o and not 0 < o["top_p"] <= 1:
        raise InvalidInputError(f"top_p must be in (0, 1], got {o['top_p']}")
    if "top_k" in o and (not isinstance(o["top_k"], int) or o["top_k"] < 0):
        raise InvalidInputError(f"top_k must be an int >= 0 (0 disables it), got {o['top_k']!r}")
    params: dict[str, Any] = {"num_beams": beams, "max_new_tokens": new_tokens, "do_sample": do_sample}
    if do_sample:  # passing them to greedy/beam search only earns a warning
        params.update({k: o[k] for k in ("temperature", "top_p", "top_k") if k in o})
    return params, o.get("seed")


def load_pretrained(auto_class, path: str, device: str, dtype: str, device_map: Optional[str]):
    """(model, tokenizer, device) loaded from a local directory or hub id; CheckpointError if unreadable."""
    import transformers
    from packaging.version import Version
    from transformers import AutoTokenizer

    from blender_serve.local_models import resolve_model_path

    path = resolve_model_path(path)
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device, half="bfloat16")
    # transformers renamed torch_dtype to dtype in 4.56 and warns on the old name.
    dtype_key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    kwargs: dict[str, Any] = {dtype_key: torch_dtype}
    if device_map:
        kwargs["device_map"] = device_map
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        from blender_serve.devices import MODEL_LOAD_LOCK

        with MODEL_LOAD_LOCK:
            model = auto_class.from_pretrained(path, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(
            f"cannot load {path!r} as {auto_class.__name__} + tokenizer ({e}); pass a local directory "
            "holding config.json, the weights and the tokenizer files, or a hub id that is reachable"
        ) from e
    if not device_map:
        model.to(device)
    model.eval()
    return model, tokenizer


def _stop_when_set(flag: threading.Event):
    """A StoppingCriteria that ends generation once ``flag`` is set (the stream's consumer left)."""
    import torch
    from transformers import StoppingCriteria

    class StopWhenSet(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), flag.is_set(), dtype=torch.bool, device=input_ids.device)

    return StopWhenSet()


class TransformersFuser(Fuser):
    """A fuser running a transformers model's ``generate``; subclasses say how to build the prompt.

    One lock serialises generation on the model: concurrent callers queue instead of interleaving
    work on one device (``afuse`` and ``stream`` wait in threads, never on the event loop).
    """

    def __init__(self, model, tokenizer, *, max_length: int = 1024, candidate_max_length: int = 128,
                 num_beams: int = 4, max_new_tokens: int = 128):
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.candidate_max_length = candidate_max_length
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()
        self._encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        eos = model.generation_config.eos_token_id
        eos = tokenizer.eos_token_id if eos is None else eos
        self._eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
        # Causal LMs often ship without a pad token; their eos pads just as well behind a mask.
        pad = tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else min(self._eos_ids, default=0)

    @abc.abstractmethod
    def build_input_ids(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The prompt's token ids, within ``max_length``."""

    def _check(self, instruction: str, input: str, candidates: Sequence[str]) -> None:
        check_item(instruction, input, candidates)

    # -- one-shot ------------------------------------------------------------------------------

    def fuse_batch(self, items: Sequence[FuseItem], **generate_overrides) -> list[FusionOutput]:
        """Fuse several requests with one padded ``generate`` call.

        Args:
            items: (instruction, input, candidates) per request.
            **generate_overrides: num_beams, max_new_tokens, do_sample, temperature, top_p, top_k,
                seed (None means the default).

        Returns:
            one FusionOutput per item; ``latency_s`` is the whole batch's wall time.

        Example:
            >>> outs = fuser.fuse_batch([("Say hi.", "", ["hi", "hello"]), ("", "2+2?", ["4", "four"])])
        """
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
            raise InvalidInputError("items must be a non-empty list of (instruction, input, candidates) tuples")
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise InvalidInputError(f"each item must be (instruction, input, candidates), got {item!r:.80}")
            self._check(*item)
        params, seed = generation_params(generate_overrides, num_beams=self.num_beams, max_new_tokens=self.max_new_tokens)
        batch = [self.build_input_ids(*item) for item in items]
        start = time.perf_counter()
        with self._lock:
            out = self._generate(batch, params, seed)
        latency = time.perf_counter() - start
        results = []
        for ids, row in zip(batch, self._completions(out, max(map(len, batch)))):
            usage = Usage(prompt_tokens=len(ids), completion_tokens=len(row))
            text = self.tokenizer.decode(row, skip_special_tokens=True)
            results.append(FusionOutput(text=text, usage=usage, latency_s=latency))
        return results

    def _generate(self, batch: list[list[int]], params: dict[str, Any], seed: Optional[int],
                  streamer=None, stop: Optional[threading.Event] = None):
        """Run ``generate`` on padded prompts; the caller holds the lock."""
        import torch
        from transformers import StoppingCriteriaList

        width = max(map(len, batch))
        device = self.model.device
        input_ids = torch.full((len(batch), width), self._pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            # Decoder-only models continue from the last column, so their prompts sit on the right.
            cols = slice(width - len(ids), width) if not self._encoder_decoder else slice(0, len(ids))
            input_ids[row, cols] = torch.tensor(ids, dtype=torch.long)
            mask[row, cols] = 1
        extra: dict[str, Any] = {"pad_token_id": self._pad_id}
        if streamer is not None:
            extra["streamer"] = streamer
        if stop is not None:
            extra["stopping_criteria"] = StoppingCriteriaList([_stop_when_set(stop)])
        if seed is not None:
            torch.manual_seed(seed)  # global RNG: safe because the lock serialises generation
        try:
            with torch.inference_mode():
                return self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                           **params, **extra)
        except InvalidInputError:
            raise
        except Exception as e:
            raise GenerationError(f"fuser generation failed ({type(e).__name__}: {e}); check the device "
                                  "and memory, or lower max_length, max_new_tokens or the batch size") from e

    def _completions(self, out, prompt_width: int) -> list[list[int]]:
        """Each row's generated ids, up to and including its first eos (padding after it dropped)."""
        # Seq2seq output starts with the decoder start token; causal output repeats the prompt.
        rows = out[:, 1:] if self._encoder_decoder else out[:, prompt_width:]
        completions = []
        for row in rows.tolist():
            end = next((i + 1 for i, t in enumerate(row) if t in self._eos_ids), len(row))
            completions.append(row[:end])
        return completions

    # -- streaming -----------------------------------------------------------------------------

    def stream(self, instruction: str, input: str, candidates: Sequence[str], **generate_overrides) -> AsyncIterator[str]:
        """Fuse one request, yielding text pieces as the model writes them.

        Beam search cannot stream (its best sequence is only known at the end), so this decodes one
        sequence: greedy unless sampling is asked for. With greedy decoding the pieces join to
        exactly ``fuse(..., num_beams=1).text``. Bad input raises here, before iteration starts.
        Leaving the loop early (break, cancellation) stops the generation at its next token.

        Args:
            instruction, input, candidates: as for ``fuse``.
            **generate_overrides: max_new_tokens, do_sample, temperature, top_p, top_k, seed
                (num_beams other than 1 is refused).

        Returns:
            an async iterator of str pieces.

        Example:
            >>> async for piece in fuser.stream("Say hi.", "", ["hi", "hello"]):
            ...     print(piece, end="")
        """
        self._check(instruction, input, candidates)
        params, seed = generation_params(generate_overrides, num_beams=1, max_new_tokens=self.max_new_tokens,
                                         streaming=True)
        return self._stream(self.build_input_ids(instruction, input, candidates), params, seed)

    async def _stream(self, ids: list[int], params: dict[str, Any], seed: Optional[int]) -> AsyncIterator[str]:
        from transformers import AsyncTextIteratorStreamer

        streamer = AsyncTextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()
        failure: list[BaseException] = []

        def work() -> None:
            try:
                with self._lock:
                    if not stop.is_set():  # the consumer may have left while we waited for the model
                        self._generate([ids], params, seed, streamer=streamer, stop=stop)
            except BaseException as e:  # noqa: BLE001 - handed to the consumer below
                failure.append(e)
            finally:
                # generate ends the stream itself on success; after an error or an early exit the
                # consumer still needs the end signal. A second signal is never read.
                try:
                    streamer.on_finalized_text("", stream_end=True)
                except RuntimeError:
                    pass  # the event loop is closed: nobody is listening any more

        thread = threading.Thread(target=work, name=f"fuser-stream-{next(_stream_ids)}", daemon=True)
        thread.start()
        try:
            async for piece in streamer:
                if piece:
                    yield piece
        finally:
            stop.set()
        if failure:
            err = failure[0]
            raise err if isinstance(err, GenerationError) else GenerationError(f"fuser stream failed: {err}") from err
