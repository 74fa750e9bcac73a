"""The HTTP routes: the module-level FastAPI app, its routes and its exception handlers.

Routes only translate HTTP: each takes a typed request, calls the replica's ``BlenderServing``
(``deployments.serving``) and returns its typed response, or a ``StreamingResponse`` over the
frames it produced. Every error leaves as an OpenAI-style body with the status
``deployments.errors`` assigns. The ingress deployment serves this app (``@serve.ingress(app)``);
the serving object comes from the replica it runs in, so the routes can also be driven without Ray
by overriding ``current_serving``. Before any route runs, ``deployments.access.AccessMiddleware``
applies the serving object's access policy (API keys, rate limits, body size and depth).
The playground page (``deployments/ui``, static files over these routes) is mounted at ``/ui``; reading
it needs no API key (``deployments.access.is_page``), its API calls do.
"""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Union

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from blender_serve.errors import validation_message
from deployments.access import AccessGuard, AccessMiddleware
from deployments.errors import error_body, to_http_error
from deployments.protocol import (
    ChatCompletionRequest, ChatCompletionResponse, CompareRequest, CompareResponse, CompletionRequest,
    CompletionResponse, FuseRequest, FuseResponse, HealthResponse, ModelList, RankRequest, RankResponse,
)
from deployments.responses_api import ResponseObject, ResponsesRequest
from deployments.serving import BlenderServing

__all__ = ["app", "current_serving"]

app = FastAPI(title="blender-serve", description="LLM-Blender ensembles, OpenAI-compatible.")


def current_serving() -> BlenderServing:
    """The ``BlenderServing`` of the ingress replica handling this request."""
    from ray import serve

    return serve.get_replica_context().servable_object.serving


Serving = Depends(current_serving)


def _current_guard() -> AccessGuard:
    # The middleware runs outside FastAPI's dependency injection: honour an override of
    # current_serving by hand, so that tests without Ray drive the same access checks.
    return app.dependency_overrides.get(current_serving, current_serving)().access


app.add_middleware(AccessMiddleware, guard=_current_guard)


def _respond(out: Union[BaseModel, dict, AsyncIterator[str]], media_type: str):
    if isinstance(out, BaseModel):
        return out
    if isinstance(out, dict):  # a base model's server's own answer, relayed as it is (not our response model)
        return JSONResponse(out)
    return StreamingResponse(_encoded(out), media_type=media_type)


async def _encoded(pieces: AsyncIterator[str]) -> AsyncIterator[bytes]:
    async for piece in pieces:
        yield piece.encode()


# -- errors ------------------------------------------------------------------------------------

@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [dict(e, loc=[p for p in e.get("loc", ()) if p != "body"]) for e in exc.errors()]
    if any(e.get("type") == "json_invalid" for e in errors):
        message, param = "the request body is not valid JSON", None
    elif "json" not in request.headers.get("content-type", ""):
        message, param = "send the request body as JSON, with 'Content-Type: application/json'", None
    else:
        message = validation_message(errors)
        param = ".".join(str(p) for p in errors[0]["loc"]) or None if errors else None
    return JSONResponse(error_body(400, message, param=param).model_dump(), status_code=400)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    # FastAPI's own refusals (unknown route, wrong method, a body it cannot decode), in our format.
    message = exc.detail if isinstance(exc.detail, str) else "the request was refused"
    if exc.status_code == 400 and "parsing the body" in message:
        message = "the request body is not valid JSON in UTF-8"
    return JSONResponse(error_body(exc.status_code, message).model_dump(), status_code=exc.status_code,
                        headers=exc.headers)


@app.exception_handler(Exception)
async def _any_error(request: Request, exc: Exception) -> JSONResponse:
    status, body, headers = to_http_error(exc)
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


# -- OpenAI-compatible routes ------------------------------------------------------------------

@app.get("/v1/models", response_model=ModelList)
async def list_models(serving: BlenderServing = Serving) -> ModelList:
    return serving.models()


@app.post("/v1/chat/completions", response_model=ChatCompletionResponse)
async def chat_completions(body: ChatCompletionRequest, serving: BlenderServing = Serving):
    return _respond(await serving.chat(body), "text/event-stream")


@app.post("/v1/completions", response_model=CompletionResponse)
async def completions(body: CompletionRequest, serving: BlenderServing = Serving):
    return _respond(await serving.complete(body), "text/event-stream")


@app.post("/v1/responses", response_model=ResponseObject)
async def responses(body: ResponsesRequest, serving: BlenderServing = Serving):
    return _respond(await serving.respond(body), "text/event-stream")


# -- native routes -----------------------------------------------------------------------------

@app.post("/v1/rank", response_model=RankResponse)
async def rank(body: RankRequest, serving: BlenderServing = Serving) -> RankResponse:
    return await serving.rank(body)


@app.post("/v1/compare", response_model=CompareResponse)
async def compare(body: CompareRequest, serving: BlenderServing = Serving) -> CompareResponse:
    return await serving.compare(body)


@app.post("/v1/fuse", response_model=FuseResponse)
async def fuse(body: FuseRequest, serving: BlenderServing = Serving):
    return _respond(await serving.fuse(body), "text/plain; charset=utf-8")


@app.get("/health", response_model=HealthResponse)
async def health(serving: BlenderServing = Serving) -> HealthResponse:
    return serving.health()


# -- the playground page (static files over the public API above; /ui redirects to /ui/) ---------

app.mount("/ui", StaticFiles(directory=Path(__file__).with_name("ui"), html=True), name="ui")
