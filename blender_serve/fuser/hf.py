"""What both transformers fusers share: loading, fitting the prompt, generation settings, batched
generation and streaming (on ``blender_serve.hf_generation``'s worker). A subclass only says how
to render its prompt from (already cut) texts. User texts are measured and cut as plain text: a
special token they spell counts as the characters it is (``blender_serve.tokenize_safe``)."""

from __future__ import annotations

import abc
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, ClassVar, Optional, Sequence

from blender_serve.errors import BlenderError, GenerationError, InvalidInputError
from blender_serve.fuser._fit import SOFT_FLOOR, cut_text, fit_lengths
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.stops import StopMatcher, truncate_at_stop
from blender_serve.tokenize_safe import encode_plain, structural_ids
from blender_serve.types import FusionOutput, GenerationChunk, SamplingParams, Usage

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig

__all__ = ["TransformersFuser", "OVERRIDES", "generation_params"]

#: The per-call generation settings every transformers fuser accepts as keyword arguments.
OVERRIDES = ("num_beams", "max_new_tokens", "do_sample", "temperature", "top_p", "top_k", "seed", "stop")

def generation_params(overrides: dict[str, Any], *, sampling: Optional[SamplingParams] = None, num_beams: int,
                      max_new_tokens: int, streaming: bool = False) -> tuple[dict[str, Any], Optional[int], list[str]]:
    """(settings, seed, stop strings) of one fusion call.

    ``sampling`` is what the request asked of the answer: its ``max_tokens`` is capped at the
    fuser's ``max_new_tokens`` (the operator's bound), its temperature, top_p, top_k, seed and stop
    apply as they are. ``overrides`` (library callers' keywords, see ``OVERRIDES``) win over it;
    ``None`` values mean "use the default". temperature 0 means greedy (the OpenAI convention); a
    positive temperature turns sampling on, with one beam unless ``num_beams`` is given. Streaming
    always decodes one beam.
    """
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise InvalidInputError(f"unknown generation settings {unknown}; the fuser accepts {', '.join(OVERRIDES)}")
    s = sampling or SamplingParams()
    o: dict[str, Any] = {"max_new_tokens": min(s.max_tokens, max_new_tokens) if s.max_tokens else None,
                         "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "seed": s.seed,
                         "stop": list(s.stop) or None}
    o.update({k: v for k, v in overrides.items() if v is not None})
    o = {k: v for k, v in o.items() if v is not None}
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
    stops = o.get("stop", [])
    stops = [stops] if isinstance(stops, str) else stops
    if not isinstance(stops, (list, tuple)) or not all(isinstance(x, str) for x in stops):
        raise InvalidInputError(f"stop must be a str or a list of str, got {stops!r}")
    settings = {"num_beams": beams, "max_new_tokens": new_tokens, "do_sample": do_sample}
    settings.update({k: o.get(k) for k in ("temperature", "top_p", "top_k")})
    return settings, o.get("seed"), [x for x in stops if x]


