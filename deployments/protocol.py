"""Request and response models of the HTTP API and the handle API (pydantic only, no FastAPI).

OpenAI-compatible: ``ChatCompletionRequest`` / ``CompletionRequest`` accept what the official
clients send; unknown top-level fields are rejected (as OpenAI does), and ensemble options go in
the ``blender`` extension field (a ``BlendOptions``, strict). Native routes: rank, compare, fuse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from blender_serve.config import BlendOptions
from blender_serve.types import BlendResult, ChatMessage, RankResult, SamplingParams, Usage

__all__ = [
    "ChatCompletionRequest", "CompletionRequest", "BlendRequest", "RankRequest", "RankResponse",
    "CompareRequest", "CompareResponse", "FuseRequest", "FuseResponse", "ModelCard", "ModelList",
    "chat_completion", "chat_chunk", "text_completion", "new_id",
]

_STRICT = ConfigDict(extra="forbid")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class OpenAIMessage(BaseModel):
    """A chat message as OpenAI clients send it: content is a string or a list of text parts."""

    model_config = ConfigDict(extra="ignore")  # clients add name, tool_calls...: not used here
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[_TextPart]]

    def to_core(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingFields(BaseModel):
    """OpenAI sampling fields shared by chat and text completions."""

    model_config = _STRICT
    model: str = Field(description="An ensemble name (e.g. 'blender') or one base model's name.")
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = None
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(1, ge=1, le=1, description="Only n=1 is supported.")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[str] = None
    # Accepted for client compatibility; the ensemble does not use them.
    presence_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: Optional[float] = Field(None, ge=-2.0, le=2.0)
    logit_bias: Optional[dict[str, float]] = None
    blender: Optional[BlendOptions] = Field(None, description="Ensemble options (models, top_k, strategy, fusion, deadline_s...).")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v):
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def sampling(self) -> SamplingParams:
        return SamplingParams(max_tokens=self.max_completion_tokens or self.max_tokens, temperature=self.temperature,
                              top_p=self.top_p, seed=self.seed, stop=self.stop)


class ChatCompletionRequest(_SamplingFields):
    messages: list[OpenAIMessage] = Field(min_length=1)

    def core_messages(self) -> list[ChatMessage]:
        return [m.to_core() for m in self.messages]


class CompletionRequest(_SamplingFields):
    prompt: Union[str, list[str]]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v):
        if isinstance(v, list):
            if len(v) != 1:
                raise ValueError("exactly one prompt per request")
            v = v[0]
        return v

    def core_messages(self) -> list[ChatMessage]:
        return [ChatMessage(role="user", content=self.prompt)]


class BlendRequest(BaseModel):
    """The handle API's blend call: messages plus options and sampling."""

    model_config = _STRICT
    messages: list[ChatMessage] = Field(min_length=1)
    options: BlendOptions = Field(default_factory=BlendOptions)
    sampling: SamplingParams = Field(default_factory=SamplingParams)


class RankRequest(BaseModel):
    model_config = _STRICT
    source: str = Field(description="The instruction/question the candidates answer.")
    candidates: list[str] = Field(min_length=2)
    strategy: Optional[str] = None
    top_k: Optional[int] = Field(None, ge=1)


class RankResponse(BaseModel):
    order: list[int]
    scores: list[float]
    ranks: list[int]
    strategy: str
    matrix: Optional[list[list[float]]] = None

    @classmethod
    def of(cls, r: RankResult) -> "RankResponse":
        return cls(order=r.order, scores=r.scores, ranks=r.ranks, strategy=r.strategy, matrix=r.matrix)


class CompareRequest(BaseModel):
    model_config = _STRICT
    source: str
    candidate_a: str
    candidate_b: str
    mode: Literal["both", "single", "reversed"] = "both"


class CompareResponse(BaseModel):
    logit: float = Field(description="> 0: candidate_a is better.")
    better: Literal["a", "b"]


class FuseRequest(BaseModel):
    model_config = _STRICT
    instruction: str = ""
    input: str = ""
    candidates: list[str] = Field(min_length=1)
    max_new_tokens: Optional[int] = Field(None, ge=1)
    num_beams: Optional[int] = Field(None, ge=1, le=16)
    stream: bool = False


class FuseResponse(BaseModel):
    text: str
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=lambda: int(time.time()))
    owned_by: str = "blender-serve"
    kind: Literal["ensemble", "base"] = "base"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def _usage(u: Usage) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


def provenance(result: BlendResult) -> dict[str, Any]:
    """The ``blender`` object of a response: everything but the answer text."""
    return result.model_dump(exclude={"text", "usage"})


def chat_completion(model: str, text: str, usage: Usage, finish_reason: str = "stop",
                    result: Optional[BlendResult] = None, request_id: Optional[str] = None) -> dict[str, Any]:
    """A ChatCompletion body; with a BlendResult it carries the ``blender`` provenance object."""
    body = {
        "id": request_id or new_id("chatcmpl"), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason, "logprobs": None}],
        "usage": _usage(usage),
    }
    if result is not None:
        body["blender"] = provenance(result)
    return body


def text_completion(model: str, text: str, usage: Usage, finish_reason: str = "stop",
                    result: Optional[BlendResult] = None) -> dict[str, Any]:
    body = {
        "id": new_id("cmpl"), "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason, "logprobs": None}],
        "usage": _usage(usage),
    }
    if result is not None:
        body["blender"] = provenance(result)
    return body


def chat_chunk(chunk_id: str, model: str, created: int, *, content: Optional[str] = None, role: Optional[str] = None,
               finish_reason: Optional[str] = None, usage: Optional[Usage] = None,
               result: Optional[BlendResult] = None, empty_choices: bool = False) -> dict[str, Any]:
    """One ``chat.completion.chunk``; the usage-only chunk has empty choices, as OpenAI sends it."""
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = role
    if content is not None:
        delta["content"] = content
    body: dict[str, Any] = {
        "id": chunk_id, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [] if empty_choices else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = _usage(usage)
    if result is not None:
        body["blender"] = provenance(result)
    return body
