"""Any OpenAI-compatible chat server (OpenAI, vLLM, llama.cpp, TGI...) over HTTP, with httpx.

Plain httpx rather than the ``openai`` package: one small dependency, the full response body on
errors, and request bodies that servers' extensions (``extra_body``) pass through untouched.
Streaming uses server-sent events with ``stream_options.include_usage`` so usage is exact.
``chat_raw`` relays a whole OpenAI chat completion body (tools, tool messages, logprobs) and the
server's answer as they are: the single-model route uses it for what the ensemble cannot serve.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blender_serve.errors import BlenderError, GenerationError, UpstreamError
from blender_serve.generators.base import Generator, _Collected
from blender_serve.types import ChatMessage, GenerationChunk, SamplingParams, Usage

__all__ = ["OpenAIGenerator"]

_RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}


class OpenAIOptions(BaseModel):
    """Where the server is and how to talk to it."""

    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(description="API root including the version, e.g. 'https://api.openai.com/v1' or 'http://127.0.0.1:8000/v1'.")
    api_key: Optional[str] = Field(None, description="Bearer token. Prefer api_key_env so keys stay out of config files.")
    api_key_env: Optional[str] = Field(None, description="Name of the environment variable holding the bearer token.")
    timeout_s: float = Field(120.0, gt=0.0, description="Read timeout of one request (between streamed events when streaming).")
    connect_timeout_s: float = Field(10.0, gt=0.0, description="Timeout of opening a connection.")
    max_retries: int = Field(2, ge=0, description="Retries on connection errors and 408/409/429/5xx, before any text arrived.")
    retry_backoff_s: float = Field(0.5, ge=0.0, description="First retry delay; doubles each retry (a Retry-After header wins).")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="Extra JSON fields merged into every request body.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers sent with every request.")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="max_tokens when the request sets none (None: the server's default).")

    @model_validator(mode="after")
    def _one_key_source(self) -> "OpenAIOptions":
        if self.api_key and self.api_key_env:
            raise ValueError("set api_key or api_key_env, not both")
        return self


class OpenAIGenerator(Generator):
    """A model behind an OpenAI-compatible ``/chat/completions`` endpoint. ``config.model`` is the
    remote model id (default: ``config.name``). Example::

        GeneratorConfig(name="gpt", backend="openai", model="gpt-4o-mini",
                        options={"base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY"})
    """

    Options = OpenAIOptions
    raw_chat = True

    def __init__(self, config):
        super().__init__(config)
        self._client = None

    @property
    def remote_model(self) -> str:
        """The model id sent to the server."""
        return self.config.model or self.config.name

    async def _start(self) -> None:
        import httpx

        o = self.options
        headers = dict(o.headers)
        key = o.api_key
        if o.api_key_env:
            key = os.environ.get(o.api_key_env)
            if not key:
                raise GenerationError(
                    f"generator {self.name!r}: environment variable {o.api_key_env} is not set; export the API key there"
                )
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.AsyncClient(
            base_url=o.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(o.timeout_s, connect=o.connect_timeout_s),
        )

    async def _close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def _check_health(self) -> None:
        """The client is open. The remote server's own health is not probed: restarting this
        replica would not heal it, and its failures already drop this model per request."""
        if self._client is None or self._client.is_closed:
            raise RuntimeError("the HTTP client is closed")

    # ---------------------------------------------------------------------------- generation
    async def _generate(self, chat: list[ChatMessage], params: SamplingParams) -> _Collected:
        response = await self._send(self._body(chat, params, stream=False), stream=False)
        data = response.json()
        choice = _first_choice(data)
        text = (choice.get("message") or {}).get("content") or ""
        return _Collected(text, _usage(data.get("usage")), choice.get("finish_reason"))

    async def _stream(self, chat: list[ChatMessage], params: SamplingParams) -> AsyncIterator[GenerationChunk]:
        response = await self._send(self._body(chat, params, stream=True), stream=True)
        finish, usage = None, Usage()
        try:
            async for data in _sse_events(response):
                if data.get("usage"):
                    usage = _usage(data["usage"])
                for choice in data.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        yield GenerationChunk(text=piece)
                    finish = choice.get("finish_reason") or finish
        finally:
            await response.aclose()  # closing early tells the server the client is gone
        yield GenerationChunk(finish_reason=finish, usage=usage)

    # ------------------------------------------------------------------------ raw pass-through
    async def chat_raw(self, body: dict[str, Any], stream: bool = False) -> dict[str, Any] | AsyncIterator[dict[str, Any]]:
        """Send an OpenAI chat completion body to the server and return its answer, both as they are.

        Args:
            body: a ``chat/completions`` request body: messages as the client sent them (``tool``
                turns, assistant ``tool_calls``), ``tools``, ``logprobs``... Its ``model``, ``stream``
                and ``stream_options`` are set here; sampling fields it lacks come from
                ``config.sampling``, and ``config.system_prompt`` and ``options.extra_body`` apply
                as on ``generate``.
            stream: stream the answer (``stream_options.include_usage`` is asked for).
        Returns:
            the server's JSON answer; with ``stream``, once the server has accepted the request,
            an async iterator of its chunks (dicts, until ``[DONE]``).
        Raises:
            UpstreamError when the server answers an HTTP error, GenerationError when it cannot be
            reached or fails mid-stream. Example::

                answer = await gen.chat_raw({"messages": [{"role": "user", "content": "Weather in Paris?"}],
                                             "tools": [WEATHER], "tool_choice": "required"})
                calls = answer["choices"][0]["message"]["tool_calls"]
        """
        await self.start()
        request = self._raw_body(body, stream)
        if stream:
            chunks = self._raw_chunks(request)
            await chunks.__anext__()  # the server accepted the request, or its error is raised here
            return chunks
        with self.activity.track():
            try:
                return (await self._send(request, stream=False)).json()
            except BlenderError:
                raise
            except Exception as e:
                raise self._failure(e) from e

    async def _raw_chunks(self, request: dict[str, Any]) -> AsyncIterator[Optional[dict[str, Any]]]:
        """None once the server accepted the request, then its chunks."""
        with self.activity.track():
            try:
                response = await self._send(request, stream=True)
                try:
                    yield None
                    async for data in _sse_events(response):
                        self.activity.chunks += 1
                        yield data
                finally:
                    await response.aclose()  # closing early tells the server the client is gone
            except BlenderError:
                raise
            except Exception as e:
                raise self._failure(e) from e

    def _raw_body(self, body: dict[str, Any], stream: bool) -> dict[str, Any]:
        fields = {k: v for k, v in body.items() if k not in ("model", "stream", "stream_options")}
        messages = list(fields.pop("messages", None) or [])
        if self.config.system_prompt and not any(m.get("role") in ("system", "developer") for m in messages):
            messages.insert(0, {"role": "system", "content": self.config.system_prompt})
        s = self.config.sampling
        defaults = {"temperature": s.temperature, "top_p": s.top_p, "seed": s.seed, "top_k": s.top_k or None,
                    "stop": list(s.stop) or None}
        if "max_tokens" not in fields and "max_completion_tokens" not in fields:
            defaults["max_tokens"] = s.max_tokens or self.options.max_new_tokens
        out = {"model": self.remote_model, **{k: v for k, v in defaults.items() if v is not None}, **fields,
               "messages": messages}
        if stream:
            out.update(stream=True, stream_options={"include_usage": True})
        out.update(self.options.extra_body)
        return out

    # ------------------------------------------------------------------------------- helpers
    def _body(self, chat: list[ChatMessage], params: SamplingParams, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.remote_model, "messages": [m.model_dump() for m in chat]}
        max_tokens = params.max_tokens or self.options.max_new_tokens
        fields = {"max_tokens": max_tokens, "temperature": params.temperature, "top_p": params.top_p, "seed": params.seed}
        body.update({k: v for k, v in fields.items() if v is not None})
        if params.top_k:  # not in OpenAI's API; vLLM and others accept it
            body["top_k"] = params.top_k
        if params.stop:
            body["stop"] = list(params.stop)
        if params.response_format is not None:  # the server enforces JSON mode / the schema itself
            body["response_format"] = params.response_format.model_dump(exclude_none=True)
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        body.update(self.options.extra_body)
        return body

    async def _send(self, body: dict[str, Any], stream: bool):
        """POST chat/completions with retries; returns a response whose status is 2xx."""
        import httpx

        o = self.options
        for attempt in range(o.max_retries + 1):
            last = attempt == o.max_retries
            try:
                request = self._client.build_request("POST", "chat/completions", json=body)
                response = await self._client.send(request, stream=stream)
            except httpx.TransportError as e:
                if last:
                    raise GenerationError(
                        f"generator {self.name!r} could not reach {request.url}: {type(e).__name__}: {e}"
                    ) from e
                await asyncio.sleep(o.retry_backoff_s * 2**attempt)
                continue
            if response.is_success:
                return response
            detail = (await response.aread()).decode("utf-8", "replace")[:2000]
            await response.aclose()
            if last or response.status_code not in _RETRY_STATUSES:
                message, param = _error_detail(detail)
                raise UpstreamError(f"generator {self.name!r}: HTTP {response.status_code} from its server: {message}",
                                    status=response.status_code, param=param)
            await asyncio.sleep(_retry_after(response) or o.retry_backoff_s * 2**attempt)
        raise AssertionError("unreachable")


async def _sse_events(response) -> AsyncIterator[dict]:
    """The JSON payloads of a server-sent-event stream, until ``[DONE]``."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names, keep-alives, blank separators
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        data = json.loads(payload)
        if isinstance(data, dict) and data.get("error"):
            raise GenerationError(f"the server reported an error mid-stream: {data['error']}")
        yield data


def _error_detail(detail: str) -> tuple[str, Optional[str]]:
    """(message, param) of an error body: OpenAI's ``{"error": {"message", "param"}}`` (or the same
    fields at the top, as older vLLM sends them), else the text as it is."""
    try:
        data = json.loads(detail)
    except ValueError:
        return detail, None
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else data
    if isinstance(error, dict) and isinstance(error.get("message"), str) and error["message"]:
        param = error.get("param")
        return error["message"], param if isinstance(param, str) else None
    return detail, None


def _first_choice(data: dict) -> dict:
    choices = data.get("choices") or []
    if not choices:
        raise GenerationError(f"the server's response has no choices: {json.dumps(data)[:500]}")
    return choices[0]


def _usage(raw: Optional[dict]) -> Usage:
    raw = raw or {}
    return Usage(prompt_tokens=raw.get("prompt_tokens") or 0, completion_tokens=raw.get("completion_tokens") or 0)


def _retry_after(response) -> Optional[float]:
    try:
        return min(float(response.headers.get("retry-after", "")), 30.0)
    except ValueError:
        return None