class TransformersFuser(Fuser):
    """A fuser running a transformers model's ``generate``; subclasses say how to render the prompt.

    Generation runs on one worker thread per model: concurrent callers queue instead of
    interleaving work on one device, and ``afuse`` and ``stream`` never block the event loop.
    """

    #: The transformers Auto class that loads this fuser's checkpoints.
    auto_class: ClassVar[str] = ""

    def __init__(self, model, tokenizer, *, max_length: int = 1024, candidate_max_length: int = 128,
                 num_beams: int = 4, max_new_tokens: int = 128, decoding: str = "dynamic"):
        from blender_serve.hf_generation import DECODINGS, GenerationWorker

        if decoding not in DECODINGS:
            raise InvalidInputError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.candidate_max_length = candidate_max_length
        self.num_beams = num_beams
        self.max_new_tokens = max_new_tokens
        self.decoding = decoding
        self._worker = GenerationWorker(model, tokenizer, name=f"fuser-{self.kind}", decoding=decoding)
        self._structural = structural_ids(tokenizer)  # ids a user's text must never produce

    @property
    def decode_steps(self) -> int:
        """Tokens decoded so far over every call (see ``GenerationWorker.decode_steps``)."""
        return self._worker.decode_steps

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path_or_id: str, device: str = "auto", dtype: str = "auto",
                        device_map: Optional[str] = None, **options) -> "TransformersFuser":
        """Load a checkpoint (model and tokenizer) as this fuser.

        Args:
            path_or_id: ``local:<name>``, a local directory or a hub id.
            device: 'auto' (cuda, else mps, else cpu), 'cpu', 'cuda:1'...; ignored with device_map.
            dtype: 'auto' (bfloat16 on an accelerator, float32 on cpu) or an explicit dtype name.
            device_map: accelerate device map (e.g. 'auto') to spread a large model.
            **options: the constructor's keywords (max_length, candidate_max_length, num_beams,
                max_new_tokens, decoding, and the subclass's own). ``decoding``: 'dynamic' (default),
                'static' (static KV caches, the same tokens) or 'compiled' (static caches and a
                torch.compile'd decoding step; each new shape compiles on its first call), see
                ``blender_serve.hf_generation.DECODINGS``.

        Example:
            >>> GenFuser.from_pretrained("/models/gen_fuser_3b", device="cuda", num_beams=1)
            >>> GenFuser.from_pretrained("/models/gen_fuser_3b", device="cuda", decoding="compiled")
        """
        from blender_serve.loading import load_pretrained

        model, tokenizer, _ = load_pretrained(cls.auto_class, path_or_id, device=device, dtype=dtype,
                                              half="bfloat16", device_map=device_map)
        return cls(model, tokenizer, **options)

    @classmethod
    def from_config(cls, config: "FuserConfig") -> "TransformersFuser":
        """Load the fuser a FuserConfig describes (its ``kind`` must be this class's)."""
        if config.kind != cls.kind:
            raise InvalidInputError(f"{cls.__name__} serves kind={cls.kind!r}, but the config says kind={config.kind!r}; "
                                    "use blender_serve.fuser.build_fuser to pick the class from the config")
        # FuserConfig's num_beams default (4) is gen_fuser's; each class keeps its own unless told.
        beams = {"num_beams": config.num_beams} if "num_beams" in config.model_fields_set else {}
        return cls.from_pretrained(config.path, device=config.device, dtype=config.dtype, device_map=config.device_map,
                                   max_length=config.max_length, candidate_max_length=config.candidate_max_length,
                                   max_new_tokens=config.max_new_tokens, decoding=config.decoding, **beams)

    # -- the prompt ----------------------------------------------------------------------------

    def check(self, instruction: str, input: str, candidates: Sequence[str]) -> None:
        """Raise InvalidInputError when this request cannot be fused by this model."""
        check_item(instruction, input, candidates)

    @abc.abstractmethod
    def render_prompt(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The prompt's token ids for texts already cut to length."""

    def build_input_ids(self, instruction: str, input: str, candidates: Sequence[str]) -> list[int]:
        """The prompt's token ids for one request, at most ``max_length`` tokens.

        Each candidate is first cut to ``candidate_max_length`` tokens with '...' appended (as the
        reference does); if the prompt is still too long, candidates are cut further (longest
        first, evenly, down to a floor), then the instruction and input, so the prompt's own
        closing lines always survive.

        Example:
            >>> ids = fuser.build_input_ids("Say hi.", "", ["hi", "hello"])
        """
        self.check(instruction, input, candidates)
        texts = [instruction, input, *candidates]
        ids = [encode_plain(self.tokenizer, t, protected=self._structural) for t in texts]
        lengths = [len(ids[0]), len(ids[1])] + [min(len(c), self.candidate_max_length) for c in ids[2:]]

        def render(lens: list[int]) -> list[int]:
            cut = [cut_text(self.tokenizer, t, i, n) for t, i, n in zip(texts, ids, lens)]
            return self.render_prompt(cut[0], cut[1], cut[2:])

        n = len(texts)
        stages = [(list(range(2, n)), min(SOFT_FLOOR, self.candidate_max_length)), ([0, 1], SOFT_FLOOR),
                  (list(range(n)), 0)]
        return render(fit_lengths(lengths, stages, lambda lens: len(render(lens)), self.max_length))

    # -- one-shot ------------------------------------------------------------------------------

    def fuse_batch(self, items: Sequence[FuseItem], sampling: Optional[SamplingParams] = None,
                   **overrides) -> list[FusionOutput]:
        """Fuse several requests with one padded ``generate`` call (blocking).

        Args:
            items: (instruction, input, candidates) per request.
            sampling: the request's sampling settings (see ``generation_params``).
            **overrides: num_beams, max_new_tokens, do_sample, temperature, top_p, top_k, seed, stop.

        Returns:
            one FusionOutput per item; ``latency_s`` is the whole batch's wall time.

        Example:
            >>> outs = fuser.fuse_batch([("Say hi.", "", ["hi", "hello"]), ("", "2+2?", ["4", "four"])])
        """
        prompts, kwargs, seed, stops = self._prepare(items, sampling, overrides)
        start = time.perf_counter()
        try:
            completions = self._worker.run(prompts, kwargs, seed)
        except BlenderError:
            raise
        except Exception as exc:
            raise _failure(exc) from exc
        return self._outputs(prompts, completions, kwargs, stops, time.perf_counter() - start)

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        """``fuse`` awaited on the model's worker thread; cancelling the caller stops the generation."""
        prompts, kwargs, seed, stops = self._prepare([(instruction, input, candidates)], sampling, overrides)
        start = time.perf_counter()
        try:
            completions = await self._worker.arun(prompts, kwargs, seed)
        except BlenderError:
            raise
        except Exception as exc:
            raise _failure(exc) from exc
        return self._outputs(prompts, completions, kwargs, stops, time.perf_counter() - start)[0]

    def _prepare(self, items, sampling, overrides, streaming: bool = False):
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
            raise InvalidInputError("items must be a non-empty list of (instruction, input, candidates) tuples")
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise InvalidInputError(f"each item must be (instruction, input, candidates), got {item!r:.80}")
            self.check(*item)
        settings, seed, stops = generation_params(overrides, sampling=sampling, num_beams=self.num_beams,
                                                  max_new_tokens=self.max_new_tokens, streaming=streaming)
        from blender_serve.hf_generation import generate_kwargs

        kwargs = generate_kwargs(**settings, stop=stops, tokenizer=self.tokenizer)
        return [self.build_input_ids(*item) for item in items], kwargs, seed, stops

    def _outputs(self, prompts, completions, kwargs, stops, latency: float) -> list[FusionOutput]:
        results = []
        for ids, row in zip(prompts, completions):
            text, hit = truncate_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), stops)
            results.append(FusionOutput(
                text=text, usage=Usage(prompt_tokens=len(ids), completion_tokens=len(row)), latency_s=latency,
                finish_reason=self._worker.finish_reason(row, kwargs["max_new_tokens"], hit)))
        return results

    # -- streaming -----------------------------------------------------------------------------

    def stream(self, instruction: str, input: str, candidates: Sequence[str],
               sampling: Optional[SamplingParams] = None, **overrides) -> AsyncIterator[GenerationChunk]:
        """Fuse one request, yielding text pieces as the model writes them; the last chunk carries
        the finish reason and the token usage (the same counts as the one-shot call).

        Beam search cannot stream (its best sequence is only known at the end), so this decodes one
        sequence: greedy unless sampling is asked for. With greedy decoding the pieces join to
        exactly ``fuse(..., num_beams=1).text``. Bad input raises here, before iteration starts.
        Leaving the loop early (break, cancellation) stops the generation at its next token.

        Example:
            >>> async for chunk in fuser.stream("Say hi.", "", ["hi", "hello"]):
            ...     print(chunk.text, end="")
        """
        (prompt,), kwargs, seed, stops = self._prepare([(instruction, input, candidates)], sampling, overrides,
                                                       streaming=True)
        return self._stream(prompt, kwargs, seed, stops)

    async def _stream(self, prompt: list[int], kwargs, seed, stops) -> AsyncIterator[GenerationChunk]:
        stream = self._worker.stream(prompt, kwargs, seed)
        matcher = StopMatcher(stops)
        try:
            async for piece in stream:
                text = matcher.push(piece)
                if text:
                    yield GenerationChunk(text=text)
                if matcher.stopped:
                    stream.stop()
        except BlenderError:
            raise
        except Exception as exc:
            raise _failure(exc) from exc
        tail = matcher.flush()
        if tail:
            yield GenerationChunk(text=tail)
        usage = Usage(prompt_tokens=len(prompt), completion_tokens=len(stream.new_ids))
        finish = self._worker.finish_reason(stream.new_ids, kwargs["max_new_tokens"], matcher.stopped)
        yield GenerationChunk(finish_reason=finish, usage=usage)


def _failure(exc: BaseException) -> GenerationError:
    return GenerationError(f"fuser generation failed ({type(exc).__name__}: {exc}); check the device and memory, "
                           "or lower max_length, max_new_tokens or the batch size")
