"""Blender: the LLM-Blender method in one process.

One stage sequence, written once (``Blender._stages``) and consumed by both ``blend`` and
``stream``: generate (all selected base models at once, each under a deadline) -> rank
(PairRanker) -> decide on fusion -> fuse the top-K (GenFuser, bounded by the request's sampling
settings; skipped on request or when the top candidate clearly leads) -> assemble a BlendResult
with provenance. Once ranked, the stages yield a Progress (candidates, scores, matrix, the fusion
decision) that a stream can show before its answer; the one-shot call ignores it. A model that
fails, times out or answers nothing is dropped from that request and reported in ``errors``;
fewer than ``min_candidates`` answers raise NotEnoughCandidatesError. With a ``quorum``, ranking
starts once that many have answered (plus ``quorum_grace_s``) and the slower calls are cancelled
and listed in ``skipped``. A failing or late ranker (``rank_timeout_s``) either fails the
request (ComponentUnavailableError) or answers with the first model's candidate flagged ``unranked``, as ``on_ranker_failure`` says. A
failing or late fuser (``fuse_timeout_s``) degrades the request to the top-ranked answer, flagged
``unfused`` (the reason under ``errors["fuser"]``); it never loses the request. A request whose
sampling asks for a ``response_format`` (JSON) has the models told so, its answers that lack the
format dropped before ranking (reported in ``errors``; none left raises NoValidAnswerError), and
its fused answer checked whole (so a stream buffers the fusion): one that lacks the format gives
way to the top-ranked valid candidate (see ``blender_serve.structured``). The pipeline
talks to its components only through the Protocols of ``blender_serve.interfaces``, so the Ray
Serve ingress runs these same stages over deployment handles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import AsyncIterator, Optional, Sequence, Union

from blender_serve import structured
from blender_serve.config import BlendOptions, BlenderConfig, FuserConfig, RankerConfig
from blender_serve.errors import (
    ComponentUnavailableError,
    DeadlineExceededError,
    InvalidInputError,
    NotEnoughCandidatesError,
    UnknownModelError,
    UnsupportedParameterError,
    validated,
)
from blender_serve.interfaces import FuserProtocol, GeneratorProtocol, RankerProtocol
from blender_serve.ordering import order_from_scores
from blender_serve.prompts import as_messages, ranker_source, split_messages
from blender_serve.types import (
    BlendResult, Candidate, ChatMessage, Generation, Progress, RankResult, SamplingParams, Usage,
)

__all__ = ["Blender", "BlendStream", "ResolvedOptions", "FusionAttempt", "resolve_options", "decide_fusion",
           "ranked_progress", "assemble_result"]

logger = logging.getLogger(__name__)

FUSER_FAILED = "fuser failed; answered with the top-ranked candidate"
RANKER_FAILED = "ranker failed; answered with the first model's candidate, unranked"
FUSED_INVALID = "the fused answer did not match response_format; answered with the top-ranked valid candidate"


class ResolvedOptions(BlendOptions):
    """BlendOptions with every field filled from the ensemble's defaults."""


