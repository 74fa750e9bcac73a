"""The serving logic of the ensemble's API, with no routes and no FastAPI.

``BlenderServing`` holds one ``Blender`` (its components are deployment-handle adapters) and turns
typed requests into typed responses: it enforces the request limits, picks the target (the
ensemble, or one base model passed through the same adapter the ensemble uses), assembles chat and
text completions, and the server-sent events of a streamed answer. Both the HTTP routes
(``deployments.router``) and the handle API (``deployments.ingress``) call it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any, AsyncIterator, Optional, Union

from blender_serve.errors import InvalidInputError, UnknownModelError
from blender_serve.pipeline import Blender
from blender_serve.types import BlendResult, ChatMessage, Provenance, SamplingParams, Usage
from deployments.access import AccessGuard, charge_tokens
from deployments.config import AppArgs
from deployments.errors import to_http_error
from deployments.protocol import (
    AssistantMessage, BlendRequest, ChatChoice, ChatCompletionChunk, ChatCompletionRequest, ChatCompletionResponse,
    ChunkChoice, CompareRequest, CompareResponse, CompletionChoice, CompletionRequest, CompletionResponse,
    DeltaMessage, FuseRequest, FuseResponse, HealthResponse, ModelCard, ModelList, RankRequest, RankResponse,
    UsageInfo, new_id,
)

__all__ = ["BlenderServing", "sse_frame", "SSE_DONE"]

logger = logging.getLogger("ray.serve")

SSE_DONE = "data: [DONE]\n\n"


def sse_frame(event) -> str:
    """One server-sent event carrying a pydantic model as JSON."""
    return f"data: {event.model_dump_json()}\n\n"


@dataclasses.dataclass(frozen=True)
class _End:
    """The end of a streamed answer: how it finished, what it cost, and (ensemble) its provenance."""

    finish_reason: str
    usage: Optional[Usage]
    provenance: Optional[Provenance] = None


class BlenderServing:
    """The API of one ensemble application. Example (what the ingress does)::

        serving = BlenderServing(args, Blender(args.ensemble, ranker=..., fuser=..., generators=...))
        response = await serving.chat(ChatCompletionRequest(model="blender", messages=[...]))
    """

    def __init__(self, args: AppArgs, blender: Blender, metrics=None, access: Optional[AccessGuard] = None):
        self.args = args
        self.blender = blender
        self.metrics = metrics  # a deployments.metrics.BlendMetrics, or None
        # Who may call over HTTP (deployments.router's middleware asks it); the ingress passes one
        # that also reads the keys of its environment.
        self.access = access if access is not None else AccessGuard(args.access, args.limits)

    @property
    def ensemble(self) -> str:
        return self.args.ensemble.name

    # ------------------------------------------------------------------ limits and targets
    def check_limits(self, messages: list[ChatMessage], sampling: SamplingParams, options=None) -> None:
        """InvalidInputError (400) for a request over the application's limits."""
        lim = self.args.limits
        if len(messages) > lim.max_messages:
            raise InvalidInputError(f"{len(messages)} messages exceed the limit of {lim.max_messages}; send fewer turns")
        chars = sum(len(m.content) for m in messages)
        if chars > lim.max_prompt_chars:
            raise InvalidInputError(f"the prompt has {chars} characters, over the limit of {lim.max_prompt_chars}; shorten it")
        if sampling.max_tokens is not None and sampling.max_tokens > lim.max_tokens:
            raise InvalidInputError(f"max_tokens={sampling.max_tokens} exceeds the limit of {lim.max_tokens}")
        if options is not None and options.deadline_s is not None and options.deadline_s > lim.max_deadline_s:
            raise InvalidInputError(f"deadline_s={options.deadline_s} exceeds the limit of {lim.max_deadline_s}")

    def _check_candidates(self, candidates: list[str]) -> None:
        if len(candidates) > self.args.limits.max_candidates:
            raise InvalidInputError(f"{len(candidates)} candidates exceed the limit of {self.args.limits.max_candidates}")

    def _target(self, model: str) -> Optional[str]:
        """None for the ensemble, else the base model's name; UnknownModelError (404) for anything else."""
        if model == self.ensemble:
            return None
        if model in self.blender.generators:
            return model
        raise UnknownModelError(f"model {model!r} does not exist; use {self.ensemble!r} or one of "
                                f"{sorted(self.blender.generators)} (GET /v1/models)")

    # ------------------------------------------------------------------ OpenAI-compatible API
    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.ensemble, kind="ensemble")]
                         + [ModelCard(id=name) for name in self.blender.generators])

    def health(self) -> HealthResponse:
        return HealthResponse(ensemble=self.ensemble, models=sorted(self.blender.generators),
                              fuser=self.blender.fuser is not None)

    async def chat(self, body: ChatCompletionRequest) -> Union[ChatCompletionResponse, AsyncIterator[str]]:
        """A ChatCompletionResponse, or with ``stream`` the SSE frames of the answer."""
        messages, sampling = body.core_messages(), body.sampling()
        target = self._checked_target(body, messages, sampling)
        rid = _response_id("chatcmpl")
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = self._pass_through_events(target, messages, sampling) if target else \
                self._blend_events(messages, body.blender, sampling)
            return await self._sse(rid, body.model, events, include_usage)
        text, finish, usage, provenance = await self._answer(target, messages, body.blender, sampling, rid)
        return ChatCompletionResponse(id=rid, model=body.model, usage=UsageInfo.of(usage), blender=provenance,
                                      choices=[ChatChoice(message=AssistantMessage(content=text), finish_reason=finish)])

    async def complete(self, body: CompletionRequest) -> CompletionResponse:
        """A text completion (not streamed)."""
        messages, sampling = body.core_messages(), body.sampling()
        target = self._checked_target(body, messages, sampling)
        if body.stream:
            raise InvalidInputError("stream=true is supported on /v1/chat/completions only")
        rid = _response_id("cmpl")
        text, finish, usage, provenance = await self._answer(target, messages, body.blender, sampling, rid)
        return CompletionResponse(id=rid, model=body.model, usage=UsageInfo.of(usage), blender=provenance,
                                  choices=[CompletionChoice(text=text, finish_reason=finish)])

    def _checked_target(self, body, messages: list[ChatMessage], sampling: SamplingParams) -> Optional[str]:
        self.check_limits(messages, sampling, body.blender)
        target = self._target(body.model)
        if target is not None and body.blender is not None:
            raise InvalidInputError(f"the 'blender' options apply to ensembles only; drop them or use model {self.ensemble!r}")
        return target

    async def _answer(self, target: Optional[str], messages, options, sampling, rid: str
                      ) -> tuple[str, str, Usage, Optional[Provenance]]:
        """(text, finish reason, usage, provenance) from one base model or the ensemble."""
        if target is not None:
            gen = await self.blender.generators[target].generate(messages, sampling)
            charge_tokens(gen.usage.total_tokens)
            return gen.text, gen.finish_reason or "stop", gen.usage, None
        result = await self._blend(messages, options, sampling)
        charge_tokens(result.usage.total_tokens)
        logger.info("%s answered: fused=%s models=%s errors=%s", rid, result.fused,
                    [c.model for c in result.candidates], list(result.errors))
        return result.text, result.finish_reason, result.usage, result.provenance()

    async def _blend(self, messages, options, sampling) -> BlendResult:
        try:
            result = await self.blender.blend(messages, options, sampling)
        except Exception as exc:
            self._record_failure(exc)
            raise
        self._record(result)
        return result

    def _record(self, result: BlendResult) -> None:
        if self.metrics is not None:
            self.metrics.record(result)

    def _record_failure(self, exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.failed(type(exc).__name__)

    # ------------------------------------------------------------------ streaming
    async def _pass_through_events(self, target: str, messages, sampling) -> AsyncIterator[Union[str, _End]]:
        finish, usage = None, None
        async for chunk in self.blender.generators[target].stream(messages, sampling):
            if chunk.text:
                yield chunk.text
            finish, usage = chunk.finish_reason or finish, chunk.usage or usage
        yield _End(finish or "stop", usage)

    async def _blend_events(self, messages, options, sampling) -> AsyncIterator[Union[str, _End]]:
        stream = self.blender.stream(messages, options, sampling)
        try:
            async for piece in stream:
                yield piece
        except Exception as exc:
            self._record_failure(exc)
            raise
        result = stream.result
        self._record(result)
        yield _End(result.finish_reason, result.usage, result.provenance())

    async def _sse(self, rid: str, model: str, events: AsyncIterator[Union[str, _End]],
                   include_usage: bool) -> AsyncIterator[str]:
        """The SSE frames of a streamed chat completion, ending with ``[DONE]``.

        The answer runs up to its first event here, so that bad input, unknown models and "too
        few candidates" still get their own status code rather than a half-open stream; a failure
        after that is reported in-band as an error frame.
        """
        created = int(time.time())

        def chunk(**fields) -> str:
            return sse_frame(ChatCompletionChunk(id=rid, model=model, created=created, **fields))

        events = await _started(events)

        async def frames() -> AsyncIterator[str]:
            yield chunk(choices=[ChunkChoice(delta=DeltaMessage(role="assistant", content=""))])
            try:
                async for event in events:
                    if isinstance(event, _End):
                        charge_tokens(event.usage.total_tokens if event.usage is not None else 0)
                        yield chunk(choices=[ChunkChoice(finish_reason=event.finish_reason)], blender=event.provenance)
                        if include_usage and event.usage is not None:
                            yield chunk(choices=[], usage=UsageInfo.of(event.usage))
                    else:
                        yield chunk(choices=[ChunkChoice(delta=DeltaMessage(content=event))])
            except Exception as exc:  # the status is sent already: report in-band
                yield sse_frame(to_http_error(exc)[1])
            yield SSE_DONE

        return frames()

    # ------------------------------------------------------------------ native API (HTTP and handles)
    async def blend(self, req: BlendRequest) -> BlendResult:
        """Run the ensemble on a BlendRequest (messages, options, sampling)."""
        self.check_limits(req.messages, req.sampling, req.options)
        return await self._blend(req.messages, req.options, req.sampling)

    async def rank(self, req: RankRequest) -> RankResponse:
        """Rank caller-supplied candidates (the ranker as a service)."""
        self._check_candidates(req.candidates)
        result = await self.blender.ranker.arank(req.source, req.candidates, req.strategy or self.args.ensemble.strategy,
                                                 req.top_k)
        return RankResponse.of(result)

    async def compare(self, req: CompareRequest) -> CompareResponse:
        logit = await self.blender.ranker.acompare(req.source, req.candidate_a, req.candidate_b, req.mode)
        return CompareResponse(logit=logit, better="a" if logit > 0 else "b")

    async def fuse(self, req: FuseRequest) -> Union[FuseResponse, AsyncIterator[str]]:
        """The fused answer, or with ``stream`` its text pieces (the first one already computed,
        so that bad input fails with a status code)."""
        fuser = self._fuser(req)
        if req.stream:
            chunks = await _started(fuser.stream(req.instruction, req.input, req.candidates, None, **_fuse_overrides(req)))
            return _charged_pieces(chunks)
        out = await fuser.afuse(req.instruction, req.input, req.candidates, None, **_fuse_overrides(req))
        charge_tokens(out.usage.total_tokens)
        return FuseResponse(text=out.text, usage=out.usage)

    def _fuser(self, req: FuseRequest):
        if self.blender.fuser is None:
            raise UnknownModelError("this application has no fuser; add one under ensemble.fuser")
        self._check_candidates(req.candidates)
        return self.blender.fuser


async def _started(stream: AsyncIterator) -> AsyncIterator:
    """``stream`` run up to its first item here, then the same items from the start: a failure
    before anything was produced (bad input, an unknown model, too few candidates) is raised to
    the caller, who can still answer with a status code instead of a half-open stream."""
    iterator = stream.__aiter__()
    try:
        first = await iterator.__anext__()
    except StopAsyncIteration:
        return iterator

    async def replay() -> AsyncIterator:
        yield first
        async for item in iterator:
            yield item

    return replay()


async def _charged_pieces(chunks: AsyncIterator) -> AsyncIterator[str]:
    """The text of streamed fuser chunks; the usage on the last one is charged to the caller's key."""
    async for chunk in chunks:
        if chunk.text:
            yield chunk.text
        if chunk.usage is not None:
            charge_tokens(chunk.usage.total_tokens)


def _fuse_overrides(req: FuseRequest) -> dict[str, Any]:
    return {k: v for k, v in {"max_new_tokens": req.max_new_tokens, "num_beams": req.num_beams}.items() if v is not None}


def _response_id(prefix: str) -> str:
    """``<prefix>-<Serve request id>`` inside a Serve request (so logs and responses match), else a fresh id."""
    try:
        from ray import serve

        rid = serve.context._get_serve_request_context().request_id
    except Exception:  # outside a Serve request (unit use)
        rid = ""
    return f"{prefix}-{rid}" if rid else new_id(prefix)
