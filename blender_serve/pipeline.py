"""Blender: the LLM-Blender method in one process.

generate (all selected base models at once, each under a deadline) -> rank (PairRanker) ->
top-K -> fuse (GenFuser, or skipped) -> a BlendResult with provenance. A model that fails, times
out or answers nothing is dropped from that request and reported in ``errors``; fewer than
``min_candidates`` answers raise NotEnoughCandidatesError. A failing fuser degrades the request to
the top-ranked answer (reported under ``errors["fuser"]``); it never loses the request.
The Ray Serve layer runs these same steps with each component in its own deployment.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import AsyncIterator, Optional, Sequence

from pydantic import ValidationError

from blender_serve.config import BlendOptions, BlenderConfig, FuserConfig, RankerConfig
from blender_serve.errors import (
    BlenderError,
    DeadlineExceededError,
    InvalidInputError,
    NotEnoughCandidatesError,
    UnknownModelError,
)
from blender_serve.ordering import order_from_scores
from blender_serve.prompts import as_messages, ranker_source, split_messages
from blender_serve.types import BlendResult, Candidate, ChatMessage, Generation, RankResult, SamplingParams, Usage

__all__ = ["Blender", "ResolvedOptions", "resolve_options", "decide_fusion", "assemble_result", "BlendStream"]

logger = logging.getLogger(__name__)

FUSER_FAILED = "fuser failed; answered with the top-ranked candidate"


class ResolvedOptions(BlendOptions):
    """BlendOptions with every field filled from the ensemble's defaults."""


def _as_options(options: BlendOptions | dict | None) -> BlendOptions:
    if options is None:
        return BlendOptions()
    if isinstance(options, BlendOptions):
        return options
    if isinstance(options, dict):
        try:
            return BlendOptions.model_validate(options)
        except ValidationError as exc:
            raise InvalidInputError(f"invalid blend options: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}; "
                                    f"valid options: {', '.join(BlendOptions.model_fields)}") from None
    raise InvalidInputError(f"options must be a BlendOptions or a dict, got {type(options).__name__}")


def resolve_options(config: BlenderConfig, options: BlendOptions | dict | None, has_fuser: bool) -> ResolvedOptions:
    """Merge a call's options over the ensemble's defaults and check them against the ensemble."""
    from blender_serve.ranker.aggregation import get_strategy

    opts = _as_options(options)
    known = [g.name for g in config.generators]
    models = list(opts.models) if opts.models else known
    unknown = [m for m in models if m not in known]
    if unknown:
        raise UnknownModelError(f"unknown base model(s) {unknown} in options.models; this ensemble has {known}")
    if len(set(models)) != len(models):
        raise InvalidInputError(f"options.models lists a model twice: {models}")
    top_k = opts.top_k if opts.top_k is not None else min(config.top_k, len(models))
    if top_k > len(models):
        raise InvalidInputError(f"top_k={top_k} exceeds the {len(models)} selected models; lower top_k")
    strategy = opts.strategy or config.strategy
    get_strategy(strategy)
    fusion = opts.fusion or config.fusion
    if fusion == "always" and not has_fuser:
        raise InvalidInputError("fusion='always' but this ensemble has no fuser; use 'never' or 'auto'")
    min_candidates = opts.min_candidates if opts.min_candidates is not None else min(config.min_candidates, len(models))
    return ResolvedOptions(
        models=models, top_k=top_k, strategy=strategy, fusion=fusion,
        auto_fusion_margin=opts.auto_fusion_margin if opts.auto_fusion_margin is not None else config.auto_fusion_margin,
        deadline_s=opts.deadline_s or config.deadline_s, min_candidates=min_candidates,
    )


def decide_fusion(opts: ResolvedOptions, ranking: RankResult, has_fuser: bool) -> Optional[str]:
    """None to fuse, or the reason fusion is skipped."""
    if opts.fusion == "never":
        return "fusion disabled for this request"
    if not has_fuser:
        return "no fuser configured"
    if opts.fusion == "always":
        return None
    if len(ranking.scores) < 2 or opts.top_k < 2:
        return "only one candidate to fuse"
    margin = ranking.margin()
    if margin >= opts.auto_fusion_margin:
        return f"top candidate leads by {margin:.3f} >= auto_fusion_margin {opts.auto_fusion_margin}"
    return None


def assemble_result(generations: list[Generation], ranking: RankResult, top: list[int], *, text: str, fused: bool,
                    skipped: Optional[str], strategy: str, errors: dict[str, str], timings: dict[str, float],
                    extra_usage: Usage = Usage()) -> BlendResult:
    """The BlendResult of one request: candidates in rank order with scores, ranks and provenance."""
    ranks = ranking.ranks
    chosen_set = set(top) if fused else set()
    candidates = [Candidate(model=generations[i].model, text=generations[i].text, score=ranking.scores[i], rank=ranks[i],
                            chosen=i in chosen_set, usage=generations[i].usage, latency_s=generations[i].latency_s)
                  for i in order_from_scores(ranking.scores)]
    usage = sum((g.usage for g in generations), Usage()) + extra_usage
    return BlendResult(text=text, fused=fused, fusion_skipped_reason=skipped, candidates=candidates,
                       chosen=[generations[i].model for i in top] if fused else [], strategy=strategy,
                       errors=errors, timings=timings, usage=usage)


