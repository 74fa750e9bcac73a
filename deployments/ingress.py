"""The composed ingress: OpenAI-compatible and native HTTP routes, and the handle API.

Each request runs blender_serve's own ``Blender`` pipeline over deployment handles: fan-out to
the selected base-LLM deployments at once (each under a deadline), rank on the ranker deployment
(batched across requests), fuse on the fuser deployment (or skip). Everything is awaited, so the
event loop never blocks. Errors become OpenAI-style bodies through ``deployments.errors``.
"""



import json
import logging
import time
from typing import Any, AsyncIterator, Optional, Union

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve

from blender_serve.errors import BlenderError, InvalidInputError, UnknownModelError
from blender_serve.pipeline import Blender
from blender_serve.types import BlendResult, ChatMessage, SamplingParams
from deployments.config import AppArgs
from deployments.errors import error_body, to_http_error
from deployments.metrics import BlendMetrics
from deployments.protocol import (
    BlendRequest, ChatCompletionRequest, CompareRequest, CompareResponse, CompletionRequest, FuseRequest,
    FuseResponse, ModelCard, ModelList, RankRequest, RankResponse, chat_chunk, chat_completion, new_id,
    text_completion,
)
from deployments.handle_adapters import HandleFuser, HandleGenerator, HandleRanker

__all__ = ["Ingress", "app"]

logger = logging.getLogger("ray.serve")
app = FastAPI(title="blender-serve", description="LLM-Blender ensembles, OpenAI-compatible.")


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = f"{loc}: {first.get('msg')}" if loc else str(first.get("msg"))
    if first.get("type") == "json_invalid":
        message = "the request body is not valid JSON"
    return JSONResponse(error_body(400, message, param=loc or None), status_code=400)


@app.exception_handler(Exception)
async def _any_error(request: Request, exc: Exception) -> JSONResponse:
    status, body, headers = to_http_error(exc)
    return JSONResponse(body, status_code=status, headers=headers)


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


