"""Request and response models of the HTTP API and the handle API (pydantic only, no FastAPI).

OpenAI-compatible: ``ChatCompletionRequest`` / ``CompletionRequest`` (and ``ResponsesRequest``, in
``deployments.responses_api``) accept what the official clients send; fields that change nothing here are accepted and ignored (one list:
``IGNORED_FIELDS``), fields the ensemble cannot honour are declared so that serving can refuse them
with a 400 naming them (``NOT_ON_ENSEMBLE``; on the chat route, base models
on the openai backend take the former through, ``passthrough_body``), any other unknown top-level
field is rejected (as OpenAI does), and ensemble options go in the ``blender`` extension field (a
``BlendOptions``, strict). Responses are typed too
(``ChatCompletionResponse``, ``ChatCompletionChunk``, ``CompletionResponse``, ``ErrorResponse``...);
the ensemble's answers carry the ``blender`` provenance object. Native routes: rank, compare, fuse.
Building responses from results is ``deployments.serving``'s job; the routes are in ``router``.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from blender_serve.config import BlendOptions
from blender_serve.errors import UnsupportedParameterError
from blender_serve.types import (
    ChatMessage, Progress, Provenance, RankResult, ResponseFormat, SamplingParams, TokenLogprob, Usage,
)

__all__ = [
    # requests
    "ChatCompletionRequest", "CompletionRequest", "BlendRequest", "RankRequest", "CompareRequest", "FuseRequest",
    # responses
    "UsageInfo", "ChatCompletionResponse", "ChatChoice", "AssistantMessage", "ChatCompletionChunk", "ChunkChoice",
    "DeltaMessage", "CompletionResponse", "CompletionChoice", "CompletionChunk", "CompletionChunkChoice", "RankResponse", "CompareResponse", "FuseResponse",
    "ModelCard", "ModelList", "HealthResponse", "ErrorInfo", "ErrorResponse", "new_id",
    # what is ignored, what is refused
    "IGNORED_FIELDS", "NOT_ON_ENSEMBLE", "NOT_IN_COMPLETIONS", "LOGPROB_FIELDS", "ChoiceLogprobs",
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
    """A chat message as OpenAI clients send it: content is a string or a list of text parts. Tool
    turns (role 'tool', an assistant's ``tool_calls``) are kept as sent, for base models whose
    server takes them (see ``ChatCompletionRequest.passthrough_body``); the ensemble refuses them."""

    model_config = ConfigDict(extra="allow")  # name, refusal...: unused here, relayed as sent
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Optional[Union[str, list[_TextPart]]] = Field(None, description="Required, except on an assistant turn "
                                                           "that carries tool_calls or function_call.")
    tool_calls: Optional[list[dict[str, Any]]] = Field(None, description="An assistant turn's calls (relayed only).")
    tool_call_id: Optional[str] = Field(None, description="A tool turn's answer to this call (relayed only).")

    @field_validator("content")
    @classmethod
    def _valid_text(cls, v):
        for text in [] if v is None else [v] if isinstance(v, str) else [p.text for p in v]:
            _unicode(text)
        return v

    @model_validator(mode="after")
    def _has_content(self) -> "OpenAIMessage":
        if self.content is None and not (self.role == "assistant" and (self.tool_calls or self.function_call)):
            raise ValueError(f"a '{self.role}' message needs 'content' (only an assistant turn with tool_calls may omit it)")
        return self

    @property
    def function_call(self) -> Optional[Any]:
        return (self.model_extra or {}).get("function_call")

    @property
    def tool_turn(self) -> bool:
        """Whether this turn is part of a tool call (role 'tool' or 'function', or an assistant's call)."""
        return self.role in ("tool", "function") or bool(self.tool_calls) or bool(self.function_call)

    def text(self) -> str:
        return "" if self.content is None else self.content if isinstance(self.content, str) else \
            "".join(p.text for p in self.content)

    def to_core(self) -> ChatMessage:
        if self.tool_turn:
            raise UnsupportedParameterError("tool turns in 'messages' go to base models on the openai backend only",
                                            param="messages")
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=self.text())


class StreamOptions(BaseModel):
    """What a stream carries besides the answer (OpenAI's ``stream_options``, plus one field of ours)."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = Field(False, description="A last chunk with no choices and the whole request's usage.")
    include_provenance: bool = Field(False, description="Ensembles: once the candidates are ranked and before any "
                                     "answer text, a chunk with no choices whose 'blender' object is the Progress "
                                     "(candidates, scores, matrix, whether fusion will run).")


class _IgnoredFields(BaseModel):
    """The fields OpenAI clients send that change nothing here: accepted and ignored (this class is
    the one list of them; ``IGNORED_FIELDS`` names them, the README repeats them)."""

    model_config = _STRICT
    metadata: Optional[dict[str, Any]] = Field(None, description="Ignored: nothing is stored.")
    store: Optional[bool] = Field(None, description="Ignored: nothing is stored (as with store=false).")
    user: Optional[Text] = Field(None, description="Ignored (an end-user id for the provider's abuse monitoring).")
    safety_identifier: Optional[Text] = Field(None, description="Ignored (OpenAI's successor of 'user').")
    prompt_cache_key: Optional[Text] = Field(None, description="Ignored: there is no cross-request prompt cache to steer.")
    service_tier: Optional[str] = Field(None, description="Ignored: one tier here.")
    parallel_tool_calls: Optional[bool] = Field(None, description="Ignored, except passed along with the request to a "
                                                "base model on the openai backend (see 'tools').")


IGNORED_FIELDS: tuple[str, ...] = tuple(_IgnoredFields.model_fields)


class _SamplingFields(_IgnoredFields):
    """OpenAI sampling fields shared by chat and text completions."""

    model: Text = Field(description="An ensemble name (e.g. 'blender') or one base model's name.")
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    seed: Optional[int] = Field(None, ge=-2**63, lt=2**63, description="A 64-bit integer.")
    stop: Optional[Union[str, list[str]]] = None
    n: int = Field(1, ge=1, le=64, description="Choices to return: the ensemble's answer, then the next-ranked distinct "
                   "candidates (the ensemble only).")
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
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


#: Chat fields this server refuses on the ensemble (400 naming the field) -> what to do instead
#: ('messages': tool turns in them). A base model on the openai backend takes them through to its
#: server (``ChatCompletionRequest.passthrough_body``); other base models refuse them too.
NOT_ON_ENSEMBLE: dict[str, str] = {
    "tools": "the ensemble ranks and fuses text answers and cannot call tools; for structured output send "
             "response_format={'type': 'json_schema', ...}",
    "tool_choice": "the ensemble cannot call tools; drop tool_choice, or use response_format for structured output",
    "functions": "the ensemble cannot call functions; for structured output send response_format={'type': 'json_schema', ...}",
    "function_call": "the ensemble cannot call functions; drop function_call, or use response_format for structured output",
    "logprobs": "the answer is ranked and fused from several models, so no token log-probabilities describe it; "
                "the candidates' scores and ranks are in the 'blender' provenance object",
    "top_logprobs": "the answer is ranked and fused from several models, so no token log-probabilities describe it; "
                    "the candidates' scores and ranks are in the 'blender' provenance object",
    "messages": "the ensemble answers text chats and calls no tools; send text turns only (no 'tool' messages, "
                "no assistant 'tool_calls')",
}


#: The chat fields a base model whose backend computes log-probabilities answers itself.
LOGPROB_FIELDS = ("logprobs", "top_logprobs")


def _set(value) -> bool:
    """Whether an optional client field asks for something (None, False, empty and 'none' ask nothing)."""
    return value not in (None, False, "none") and value != [] and value != {}


class ChatCompletionRequest(_SamplingFields):
    messages: list[OpenAIMessage] = Field(min_length=1)
    response_format: Optional[ResponseFormat] = Field(
        None, description="{'type': 'json_object'} or {'type': 'json_schema', 'json_schema': {...}}: only answers "
        "of that shape are ranked, and the answer has it (or the request fails with 422).")
    # The ensemble refuses these (400, see NOT_ON_ENSEMBLE); a base model on the openai backend takes them through.
    tools: Optional[list[dict[str, Any]]] = Field(None, description="Base models on the openai backend only.")
    tool_choice: Optional[Union[str, dict[str, Any]]] = Field(None, description="As tools ('none' asks nothing).")
    functions: Optional[list[dict[str, Any]]] = Field(None, description="As tools.")
    function_call: Optional[Union[str, dict[str, Any]]] = Field(None, description="As tools ('none' asks nothing).")
    logprobs: Optional[bool] = Field(None, description="One base model only, on a backend that computes them "
                                     "(llama_cpp, transformers, vllm) or relays them (openai).")
    top_logprobs: Optional[int] = Field(None, ge=0, le=20, description="With logprobs: this many alternatives per token.")

    @model_validator(mode="after")
    def _top_logprobs_needs_logprobs(self):
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        return self

    def core_messages(self) -> list[ChatMessage]:
        return [m.to_core() for m in self.messages]

    def unsupported(self) -> list[str]:
        """The fields of NOT_ON_ENSEMBLE this request sets ('messages' when a turn is a tool turn)."""
        return [name for name in NOT_ON_ENSEMBLE
                if (any(m.tool_turn for m in self.messages) if name == "messages" else _set(getattr(self, name)))]

    def passthrough_body(self) -> dict[str, Any]:
        """This request as a chat completion body for a base model's own server
        (``Generator.chat_raw``): the messages as sent, and every field the client set except this
        server's own (model, blender, streaming, and the ignored ones but parallel_tool_calls)."""
        ours = {"model", "blender", "stream", "stream_options", "messages", *IGNORED_FIELDS} - {"parallel_tool_calls"}
        fields = self.model_dump(mode="json", exclude_unset=True, exclude=ours)
        return {"messages": [m.model_dump(mode="json", exclude_unset=True) for m in self.messages],
                **{k: v for k, v in fields.items() if v is not None}}

    def chars(self) -> int:
        """The characters of the conversation (texts, and tool calls as JSON), for the prompt limit."""
        return sum(len(m.text()) + (len(json.dumps(m.tool_calls)) if m.tool_calls else 0) for m in self.messages)

    def sampling(self) -> SamplingParams:
        logprobs = (self.top_logprobs or 0) if self.logprobs else None
        return super().sampling().model_copy(update={"response_format": self.response_format, "logprobs": logprobs})


#: Text completion fields refused with a 400 naming them when they ask for something (the legacy
#: API's own; LangChain's ``OpenAI`` LLM sends ``logprobs: null`` on every call).
NOT_IN_COMPLETIONS: dict[str, str] = {
    "logprobs": "no token log-probabilities are returned on this route; ask one base model on "
                "/v1/chat/completions with logprobs=true, or see the ensemble's candidates' scores and ranks in the "
                "'blender' provenance object",
    "echo": "the prompt is not echoed; prepend it to the answer yourself",
    "suffix": "insertion (text after the completion) is not supported; send the text before it as the prompt",
    "best_of": "best_of is not supported; the ensemble already ranks several models' answers: use model 'blender'",
}


class CompletionRequest(_SamplingFields):
    prompt: Union[str, list[str]]
    # The legacy completions API's own fields: accepted when they ask nothing, else refused (NOT_IN_COMPLETIONS).
    logprobs: Optional[int] = Field(None, ge=0, le=5, description="Refused when set.")
    echo: Optional[bool] = Field(None, description="Refused when true.")
    suffix: Optional[str] = Field(None, description="Refused when set.")
    best_of: Optional[int] = Field(None, ge=1, description="Refused over 1.")

    def unsupported(self) -> list[str]:
        """The fields of NOT_IN_COMPLETIONS this request asks for (logprobs=0 asks for the chosen
        tokens' log-probabilities; best_of=1, echo=false and an empty suffix ask nothing)."""
        asked = {"logprobs": self.logprobs is not None, "echo": bool(self.echo), "suffix": bool(self.suffix),
                 "best_of": (self.best_of or 1) > 1}
        return [name for name in NOT_IN_COMPLETIONS if asked[name]]

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


class ChoiceLogprobs(BaseModel):
    """A choice's token log-probabilities (``logprobs: true`` on one base model that computes them)."""

    content: Optional[list[TokenLogprob]] = None
    refusal: Optional[list[TokenLogprob]] = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: str
    logprobs: Optional[ChoiceLogprobs] = None


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
    logprobs: Optional[ChoiceLogprobs] = None


class _Chunk(BaseModel):
    """One server-sent event of a streamed completion; chunks with no choices carry the usage or the Progress."""

    id: str
    object: str
    created: int
    model: str
    choices: list[Any]
    usage: Optional[UsageInfo] = Field(None, exclude_if=_unset)
    blender: Optional[Union[Provenance, Progress]] = Field(
        None, exclude_if=_unset, description="On the last chunk with a choice of an ensemble answer (the Provenance); "
        "with stream_options.include_provenance also on a chunk with no choices before the answer (the Progress).")


class ChatCompletionChunk(_Chunk):
    """One server-sent event of a streamed chat completion."""

    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    choices: list[ChunkChoice]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: str
    logprobs: None = None


class CompletionResponse(_Answer):
    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChoice]


class CompletionChunkChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Optional[str] = None
    logprobs: None = None


class CompletionChunk(_Chunk):
    """One server-sent event of a streamed text completion (OpenAI names it as a whole completion)."""

    object: Literal["text_completion"] = "text_completion"
    choices: list[CompletionChunkChoice]


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: str
    errors: Optional[dict[str, str]] = Field(None, exclude_if=_unset, description="Per-model errors, when too few models answered.")


class ErrorResponse(BaseModel):
    """An OpenAI-style error body."""

    error: ErrorInfo