class Blender:
    """An ensemble of base LLMs with a PairRanker and an optional fuser, run in this process.

    Example:
        >>> blender = Blender(BlenderConfig(generators=[...], ranker=RankerConfig(path="/models/PairRM"),
        ...                                 fuser=FuserConfig(path="/models/gen_fuser_3b")))
        >>> result = blender.blend_sync("What is the capital of France?")
        >>> result.text, [(c.model, c.rank) for c in result.candidates]

    Components can be passed in already built (``ranker=``, ``fuser=``, ``generators=``) to share
    them between ensembles; otherwise they are built from the config on ``start()``.
    """

    def __init__(self, config: BlenderConfig | dict, *, ranker=None, fuser=None, generators: Optional[dict] = None):
        if isinstance(config, dict):
            try:
                config = BlenderConfig.model_validate(config)
            except ValidationError as exc:
                raise InvalidInputError(f"invalid ensemble config: {exc}") from None
        self.config: BlenderConfig = config
        self.ranker = ranker
        self.fuser = fuser
        from blender_serve.generators import build_generator

        generators = dict(generators or {})
        self.generators = {g.name: generators.get(g.name) or build_generator(g) for g in config.generators}
        self._started = False

    @property
    def has_fuser(self) -> bool:
        return self.fuser is not None or self.config.fuser is not None

    async def start(self) -> None:
        """Load the ranker and fuser (in worker threads) and start every generator. Idempotent."""
        if self._started:
            return
        if self.ranker is None:
            self.ranker = await asyncio.to_thread(_load_ranker, self.config.ranker)
        if self.fuser is None and self.config.fuser is not None:
            self.fuser = await asyncio.to_thread(_load_fuser, self.config.fuser)
        for g in self.generators.values():  # one at a time: transformers' loading is not thread-safe
            await g.start()
        self._started = True

    async def close(self) -> None:
        await asyncio.gather(*(g.close() for g in self.generators.values()), return_exceptions=True)
        self._started = False

    # ------------------------------------------------------------------ the steps
    async def generate_candidates(self, messages: list[ChatMessage], opts: ResolvedOptions,
                                  sampling: Optional[SamplingParams]) -> tuple[list[Generation], dict[str, str]]:
        """Ask every selected model at once; keep what answers (non-empty) before its deadline."""

        async def one(name: str) -> Generation:
            try:
                return await asyncio.wait_for(self.generators[name].generate(messages, sampling), opts.deadline_s)
            except asyncio.TimeoutError:
                raise DeadlineExceededError(f"no answer within the {opts.deadline_s:g}s deadline") from None

        outcomes = await asyncio.gather(*(one(n) for n in opts.models), return_exceptions=True)
        generations, errors = [], {}
        for name, out in zip(opts.models, outcomes):
            if isinstance(out, InvalidInputError):
                raise out  # the request is bad for every model; don't dress it up as a model failure
            if isinstance(out, BaseException):
                if not isinstance(out, Exception):
                    raise out  # CancelledError and friends
                errors[name] = f"{type(out).__name__}: {out}"
                logger.warning("base model %s dropped: %s", name, errors[name])
            elif not out.text.strip():
                errors[name] = "returned an empty answer"
            else:
                generations.append(out)
        if len(generations) < opts.min_candidates:
            raise NotEnoughCandidatesError(
                f"only {len(generations)} of {len(opts.models)} base models answered (need {opts.min_candidates}); "
                f"errors: {errors}. Retry, raise deadline_s, or select other models", errors)
        return generations, errors

    async def rank_candidates(self, source: str, generations: list[Generation], strategy: str) -> RankResult:
        if len(generations) == 1:
            return RankResult(order=[0], scores=[0.0], strategy=strategy)
        return await self.ranker.arank(source, [g.text for g in generations], strategy)

    # ------------------------------------------------------------------ public API
    async def blend(self, prompt: str | Sequence[ChatMessage | dict], options: BlendOptions | dict | None = None,
                    sampling: SamplingParams | dict | None = None) -> BlendResult:
        """Answer ``prompt`` (a string or chat messages) with the ensemble.

        Args:
            prompt: a question, or OpenAI-style chat messages.
            options: per-call BlendOptions (models, top_k, strategy, fusion, deadline_s...).
            sampling: sampling settings passed to every base model (over each model's defaults).
        Returns:
            BlendResult: the answer, every candidate with score and rank, the chosen top-K, whether
            fusion ran, per-model errors, per-stage timings and summed usage.
        Raises:
            InvalidInputError / UnknownModelError for bad input; NotEnoughCandidatesError when too
            few models answered.
        """
        t0 = time.perf_counter()
        messages, opts, sampling = self._prepare(prompt, options, sampling)
        await self.start()
        instruction, context = split_messages(messages)
        generations, errors = await self.generate_candidates(messages, opts, sampling)
        t_gen = time.perf_counter()
        ranking = await self.rank_candidates(ranker_source(instruction, context), generations, opts.strategy)
        t_rank = time.perf_counter()
        top = ranking.top_k(opts.top_k)
        skipped = decide_fusion(opts, ranking, self.fuser is not None)
        text, fused, fuse_usage = generations[ranking.best].text, False, Usage()
        if skipped is None:
            try:
                out = await self.fuser.afuse(instruction, context, [generations[i].text for i in top])
                fuse_usage = out.usage
                if out.text.strip():
                    text, fused = out.text, True
                else:
                    errors["fuser"] = "returned an empty answer"
                    skipped = FUSER_FAILED
            except BlenderError as exc:
                errors["fuser"] = f"{type(exc).__name__}: {exc}"
                skipped = FUSER_FAILED
        t_end = time.perf_counter()
        timings = {"generate_s": t_gen - t0, "rank_s": t_rank - t_gen, "fuse_s": t_end - t_rank, "total_s": t_end - t0}
        return assemble_result(generations, ranking, top, text=text, fused=fused, skipped=skipped,
                               strategy=opts.strategy, errors=errors, timings=timings, extra_usage=fuse_usage)

    def blend_sync(self, prompt, options=None, sampling=None) -> BlendResult:
        """``blend`` for code without an event loop (scripts, notebooks without a running loop)."""
        return asyncio.run(self.blend(prompt, options, sampling))

    def stream(self, prompt, options: BlendOptions | dict | None = None, sampling=None) -> "BlendStream":
        """Like ``blend``, but the final answer arrives as text pieces (the fuser's token stream,
        or the top candidate in one piece when fusion is skipped). Input is checked right away.

        Example:
            >>> s = blender.stream("Hi")
            >>> async for piece in s: print(piece, end="")
            >>> s.result.candidates   # provenance, once the stream is exhausted
        """
        return BlendStream(self, *self._prepare(prompt, options, sampling))

    def _prepare(self, prompt, options, sampling):
        messages = as_messages(prompt)
        opts = resolve_options(self.config, options, self.has_fuser)
        if isinstance(sampling, dict):
            try:
                sampling = SamplingParams.model_validate(sampling)
            except ValidationError as exc:
                raise InvalidInputError(f"invalid sampling params: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        return messages, opts, sampling


class BlendStream:
    """Async iterator of the final answer's text pieces; ``result`` holds the BlendResult after the last piece."""

    def __init__(self, blender: Blender, messages, opts: ResolvedOptions, sampling):
        self._blender, self._messages, self._opts, self._sampling = blender, messages, opts, sampling
        self.result: Optional[BlendResult] = None
        self.ranking: Optional[RankResult] = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        b, opts = self._blender, self._opts
        t0 = time.perf_counter()
        await b.start()
        instruction, context = split_messages(self._messages)
        generations, errors = await b.generate_candidates(self._messages, opts, self._sampling)
        t_gen = time.perf_counter()
        ranking = self.ranking = await b.rank_candidates(ranker_source(instruction, context), generations, opts.strategy)
        t_rank = time.perf_counter()
        top = ranking.top_k(opts.top_k)
        skipped = decide_fusion(opts, ranking, b.fuser is not None)
        pieces: list[str] = []
        fused = False
        if skipped is None:
            try:
                async for piece in b.fuser.stream(instruction, context, [generations[i].text for i in top]):
                    pieces.append(piece)
                    yield piece
                fused = bool("".join(pieces).strip())
                if not fused:
                    errors["fuser"], skipped = "returned an empty answer", FUSER_FAILED
            except BlenderError as exc:
                if "".join(pieces).strip():
                    raise  # part of the fused text is already out; the caller must see the failure
                errors["fuser"] = f"{type(exc).__name__}: {exc}"
                skipped = FUSER_FAILED
        if not fused:
            pieces = [generations[ranking.best].text]
            yield pieces[0]
        t_end = time.perf_counter()
        timings = {"generate_s": t_gen - t0, "rank_s": t_rank - t_gen, "fuse_s": t_end - t_rank, "total_s": t_end - t0}
        self.result = assemble_result(generations, ranking, top, text="".join(pieces), fused=fused, skipped=skipped,
                                      strategy=opts.strategy, errors=errors, timings=timings)


def _load_ranker(config: RankerConfig):
    from blender_serve.ranker import PairRanker

    return PairRanker.from_config(config)


def _load_fuser(config: FuserConfig):
    from blender_serve.fuser import build_fuser

    return build_fuser(config)