def resolve_options(config: BlenderConfig, options: BlendOptions | dict | None, has_fuser: bool) -> ResolvedOptions:
    """Merge a call's options over the ensemble's defaults and check them against the ensemble."""
    from blender_serve.ranker.aggregation import get_strategy

    opts = validated(BlendOptions, options if options is not None else {}, "blend options",
                     hint=f"valid options: {', '.join(BlendOptions.model_fields)}")
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
    quorum = opts.quorum if opts.quorum is not None else config.quorum
    if quorum is not None:
        quorum = min(quorum, len(models)) if opts.quorum is None else quorum  # the ensemble's default fits a subset
        if not min_candidates <= quorum <= len(models):
            raise InvalidInputError(f"quorum={quorum} must lie between min_candidates ({min_candidates}) and the "
                                    f"{len(models)} selected models")
    return ResolvedOptions(
        models=models, top_k=top_k, strategy=strategy, fusion=fusion,
        auto_fusion_margin=opts.auto_fusion_margin if opts.auto_fusion_margin is not None else config.auto_fusion_margin,
        deadline_s=opts.deadline_s or config.deadline_s, min_candidates=min_candidates,
        on_ranker_failure=opts.on_ranker_failure or config.on_ranker_failure,
        quorum=quorum, quorum_grace_s=opts.quorum_grace_s if opts.quorum_grace_s is not None else config.quorum_grace_s,
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


@dataclasses.dataclass
class FusionAttempt:
    """What the fuse stage produced: the text pieces sent, the fuser's usage and finish reason, and
    why its answer was not used (None when it was)."""

    pieces: list[str] = dataclasses.field(default_factory=list)
    usage: Usage = dataclasses.field(default_factory=Usage)
    finish_reason: Optional[str] = None
    error: Optional[str] = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _ranked(generations: list[Generation], ranking: RankResult, chosen: set[int]
            ) -> tuple[list[Candidate], Optional[list[list[float]]]]:
    """The candidates in rank order (``chosen``: input indices read by the fuser) and the matrix in that order."""
    ranks = ranking.ranks
    order = order_from_scores(ranking.scores)
    candidates = [Candidate(model=generations[i].model, text=generations[i].text, score=ranking.scores[i], rank=ranks[i],
                            chosen=i in chosen, usage=generations[i].usage, latency_s=generations[i].latency_s,
                            finish_reason=generations[i].finish_reason,
                            time_to_first_token_s=generations[i].time_to_first_token_s)
                  for i in order]
    M = ranking.matrix  # [n, n] in input order -> the candidates' (rank) order
    return candidates, None if M is None else [[M[i][j] for j in order] for i in order]


def ranked_progress(generations: list[Generation], ranking: RankResult, top: list[int], skipped: Optional[str], *,
                    strategy: str, errors: dict[str, str], timings: dict[str, float], unranked: bool = False,
                    skipped_models: Sequence[str] = ()) -> Progress:
    """What is known once the candidates are ranked and fusion decided (``skipped``: None to fuse
    ``top``, else why not): the Progress a stream sends before its first piece."""
    will_fuse = skipped is None
    candidates, matrix = _ranked(generations, ranking, set(top) if will_fuse else set())
    return Progress(will_fuse=will_fuse, fusion_skipped_reason=skipped, candidates=candidates,
                    chosen=[generations[i].model for i in top] if will_fuse else [], strategy=strategy,
                    errors=dict(errors), skipped=list(skipped_models), degraded=["unranked"] if unranked else [],
                    timings=dict(timings), matrix=matrix)


def assemble_result(generations: list[Generation], ranking: RankResult, top: list[int], fusion: Optional[FusionAttempt],
                    *, skipped: Optional[str], strategy: str, errors: dict[str, str],
                    timings: dict[str, float], unranked: bool = False, skipped_models: Sequence[str] = ()) -> BlendResult:
    """The BlendResult of one request: candidates in rank order with scores, ranks and provenance;
    usage summed over every model call, the fuser's included (also when its answer was not used)."""
    fused = fusion is not None and fusion.error is None
    candidates, matrix = _ranked(generations, ranking, set(top) if fused else set())
    usage = sum((g.usage for g in generations), fusion.usage if fusion is not None else Usage())
    best = generations[ranking.best]
    return BlendResult(
        text=fusion.text if fused else best.text,
        finish_reason=(fusion.finish_reason if fused else best.finish_reason) or "stop",
        fused=fused, fusion_skipped_reason=skipped, candidates=candidates,
        chosen=[generations[i].model for i in top] if fused else [], strategy=strategy,
        errors=errors, timings=timings, usage=usage, skipped=list(skipped_models), matrix=matrix,
        degraded=(["unranked"] if unranked else []) + (["unfused"] if fusion is not None and not fused else []))


class Blender:
    """An ensemble of base LLMs with a PairRanker and an optional fuser, run in this process.

    Example:
        >>> blender = Blender(BlenderConfig(generators=[...], ranker=RankerConfig(path="/models/PairRM"),
        ...                                 fuser=FuserConfig(path="/models/gen_fuser_3b")))
        >>> result = blender.blend_sync("What is the capital of France?")
        >>> result.text, [(c.model, c.rank) for c in result.candidates]

    Components can be passed in already built (``ranker=``, ``fuser=``, ``generators=``, anything
    that satisfies the Protocols of ``blender_serve.interfaces``: local objects or deployment-handle
    adapters); otherwise they are built from the config on ``start()``. A fuser of kind 'generator'
    is built at once over ``self.generators[config.fuser.generator]``: it loads no model.
    """

    def __init__(self, config: BlenderConfig | dict, *, ranker: Optional[RankerProtocol] = None,
                 fuser: Optional[FuserProtocol] = None, generators: Optional[dict[str, GeneratorProtocol]] = None):
        self.config: BlenderConfig = validated(BlenderConfig, config, "ensemble config")
        self.ranker = ranker
        self.fuser = fuser
        from blender_serve.generators import build_generator

        given = dict(generators or {})
        self.generators: dict[str, GeneratorProtocol] = {
            g.name: given.get(g.name) or build_generator(g) for g in self.config.generators}
        if self.fuser is None and self.config.fuser is not None and self.config.fuser.kind == "generator":
            # Fusion by one of the ensemble's own base models: nothing to load, so it is built now, over
            # whatever answers for that model here (a local generator, or a deployment-handle adapter).
            self.fuser = _load_fuser(self.config.fuser, self.generators)
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
    async def generate_candidates(self, messages: list[ChatMessage], opts: ResolvedOptions, sampling: Optional[SamplingParams]
                                  ) -> tuple[list[Generation], dict[str, str], list[str]]:
        """Ask every selected model at once; keep what answers (non-empty) before its deadline. With
        a quorum, stop waiting once that many have answered and the grace has passed: the calls
        still running are cancelled and returned as skipped (generations, errors, skipped)."""

        async def one(name: str) -> Generation:
            try:
                return await asyncio.wait_for(self.generators[name].generate(messages, sampling), opts.deadline_s)
            except asyncio.TimeoutError:
                raise DeadlineExceededError(f"no answer within the {opts.deadline_s:g}s deadline") from None

        tasks = {asyncio.ensure_future(one(n)): n for n in opts.models}
        outcomes: dict[str, object] = {}
        try:
            await _until_quorum(tasks, outcomes, opts.quorum, opts.quorum_grace_s)
        finally:
            running = [t for t in tasks if not t.done()]
            for t in running:
                t.cancel()
            if running:
                await asyncio.gather(*running, return_exceptions=True)
        skipped = [n for n in opts.models if n not in outcomes]
        generations, errors = [], {}
        for name in opts.models:
            if name not in outcomes:
                continue
            out = outcomes[name]
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
        return generations, errors, skipped

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
            sampling: the request's sampling settings: passed to every base model (over each
                model's defaults) and to the fuser (whose own settings are the default and cap),
                so ``max_tokens`` and ``stop`` bound the answer returned.
        Returns:
            BlendResult: the answer, every candidate with score and rank, the chosen top-K, whether
            fusion ran, per-model errors, per-stage timings and summed usage.
        Raises:
            InvalidInputError / UnknownModelError for bad input; NotEnoughCandidatesError when too
            few models answered.
        """
        result = None
        async for event in self._stages(*self._prepare(prompt, options, sampling), streaming=False):
            if isinstance(event, BlendResult):
                result = event
        return result

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
            >>> async for event in blender.stream("Hi").events():  # the ranking first, then the pieces
            ...     print(event.candidates if isinstance(event, Progress) else event)
        """
        return BlendStream(self._stages(*self._prepare(prompt, options, sampling), streaming=True))

    def _prepare(self, prompt, options, sampling) -> tuple[list[ChatMessage], ResolvedOptions, Optional[SamplingParams]]:
        messages = as_messages(prompt)
        opts = resolve_options(self.config, options, self.has_fuser)
        if sampling is not None:
            sampling = validated(SamplingParams, sampling, "sampling params")
            structured.check_format(structured.requested(sampling))
            if sampling.logprobs is not None:
                raise UnsupportedParameterError("the ensemble's answer is ranked and fused from several models, so no "
                                                "token log-probabilities describe it; ask one base model", param="logprobs")
        return messages, opts, sampling

    # ------------------------------------------------------------------ the stages, once
    async def _stages(self, messages: list[ChatMessage], opts: ResolvedOptions, sampling: Optional[SamplingParams],
                      *, streaming: bool) -> AsyncIterator[Union[Progress, str, BlendResult]]:
        """generate -> rank -> decide on fusion -> fuse -> assemble: yields the Progress (ranked,
        fusion decided), the answer's text pieces (one-shot: the whole answer at once), then the
        BlendResult. ``blend`` keeps only the last; ``BlendStream`` passes on the rest."""
        t0 = time.perf_counter()
        await self.start()
        fmt = structured.requested(sampling)
        asked = structured.instructed(messages, fmt)  # the models (and the fuser) are told the format
        instruction, context = split_messages(messages)
        generations, errors, skipped_models = await self.generate_candidates(asked, opts, sampling)
        if fmt is not None:  # only answers of the asked format are ranked
            generations = structured.keep_valid(generations, fmt, errors)
        t_gen = time.perf_counter()
        ranking, ranker_error = await self._guarded_rank(ranker_source(instruction, context), generations, opts)
        t_rank = time.perf_counter()
        top = ranking.top_k(opts.top_k)
        skipped = decide_fusion(opts, ranking, self.fuser is not None) if ranker_error is None else RANKER_FAILED
        if ranker_error is not None:
            errors["ranker"] = ranker_error
        yield ranked_progress(generations, ranking, top, skipped, strategy=opts.strategy, errors=errors,
                              timings={"generate_s": t_gen - t0, "rank_s": t_rank - t_gen},
                              unranked=ranker_error is not None, skipped_models=skipped_models)
        fusion = None
        if skipped is None:
            fusion = FusionAttempt()
            # A structured answer is checked whole before any of it is sent: its fusion is buffered.
            async for piece in self._fuse(*split_messages(asked), [generations[i].text for i in top], sampling,
                                          streaming and fmt is None, fusion):
                if fmt is None:
                    yield piece
            if fmt is not None and fusion.error is None:
                skipped = _check_fused(fusion, fmt)
                if skipped is None:
                    yield fusion.text
            if fusion.error is not None:
                errors["fuser"], skipped = fusion.error, skipped or FUSER_FAILED
        if skipped is not None:
            yield generations[ranking.best].text
        t_end = time.perf_counter()
        timings = {"generate_s": t_gen - t0, "rank_s": t_rank - t_gen, "fuse_s": t_end - t_rank, "total_s": t_end - t0}
        yield assemble_result(generations, ranking, top, fusion, skipped=skipped, strategy=opts.strategy,
                              errors=errors, timings=timings, unranked=ranker_error is not None, skipped_models=skipped_models)

    async def _guarded_rank(self, source: str, generations: list[Generation],
                            opts: ResolvedOptions) -> tuple[RankResult, Optional[str]]:
        """The ranking, or, when the ranker fails or runs past ``rank_timeout_s``, what the request's
        ``on_ranker_failure`` asks for: an unranked order (every score 0, models in the request's
        order) with the reason, or ComponentUnavailableError (HTTP 503)."""
        try:
            return await asyncio.wait_for(self.rank_candidates(source, generations, opts.strategy),
                                          self.config.rank_timeout_s), None
        except InvalidInputError:
            raise  # the caller's input is bad (a strategy it named, say): no fallback makes it good
        except Exception as exc:
            reason = (f"DeadlineExceededError: no ranking within {self.config.rank_timeout_s:g}s"
                      if isinstance(exc, asyncio.TimeoutError) else f"{type(exc).__name__}: {exc}")
        logger.warning("ranker failed (%s); on_ranker_failure=%s", reason, opts.on_ranker_failure)
        if opts.on_ranker_failure == "fail":
            raise ComponentUnavailableError(f"the ranker failed ({reason}); retry later, or send "
                                            f"on_ranker_failure='unranked' to get an unranked answer")
        n = len(generations)
        return RankResult(order=list(range(n)), scores=[0.0] * n, strategy=opts.strategy), reason

    async def _fuse(self, instruction: str, context: str, texts: list[str], sampling: Optional[SamplingParams],
                    streaming: bool, out: FusionAttempt) -> AsyncIterator[str]:
        """Run the fuser, yielding what may be sent: nothing until the answer has visible text, so a
        blank answer can still give way to the top candidate. Fills ``out`` as it goes."""
        timeout = self.config.fuse_timeout_s
        try:
            if streaming:
                held = ""
                async for chunk in _idle_timeout(self.fuser.stream(instruction, context, texts, sampling), timeout):
                    out.usage = chunk.usage or out.usage
                    out.finish_reason = chunk.finish_reason or out.finish_reason
                    if chunk.text:
                        held += chunk.text
                        if held.strip():
                            out.pieces.append(held)
                            yield held
                            held = ""
                if out.pieces and held:
                    out.pieces.append(held)
                    yield held
            else:
                try:
                    result = await asyncio.wait_for(self.fuser.afuse(instruction, context, texts, sampling), timeout)
                except asyncio.TimeoutError:
                    raise DeadlineExceededError(f"no fused answer within fuse_timeout_s={timeout:g}s") from None
                out.usage, out.finish_reason = result.usage, result.finish_reason
                if result.text.strip():
                    out.pieces.append(result.text)
                    yield result.text
        except Exception as exc:  # a failed, dead or late fuser: the top-ranked candidate answers
            if out.pieces:
                raise  # part of the fused text is out already; the caller must see the failure
            out.error = f"{type(exc).__name__}: {exc}"
            logger.warning("fuser failed: %s", out.error)
            return
        if not out.pieces:
            out.error = "returned an empty answer"


def _check_fused(fusion: FusionAttempt, fmt) -> Optional[str]:
    """Cut a fused answer to its JSON (None), or mark it failed and say why it gives way."""
    text, why = structured.check_answer(fusion.text, fmt)
    if why is not None:
        fusion.error = f"the fused answer {why}"
        return FUSED_INVALID
    fusion.pieces = [text]
    return None


class BlendStream:
    """Async iterator of the final answer's text pieces. ``progress`` holds the ranked candidates
    and the fusion decision (a Progress) as soon as they are known, before the first piece;
    ``result`` holds the BlendResult after the last piece. ``events()`` yields the Progress and the
    pieces in the order they happen, for callers that show the ranking before the answer."""

    def __init__(self, stages: AsyncIterator[Union[Progress, str, BlendResult]]):
        self._stages = stages
        self.progress: Optional[Progress] = None
        self.result: Optional[BlendResult] = None

    async def events(self) -> AsyncIterator[Union[Progress, str]]:
        """The Progress (once), then the answer's text pieces; ``result`` is set when they end."""
        async for event in self._stages:
            if isinstance(event, BlendResult):
                self.result = event
                continue
            if isinstance(event, Progress):
                self.progress = event
            yield event

    async def __aiter__(self) -> AsyncIterator[str]:
        async for event in self.events():
            if isinstance(event, str):
                yield event


async def _until_quorum(tasks: dict, outcomes: dict, quorum: Optional[int], grace_s: float) -> None:
    """Wait on the model calls ``tasks`` (task -> model name), filling ``outcomes`` (name -> Generation
    or exception) as they finish: until every one has, or, with a quorum, until ``quorum`` have
    answered with text and ``grace_s`` more seconds have passed."""
    pending, answered, grace_ends = set(tasks), 0, None
    loop = asyncio.get_running_loop()
    while pending:
        timeout = None if grace_ends is None else max(0.0, grace_ends - loop.time())
        done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.cancelled():
                out = asyncio.CancelledError()
            else:
                out = task.exception() or task.result()
            outcomes[tasks[task]] = out
            answered += isinstance(out, Generation) and bool(out.text.strip())
        if grace_ends is None and quorum is not None and answered >= quorum:
            grace_ends = loop.time() + grace_s
        if grace_ends is not None and loop.time() >= grace_ends:
            return


async def _idle_timeout(stream: AsyncIterator, timeout_s: float) -> AsyncIterator:
    """``stream``'s items, raising DeadlineExceededError when the next one takes over ``timeout_s``."""
    iterator = stream.__aiter__()
    while True:
        try:
            item = await asyncio.wait_for(iterator.__anext__(), timeout_s)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise DeadlineExceededError(f"the fuser sent nothing for fuse_timeout_s={timeout_s:g}s") from None
        yield item


def _load_ranker(config: RankerConfig):
    from blender_serve.ranker import build_ranker

    return build_ranker(config)


def _load_fuser(config: FuserConfig, generators: Optional[dict[str, GeneratorProtocol]] = None):
    from blender_serve.fuser import build_fuser

    return build_fuser(config, generators)
