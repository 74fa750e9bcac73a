"""The serving logic of the ensemble's API, with no routes and no FastAPI.

``BlenderServing`` holds one ``Blender`` (its components are deployment-handle adapters) and turns
typed requests into typed responses: it enforces the request limits, picks the target (the
ensemble, or one base model passed through the same adapter the ensemble uses), refuses the fields
its target cannot honour (a 400 naming the field) or, for a base model whose backend relays whole
requests (``Generator.raw_chat``: the openai one), sends the request to that model's server as it
is (tools, tool turns, logprobs) and relays its answer, plain or streamed, under our id; assembles
chat and text completions (``n`` > 1: the next-ranked distinct candidates as further choices) and
Responses API answers; streamed, it turns the answer into events (text pieces, with
``stream_options.include_provenance`` the pipeline's ranked Progress before them, then the end)
that ``deployments.streams`` frames for each API. Both the HTTP routes (``deployments.router``)
and the handle API (``deployments.ingress``) call it.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, NoReturn, Optional, Sequence, Union

from blender_serve import structured
from blender_serve.errors import InvalidInputError, UnknownModelError, UnsupportedParameterError
from blender_serve.generators import GENERATORS
from blender_serve.pipeline import Blender
from blender_serve.types import BlendResult, ChatMessage, Progress, Provenance, SamplingParams, TokenLogprob, Usage
from deployments.access import AccessGuard, charge_tokens
from deployments.config import AppArgs
from deployments.protocol import (
    LOGPROB_FIELDS, AssistantMessage, BlendRequest, ChatChoice, ChatCompletionRequest, ChatCompletionResponse,
    ChoiceLogprobs, CompareRequest, CompareResponse, CompletionChoice, CompletionRequest, CompletionResponse,
    FuseRequest, FuseResponse, HealthResponse, ModelCard, ModelList, NOT_IN_COMPLETIONS, NOT_ON_ENSEMBLE, RankRequest,
    RankResponse, UsageInfo, new_id,
)
from deployments.responses_api import NOT_IN_RESPONSES, ResponseObject, ResponsesRequest
from deployments.streams import (
    Event, Piece, StreamEnd, charged_pieces, chat_sse, completion_sse, ranked_choices, relayed_sse, response_object,
    response_sse, started, total_tokens,
)

__all__ = ["BlenderServing"]

logger = logging.getLogger("ray.serve")


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
    def check_limits(self, messages: Sequence, sampling: SamplingParams, options=None, chars: Optional[int] = None) -> None:
        """InvalidInputError (400) for a request over the application's limits (``chars``: the
        prompt's size, when ``messages`` are not ChatMessages)."""
        lim = self.args.limits
        if len(messages) > lim.max_messages:
            raise InvalidInputError(f"{len(messages)} messages exceed the limit of {lim.max_messages}; send fewer turns")
        chars = sum(len(m.content) for m in messages) if chars is None else chars
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

    async def chat(self, body: ChatCompletionRequest) -> Union[ChatCompletionResponse, dict[str, Any], AsyncIterator[str]]:
        """A ChatCompletionResponse, or with ``stream`` the SSE frames of the answer. With ``n`` > 1
        (the ensemble) choice 0 is the answer and the others the next-ranked distinct
        candidates: fewer than ``n`` when fewer distinct answers came back. Tools, tool turns and
        logprobs on a base model that relays them: its server's answer as a dict (or its SSE frames)."""
        if names := body.unsupported():
            target = self._target(body.model)
            if target is not None and self._relays(target):
                return await self._chat_raw(body, target)
            if names := self._refused(names, target, NOT_ON_ENSEMBLE):
                self._refuse(names[0], target, NOT_ON_ENSEMBLE)
        messages, sampling = body.core_messages(), body.sampling()
        target = self._checked_target(body, messages, sampling)
        self._check_fields(body, target, sampling, NOT_ON_ENSEMBLE)
        rid = _response_id("chatcmpl")
        if body.stream:
            return await chat_sse(rid, body.model, self._events(target, messages, body, sampling), _usage_asked(body), body.n)
        text, finish, usage, provenance, logprobs = await self._answer(target, messages, body.blender, sampling, rid)
        return ChatCompletionResponse(id=rid, model=body.model, usage=UsageInfo.of(usage), blender=provenance, choices=[
            ChatChoice(index=i, message=AssistantMessage(content=t), finish_reason=f,
                       logprobs=ChoiceLogprobs(content=logprobs) if logprobs is not None else None)
            for i, (t, f) in enumerate(ranked_choices(text, finish, provenance, body.n))])

    async def complete(self, body: CompletionRequest) -> Union[CompletionResponse, AsyncIterator[str]]:
        """A text completion, or with ``stream`` its SSE frames (``n`` > 1 as on chat)."""
        messages, sampling = body.core_messages(), body.sampling()
        target = self._checked_target(body, messages, sampling)
        self._check_fields(body, target, sampling, NOT_IN_COMPLETIONS)
        rid = _response_id("cmpl")
        if body.stream:
            return await completion_sse(rid, body.model, self._events(target, messages, body, sampling),
                                        _usage_asked(body), body.n)
        text, finish, usage, provenance, _ = await self._answer(target, messages, body.blender, sampling, rid)
        return CompletionResponse(id=rid, model=body.model, usage=UsageInfo.of(usage), blender=provenance, choices=[
            CompletionChoice(index=i, text=t, finish_reason=f)
            for i, (t, f) in enumerate(ranked_choices(text, finish, provenance, body.n))])

    async def respond(self, body: ResponsesRequest) -> Union[ResponseObject, AsyncIterator[str]]:
        """The Responses API (text): a ResponseObject, or with ``stream`` its SSE events."""
        messages, sampling = body.core_messages(), body.sampling()
        target = self._checked_target(body, messages, sampling)
        self._check_fields(body, target, sampling, NOT_IN_RESPONSES)
        fmt = sampling.response_format
        base = {"id": _response_id("resp"), "model": body.model, "instructions": body.instructions,
                "max_output_tokens": body.max_output_tokens, "temperature": body.temperature, "top_p": body.top_p,
                "metadata": body.metadata or {}, "text": {"format": {"type": fmt.type if fmt is not None else "text"}}}
        if body.stream:
            return await response_sse(base, self._events(target, messages, body, sampling))
        text, finish, usage, provenance, _ = await self._answer(target, messages, body.blender, sampling, base["id"])
        return response_object(base, text, finish, usage, provenance)

    async def _chat_raw(self, body: ChatCompletionRequest, target: str) -> Union[dict[str, Any], AsyncIterator[str]]:
        """Base model ``target``'s own server answers the whole request (tools, tool turns,
        logprobs): its answer as it gave it, with this response's id and the model name asked for
        (usage kept); streamed, its chunks as SSE frames (``streams.relayed_sse``)."""
        self.check_limits(body.messages, body.sampling(), chars=body.chars())
        if body.blender is not None:
            raise InvalidInputError(f"the 'blender' options apply to ensembles only; drop them or use model {self.ensemble!r}")
        if body.n > 1:
            raise UnsupportedParameterError(f"Unsupported value: n={body.n}: base model {target!r} answers one choice; "
                                            f"send n=1", param="n")
        rid, generator = _response_id("chatcmpl"), self.blender.generators[target]
        if body.stream:
            chunks = await started(await generator.chat_raw(body.passthrough_body(), stream=True))
            return relayed_sse(rid, body.model, chunks, bool(body.stream_options and body.stream_options.include_usage))
        answer = await generator.chat_raw(body.passthrough_body())
        charge_tokens(total_tokens(answer.get("usage")))
        return {**answer, "id": rid, "model": body.model}

    def _checked_target(self, body, messages: list[ChatMessage], sampling: SamplingParams) -> Optional[str]:
        self.check_limits(messages, sampling, body.blender)
        target = self._target(body.model)
        if target is not None and body.blender is not None:
            raise InvalidInputError(f"the 'blender' options apply to ensembles only; drop them or use model {self.ensemble!r}")
        return target

    def _check_fields(self, body, target: Optional[str], sampling: SamplingParams, refused: dict[str, str]) -> None:
        """UnsupportedParameterError (400, naming the field) for what ``target`` cannot honour: a
        field of ``refused`` (field -> what to do instead), ``n`` > 1 where it cannot be served; and
        InvalidInputError for a response_format whose schema is not a JSON Schema."""
        names = self._refused(body.unsupported(), target, refused) if hasattr(body, "unsupported") else []
        if names:
            self._refuse(names[0], target, refused)
        n = getattr(body, "n", 1)
        if n > 1:
            selected = len(body.blender.models) if body.blender is not None and body.blender.models else len(self.blender.generators)
            if target is not None:
                why = f"base model {target!r} answers one choice; send n=1, or model {self.ensemble!r} for its ranked candidates"
            elif n > selected:
                why = f"the ensemble has {selected} selected models, so at most {selected} choices; lower n"
            else:
                why = None
            if why:
                raise UnsupportedParameterError(f"Unsupported value: n={n}: {why}", param="n")
        structured.check_format(structured.requested(sampling))

    def _refuse(self, name: str, target: Optional[str], refused: dict[str, str]) -> NoReturn:
        """UnsupportedParameterError (400) naming the field ``name`` and what to do instead."""
        if target is None:
            raise UnsupportedParameterError(f"Unsupported parameter: '{name}' is not supported with the ensemble "
                                            f"{self.ensemble!r}; {refused[name]}", param=name)
        backend = self._backends[target]
        if refused is not NOT_ON_ENSEMBLE:  # the Responses and completions APIs relay nothing
            raise UnsupportedParameterError(f"Unsupported parameter: '{name}' is not supported with base model {target!r} "
                                            f"(backend {backend!r}) on this route; {refused[name]}", param=name)
        what = "tool turns in 'messages'" if name == "messages" else f"'{name}'"
        relaying = " or ".join(sorted(b for b, cls in GENERATORS.items() if cls.raw_chat))
        how = f"base models on the {relaying} backend pass it through to their server"
        if name in LOGPROB_FIELDS:
            computing = ", ".join(sorted(b for b, cls in GENERATORS.items() if cls.token_logprobs))
            how = f"base models on the {computing} backends compute it, and {how}"
        raise UnsupportedParameterError(f"Unsupported parameter: model {target!r} runs on the {backend} backend, which "
                                        f"does not take {what}; {how} (POST /v1/chat/completions)", param=name)

    def _refused(self, names: list[str], target: Optional[str], refused: dict[str, str]) -> list[str]:
        """``names`` less chat's log-probability fields when base model ``target`` computes them
        (the completions and Responses routes return none)."""
        backend = GENERATORS.get(self._backends[target]) if target is not None else None
        if refused is NOT_ON_ENSEMBLE and backend is not None and backend.token_logprobs:
            return [name for name in names if name not in LOGPROB_FIELDS]
        return names

    def _relays(self, target: str) -> bool:
        """Whether base model ``target``'s backend relays whole chat requests to its server (``Generator.raw_chat``)."""
        backend = GENERATORS.get(self._backends[target])
        return backend is not None and backend.raw_chat

    @property
    def _backends(self) -> dict[str, str]:
        return {g.name: g.backend for g in self.blender.config.generators}

    async def _answer(self, target: Optional[str], messages, options, sampling, rid: str
                      ) -> tuple[str, str, Usage, Optional[Provenance], Optional[list[TokenLogprob]]]:
        """(text, finish reason, usage, provenance, token log-probabilities when asked) from one
        base model or the ensemble."""
        if target is not None:
            messages = structured.instructed(messages, structured.requested(sampling))
            gen = await self.blender.generators[target].generate(messages, sampling)
            charge_tokens(gen.usage.total_tokens)
            return gen.text, gen.finish_reason or "stop", gen.usage, None, gen.logprobs
        result = await self._blend(messages, options, sampling)
        charge_tokens(result.usage.total_tokens)
        logger.info("%s answered: fused=%s models=%s errors=%s", rid, result.fused,
                    [c.model for c in result.candidates], list(result.errors))
        return result.text, result.finish_reason, result.usage, result.provenance(), None

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
    def _events(self, target: Optional[str], messages, body, sampling) -> AsyncIterator[Event]:
        """The streamed answer of ``target`` (a base model) or, for None, of the ensemble."""
        if target is not None:
            return self._pass_through_events(target, messages, sampling)
        return self._blend_events(messages, body.blender, sampling, _progress_asked(body))

    async def _pass_through_events(self, target: str, messages, sampling) -> AsyncIterator[Event]:
        messages = structured.instructed(messages, structured.requested(sampling))
        finish, usage = None, None
        async for chunk in self.blender.generators[target].stream(messages, sampling):
            if chunk.logprobs:
                yield Piece(chunk.text, chunk.logprobs)
            elif chunk.text:
                yield chunk.text
            finish, usage = chunk.finish_reason or finish, chunk.usage or usage
        yield StreamEnd(finish or "stop", usage)

    async def _blend_events(self, messages, options, sampling, progress: bool = False
                            ) -> AsyncIterator[Event]:
        """The answer's pieces, then its end; with ``progress`` the ranked candidates before them."""
        stream = self.blender.stream(messages, options, sampling)
        try:
            async for event in stream.events():
                if progress or not isinstance(event, Progress):
                    yield event
        except Exception as exc:
            self._record_failure(exc)
            raise
        result = stream.result
        self._record(result)
        yield StreamEnd(result.finish_reason, result.usage, result.provenance())

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
            chunks = await started(fuser.stream(req.instruction, req.input, req.candidates, None, **_fuse_overrides(req)))
            return charged_pieces(chunks)
        out = await fuser.afuse(req.instruction, req.input, req.candidates, None, **_fuse_overrides(req))
        charge_tokens(out.usage.total_tokens)
        return FuseResponse(text=out.text, usage=out.usage)

    def _fuser(self, req: FuseRequest):
        if self.blender.fuser is None:
            raise UnknownModelError("this application has no fuser; add one under ensemble.fuser")
        self._check_candidates(req.candidates)
        return self.blender.fuser


def _usage_asked(body) -> bool:
    """Whether a streamed request asked for a last chunk with the usage (``stream_options.include_usage``)."""
    return bool(body.stream_options is not None and body.stream_options.include_usage)


def _progress_asked(body) -> bool:
    """Whether a streamed request asked for the Progress event (``stream_options.include_provenance``)."""
    return bool(body.stream_options is not None and body.stream_options.include_provenance)


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