@serve.ingress(app)
class Ingress:
    """Routes requests to the ensemble or to one base model. Build it with ``deployments.builder.build_app``."""

    def __init__(self, args: dict[str, Any], llms: dict[str, Any], ranker, fuser=None):
        self.args = AppArgs.model_validate(args)
        self.ensemble = self.args.ensemble
        self.llms = llms
        self.ranker = HandleRanker(ranker)
        self.fuser = HandleFuser(fuser) if fuser is not None else None
        self.blender = Blender(self.ensemble, ranker=self.ranker, fuser=self.fuser,
                               generators={name: HandleGenerator(name, h) for name, h in llms.items()})
        self.metrics = BlendMetrics()

    async def _blend(self, messages, options, sampling) -> BlendResult:
        try:
            result = await self.blender.blend(messages, options, sampling)
        except Exception as exc:
            self.metrics.failed(type(exc).__name__)
            raise
        self.metrics.record(result)
        return result

    @classmethod
    def default_options(cls) -> dict[str, Any]:
        return {"ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 256, "health_check_period_s": 10.0}

    # ------------------------------------------------------------------ checks
    def _check_limits(self, messages: list[ChatMessage], sampling: SamplingParams, options) -> None:
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

    def _target(self, model: str) -> Optional[str]:
        """None for the ensemble, else the base model's name; 404 for anything else."""
        if model == self.ensemble.name:
            return None
        if model in self.llms:
            return model
        raise UnknownModelError(f"model {model!r} does not exist; use {self.ensemble.name!r} or one of {sorted(self.llms)} (GET /v1/models)")

    def _request_id(self, prefix: str) -> str:
        try:
            rid = serve.context._get_serve_request_context().request_id
        except Exception:  # outside a request (unit use)
            rid = ""
        return f"{prefix}-{rid}" if rid else new_id(prefix)

    # ------------------------------------------------------------------ OpenAI routes
    @app.get("/v1/models")
    async def models(self) -> dict:
        cards = [ModelCard(id=self.ensemble.name, kind="ensemble")] + [ModelCard(id=n) for n in self.llms]
        return ModelList(data=cards).model_dump()

    @app.post("/v1/chat/completions")
    async def chat_completions(self, body: ChatCompletionRequest):
        messages, sampling = body.core_messages(), body.sampling()
        return await self._complete(body, messages, sampling, chat=True)

    @app.post("/v1/completions")
    async def completions(self, body: CompletionRequest):
        return await self._complete(body, body.core_messages(), body.sampling(), chat=False)

    async def _complete(self, body, messages, sampling, chat: bool):
        self._check_limits(messages, sampling, body.blender)
        target = self._target(body.model)
        if target is not None and body.blender is not None:
            raise InvalidInputError("the 'blender' options apply to ensembles only; drop them or use model "
                                    f"{self.ensemble.name!r}")
        rid = self._request_id("chatcmpl" if chat else "cmpl")
        if body.stream:
            if not chat:
                raise InvalidInputError("stream=true is supported on /v1/chat/completions only")
            pieces = self._single_stream(target, messages, sampling) if target else self._blend_stream(messages, body, sampling)
            return await self._sse_response(rid, body.model, pieces, include_usage=bool(body.stream_options and body.stream_options.include_usage))
        if target is not None:
            gen = await self.llms[target].generate.remote(messages, sampling)
            finish = gen.finish_reason or "stop"
            return (chat_completion(body.model, gen.text, gen.usage, finish, request_id=rid) if chat
                    else text_completion(body.model, gen.text, gen.usage, finish))
        result = await self._blend(messages, body.blender, sampling)
        logger.info("%s answered: fused=%s models=%s errors=%s", rid, result.fused, [c.model for c in result.candidates], list(result.errors))
        return (chat_completion(body.model, result.text, result.usage, "stop", result, request_id=rid) if chat
                else text_completion(body.model, result.text, result.usage, "stop", result))

    # ------------------------------------------------------------------ streaming
    async def _single_stream(self, target: str, messages, sampling) -> AsyncIterator[tuple[str, Any]]:
        async for chunk in self.llms[target].options(stream=True).stream.remote(messages, sampling):
            if chunk.text:
                yield "text", chunk.text
            if chunk.usage is not None:
                yield "usage", chunk.usage

    async def _blend_stream(self, messages, body, sampling) -> AsyncIterator[tuple[str, Any]]:
        stream = self.blender.stream(messages, body.blender, sampling)
        async for piece in stream:
            yield "text", piece
        self.metrics.record(stream.result)
        yield "result", stream.result

    async def _sse_response(self, rid: str, model: str, events: AsyncIterator[tuple[str, Any]], include_usage: bool):
        created = int(time.time())
        iterator = events.__aiter__()
        # Run until the first piece here, so that bad input, unknown models and "no candidates"
        # still get a proper status code instead of a half-open stream.
        first = await iterator.__anext__()

        async def body() -> AsyncIterator[bytes]:
            yield _sse(chat_chunk(rid, model, created, role="assistant", content=""))
            usage, result = None, None
            event = first
            try:
                while True:
                    kind, value = event
                    if kind == "text":
                        yield _sse(chat_chunk(rid, model, created, content=value))
                    elif kind == "usage":
                        usage = value
                    elif kind == "result":
                        result, usage = value, value.usage
                    try:
                        event = await iterator.__anext__()
                    except StopAsyncIteration:
                        break
                yield _sse(chat_chunk(rid, model, created, finish_reason="stop", result=result))
                if include_usage and usage is not None:
                    yield _sse(chat_chunk(rid, model, created, usage=usage, empty_choices=True))
            except Exception as exc:  # mid-stream: the status is sent already; report in-band
                status, err, _ = to_http_error(exc)
                yield _sse(err)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(body(), media_type="text/event-stream")

    # ------------------------------------------------------------------ native routes
    @app.post("/v1/rank")
    async def rank_route(self, body: RankRequest) -> dict:
        return (await self.rank(body)).model_dump()

    @app.post("/v1/compare")
    async def compare_route(self, body: CompareRequest) -> dict:
        return (await self.compare(body)).model_dump()

    @app.post("/v1/fuse")
    async def fuse_route(self, body: FuseRequest):
        if body.stream:
            self._check_fuse(body)
            pieces = self.fuser.stream(body.instruction, body.input, body.candidates, **self._fuse_overrides(body))
            iterator = pieces.__aiter__()
            first = await iterator.__anext__()

            async def text() -> AsyncIterator[bytes]:
                yield first.text.encode()
                async for chunk in iterator:
                    yield chunk.text.encode()

            return StreamingResponse(text(), media_type="text/plain; charset=utf-8")
        return (await self.fuse(body)).model_dump()

    @app.get("/health")
    async def health(self) -> dict:
        return {"status": "ok", "ensemble": self.ensemble.name, "models": sorted(self.llms),
                "fuser": self.fuser is not None}

    # ------------------------------------------------------------------ handle API
    async def blend(self, request: Union[BlendRequest, dict]) -> BlendResult:
        """Run the ensemble on a BlendRequest (messages, options, sampling); returns a BlendResult."""
        req = BlendRequest.model_validate(request)
        self._check_limits(req.messages, req.sampling, req.options)
        return await self._blend(req.messages, req.options, req.sampling)

    async def rank(self, request: Union[RankRequest, dict]) -> RankResponse:
        """Rank caller-supplied candidates (the ranker as a service)."""
        req = RankRequest.model_validate(request)
        if len(req.candidates) > self.args.limits.max_candidates:
            raise InvalidInputError(f"{len(req.candidates)} candidates exceed the limit of {self.args.limits.max_candidates}")
        result = await self.ranker.arank(req.source, req.candidates, req.strategy or self.ensemble.strategy, req.top_k)
        return RankResponse.of(result)

    async def compare(self, request: Union[CompareRequest, dict]) -> CompareResponse:
        req = CompareRequest.model_validate(request)
        logit = await self.ranker.acompare(req.source, req.candidate_a, req.candidate_b, req.mode)
        return CompareResponse(logit=logit, better="a" if logit > 0 else "b")

    async def fuse(self, request: Union[FuseRequest, dict]) -> FuseResponse:
        req = FuseRequest.model_validate(request)
        self._check_fuse(req)
        out = await self.fuser.afuse(req.instruction, req.input, req.candidates, **self._fuse_overrides(req))
        return FuseResponse(text=out.text, usage=out.usage)

    def _check_fuse(self, req: FuseRequest) -> None:
        if self.fuser is None:
            raise UnknownModelError("this application has no fuser; add one under ensemble.fuser")
        if len(req.candidates) > self.args.limits.max_candidates:
            raise InvalidInputError(f"{len(req.candidates)} candidates exceed the limit of {self.args.limits.max_candidates}")

    @staticmethod
    def _fuse_overrides(req: FuseRequest) -> dict:
        return {k: v for k, v in {"max_new_tokens": req.max_new_tokens, "num_beams": req.num_beams}.items() if v is not None}
