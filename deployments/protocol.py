"""Request and response models of the HTTP API and the handle API (pydantic only, no FastAPI).

OpenAI-compatible: ``ChatCompletionRequest`` / ``CompletionRequest`` accept what the official
clients send; unknown top-level fields are rejected (as OpenAI does), and ensemble options go in
the ``blender`` extension field (a ``BlendOptions``, strict). Responses are typed too
(``ChatCompletionResponse``, ``ChatCompletionChunk``, ``CompletionResponse``, ``ErrorResponse``...);
the ensemble's answers carry the ``blender`` provenance object. Native routes: rank, compare, fuse.
Building responses from results is ``deployments.serving``'s job; the routes are in ``router``.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from blender_serve.config import BlendOptions
from blender_serve.types import ChatMessage, Provenance, RankResult, SamplingParams, Usage

__all__ = [
    # requests
    "ChatCompletionRequest", "CompletionRequest", "BlendRequest", "RankRequest", "CompareRequest", "FuseRequest",
    # responses
    "UsageInfo", "ChatCompletionResponse", "ChatChoice", "AssistantMessage", "ChatCompletionChunk", "ChunkChoice",
    "DeltaMessage", "CompletionResponse", "CompletionChoice", "RankResponse", "CompareResponse", "FuseResponse",
    "ModelCard", "ModelList", "HealthResponse", "ErrorInfo", "ErrorResponse", "new_id",
]

_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN / Infinity: 400 "should be a finite number"


def new_id(prefix: str) -> str:
    """A fresh response id, e.g. ``chatcmpl-3f2a...``."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def _unset(value) -> bool:
    return value is None


def _unicode(text: str) -> str:
    # JSON's \ud800-style escapes can smuggle lone surrogates into a str: no tokenizer, log or
    # response encoder can take them, so they stop here as bad input.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text holds a lone UTF-16 surrogate (an unpaired \\uD800-\\uDFFF escape); "
                         "send valid Unicode") from None
    return text


Text = Annotated[str, AfterValidator(_unicode)]


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["text"]
    text: str


class OpenAIMessage(BaseModel):
    """A chat message as OpenAI clients send it: content is a string or a list of text parts."""

    model_config = ConfigDict(extra="ignore")  # clients add name, tool_calls...: not used here
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[_TextPart]]

    @field_validator("content")
    @classmethod
    def _valid_text(cls, v):
        for text in [v] if isinstance(v, str) else [p.text for p in v]:
            _unicode(text)
        return v

    def to_core(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class _SamplingFields(BaseModel):
    """OpenAI sampling fields shared by chat and text completions."""

    model_config = _STRICT
    model: Text = Field(description="An ensemble name (e.g. 'blender') or one base model's name.")
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=-2**63, lt=2**63, description="A 64-bit integer.")
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(1, ge=1, le=1, description="Only n=1 is supported.")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    user: Optional[Text] = None
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
        for text in v if isinstance(v, list) else [v] if v is not None else []:
            _unicode(text)
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
        return _unicode(v)

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
    source: Text = Field(description="The instruction/question the candidates answer.")
    candidates: list[Text] = Field(min_length=2)
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
    source: Text
    candidate_a: Text
    candidate_b: Text
    mode: Literal["both", "single", "reversed"] = "both"


class CompareResponse(BaseModel):
    logit: float = Field(description="> 0: candidate_a is better.")
    better: Literal["a", "b"]


class FuseRequest(BaseModel):
    model_config = _STRICT
    instruction: Text = ""
    input: Text = ""
    candidates: list[Text] = Field(min_length=1)
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


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"
    ensemble: str
    models: list[str]
    fuser: bool


# -- OpenAI-compatible responses ---------------------------------------------------------------

class UsageInfo(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> "UsageInfo":
        return cls(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                   total_tokens=usage.total_tokens)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: None = None


class _Answer(BaseModel):
    """What chat and text completions share."""

    id: str
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    usage: UsageInfo
    blender: Optional[Provenance] = Field(None, exclude_if=_unset, description="The ensemble's provenance (ensemble answers only).")


class ChatCompletionResponse(_Answer):
    object: Literal["chat.completion"] = "chat.completion"
    choices: list[ChatChoice]


class DeltaMessage(BaseModel):
    role: Optional[Literal["assistant"]] = Field(None, exclude_if=_unset)
    content: Optional[str] = Field(None, exclude_if=_unset)


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage = Field(default_factory=DeltaMessage)
    finish_reason: Optional[str] = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed chat completion; the usage-only chunk has no choices."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Optional[UsageInfo] = Field(None, exclude_if=_unset)
    blender: Optional[Provenance] = Field(None, exclude_if=_unset, description="On the last content chunk of an ensemble answer.")


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str
    logprobs: None = None


class CompletionResponse(_Answer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: str
    errors: Optional[dict[str, str]] = Field(None, exclude_if=_unset, description="Per-model errors, when too few models answered.")


class ErrorResponse(BaseModel):
    """An OpenAI-style error body."""

    error: ErrorInfo
