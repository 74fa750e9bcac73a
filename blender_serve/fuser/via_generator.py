"""GeneratorFuser: fusion written by one of the ensemble's own base models, through its generator.

Instead of loading its own copy of a causal LM, the fuser renders the same messages as
``PromptedFuser`` (``blender_serve.fuser.chat_prompt``) and sends them to a generator: a local
``Generator`` in-process, or, in the Serve app, the ``HandleGenerator`` of the base model's
deployment, so fusion calls share that model's replicas (and vLLM's continuous batching).
Configured as ``FuserConfig(kind="generator", generator="<base model name>")``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Mapping, Optional, Sequence

from blender_serve.errors import InvalidInputError, UnknownModelError, validated
from blender_serve.fuser._fit import ELLIPSIS, SOFT_FLOOR, fit_lengths
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.fuser.chat_prompt import DEFAULT_CANDIDATE_TEMPLATE, DEFAULT_TEMPLATE, FusionPrompt
from blender_serve.types import ChatMessage, FusionOutput, GenerationChunk, SamplingParams

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig
    from blender_serve.interfaces import GeneratorProtocol

__all__ = ["GeneratorFuser", "CHARS_PER_TOKEN"]

#: The fuser sees text, not the base model's tokenizer (it may be a remote deployment), so lengths
#: in tokens are estimated at this many characters a token (English prose with BPE vocabularies).
CHARS_PER_TOKEN = 4

#: The per-call settings ``afuse``/``stream``/``fuse`` accept, as the transformers fusers do (less do_sample).
OVERRIDES = ("max_new_tokens", "num_beams", "temperature", "top_p", "top_k", "seed", "stop")


class GeneratorFuser(Fuser):
    """Fuses by asking a base model (any ``GeneratorProtocol``) with the fusion prompt.

    The request's sampling applies (``max_tokens`` capped at ``max_new_tokens``; greedy unless it
    sets a temperature). Candidates are cut to about ``candidate_max_length`` tokens and the prompt
    to about ``max_length`` tokens, cutting candidates first (lengths estimated at
    ``CHARS_PER_TOKEN`` characters a token). The base model's own ``system_prompt`` applies when
    this fuser sets none. Decoding is one sequence (no beam search).

    Example:
        >>> gen = build_generator({"name": "smol", "backend": "transformers", "model": "/models/smollm2"})
        >>> fuser = GeneratorFuser(gen, max_new_tokens=96)
        >>> (await fuser.afuse("Name a French city.", "", ["Paris", "Lyon is in France"])).text
    """

    kind = "generator"

    def __init__(self, generator: "GeneratorProtocol", *, max_length: int = 1024, candidate_max_length: int = 128,
                 max_new_tokens: int = 128, template: str = DEFAULT_TEMPLATE,
                 candidate_template: str = DEFAULT_CANDIDATE_TEMPLATE, system_prompt: Optional[str] = None):
        self.generator = generator
        self.prompt = FusionPrompt(template, candidate_template, system_prompt)
        self.max_length = max_length
        self.candidate_max_length = candidate_max_length
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_config(cls, config: "FuserConfig", generators: Optional[Mapping[str, "GeneratorProtocol"]] = None
                    ) -> "GeneratorFuser":
        """The fuser over ``generators[config.generator]`` (the ensemble's generators, by name)."""
        if config.kind != cls.kind:
            raise InvalidInputError(f"{cls.__name__} serves kind={cls.kind!r}, but the config says kind={config.kind!r}")
        if not generators or config.generator not in generators:
            raise UnknownModelError(f"the fuser writes through base model {config.generator!r}, which is not among the "
                                    f"generators given ({sorted(generators or {})}); build it with the ensemble's "
                                    "generators, e.g. build_fuser(config, blender.generators)")
        return cls(generators[config.generator], max_length=config.max_length,
                   candidate_max_length=config.candidate_max_length, max_new_tokens=config.max_new_tokens)

    # -- the request -------------------------------------------------------------------------

    def messages(self, instruction: str, input: str, candidates: Sequence[str]) -> list[ChatMessage]:
        """The chat sent to the base model for one request, its texts cut to fit.

        Example:
            >>> fuser.messages("Say hi.", "", ["hi", "hello"])[-1].content.endswith("## Answer 2\\nhello")
            True
        """
        check_item(instruction, input, candidates)
        texts = [instruction, input, *candidates]
        cap = self.candidate_max_length * CHARS_PER_TOKEN
        lengths = [len(instruction), len(input)] + [min(len(c), cap) for c in candidates]

        def render(lens: list[int]) -> list[dict[str, str]]:
            cut = [t if n >= len(t) else t[:n] + ELLIPSIS for t, n in zip(texts, lens)]
            return self.prompt.messages(cut[0], cut[1], cut[2:])

        n = len(texts)
        floor = SOFT_FLOOR * CHARS_PER_TOKEN
        stages = [(list(range(2, n)), min(floor, cap)), ([0, 1], floor), (list(range(n)), 0)]
        budget = self.max_length * CHARS_PER_TOKEN
        try:
            lens = fit_lengths(lengths, stages, lambda lens: sum(len(m["content"]) for m in render(lens)), budget)
        except InvalidInputError:
            raise InvalidInputError(f"the fusion prompt's template alone is over max_length={self.max_length} tokens "
                                    f"(estimated at {CHARS_PER_TOKEN} characters a token); shorten it or raise max_length"
                                    ) from None
        return [ChatMessage(**m) for m in render(lens)]

    def sampling(self, sampling: Optional[SamplingParams] = None, **overrides: Any) -> SamplingParams:
        """The base model's sampling settings for one fusion: the request's, with ``max_tokens``
        capped at ``max_new_tokens`` and greedy decoding unless a temperature is set; keyword
        ``overrides`` (see ``OVERRIDES``; None means unset) win over both."""
        unknown = sorted(set(overrides) - set(OVERRIDES))
        if unknown:
            raise InvalidInputError(f"unknown generation settings {unknown}; this fuser accepts {', '.join(OVERRIDES)}")
        overrides = {k: v for k, v in overrides.items() if v is not None}
        if overrides.pop("num_beams", 1) != 1:
            raise InvalidInputError("a fuser that writes through a base model decodes one sequence; drop num_beams "
                                    "(or set it to 1)")
        s = validated(SamplingParams, sampling, "sampling params") if sampling is not None else SamplingParams()
        params: dict[str, Any] = {
            "max_tokens": min(s.max_tokens, self.max_new_tokens) if s.max_tokens else self.max_new_tokens,
            "temperature": 0.0 if s.temperature is None else s.temperature,
            "top_p": s.top_p, "top_k": s.top_k, "seed": s.seed, "stop": list(s.stop) or None,
            "response_format": s.response_format}  # a backend that enforces JSON natively does so for the fusion too
        if "max_new_tokens" in overrides:
            params["max_tokens"] = overrides.pop("max_new_tokens")
        params.update(overrides)
        # Unset fields stay unset, so the base model's own defaults (its stop strings, say) apply.
        return validated(SamplingParams, {k: v for k, v in params.items() if v is not None}, "fusion sampling")

    # -- fusing ------------------------------------------------------------------------------

    async def afuse(self, instruction: str, input: str, candidates: Sequence[str],
                    sampling: Optional[SamplingParams] = None, **overrides) -> FusionOutput:
        """The fused answer from one ``generate`` call of the base model (see ``Fuser.fuse``)."""
        messages, params = self.messages(instruction, input, candidates), self.sampling(sampling, **overrides)
        start = time.perf_counter()
        out = await self.generator.generate(messages, params)
        return FusionOutput(text=out.text, usage=out.usage, finish_reason=out.finish_reason,
                            latency_s=time.perf_counter() - start)

    def stream(self, instruction: str, input: str, candidates: Sequence[str], sampling: Optional[SamplingParams] = None,
               **overrides) -> AsyncIterator[GenerationChunk]:
        """The base model's stream of the fused answer; bad input raises here, before iteration."""
        messages, params = self.messages(instruction, input, candidates), self.sampling(sampling, **overrides)
        return self._stream(messages, params)

    async def _stream(self, messages: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        async for chunk in self.generator.stream(messages, params):
            yield chunk

    def fuse_batch(self, items: Sequence[FuseItem], sampling: Optional[SamplingParams] = None,
                   **overrides) -> list[FusionOutput]:
        """Fuse several requests at once (blocking; the base model batches them if its engine can).
        From async code, await ``afuse`` instead."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise InvalidInputError("GeneratorFuser.fuse/fuse_batch block, and this thread runs an event loop; "
                                    "await fuser.afuse(...) instead")
        if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
            raise InvalidInputError("items must be a non-empty list of (instruction, input, candidates) tuples")
        for item in items:
            if not isinstance(item, (tuple, list)) or len(item) != 3:
                raise InvalidInputError(f"each item must be (instruction, input, candidates), got {item!r:.80}")
            self.messages(*item)  # every item checked before any generation starts

        async def run() -> list[FusionOutput]:
            return list(await asyncio.gather(*(self.afuse(*item, sampling, **overrides) for item in items)))

        return asyncio.run(run())
