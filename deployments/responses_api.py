"""The Responses API (``POST /v1/responses``), text in and text out: its request and response models.

Built on ``deployments.protocol``: the same ignored fields (``IGNORED_FIELDS``), the same text
checks, the same ``blender`` options and provenance. Fields the ensemble cannot honour are declared
so that serving can refuse them with a 400 naming them (``NOT_IN_RESPONSES``).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.config import BlendOptions
from blender_serve.types import ChatMessage, Provenance, ResponseFormat, SamplingParams, Usage
from deployments.protocol import Text, _IgnoredFields, _set, _unset

__all__ = ["ResponsesRequest", "ResponsesInputMessage", "ResponsesStreamOptions", "ResponseObject", "OutputMessage",
           "OutputText", "ResponseUsage", "NOT_IN_RESPONSES"]


class ResponsesStreamOptions(BaseModel):
    """The Responses API's ``stream_options``: ``include_provenance`` as on chat; the rest is ignored."""

    model_config = ConfigDict(extra="ignore")  # include_obfuscation: no obfuscation here
    include_provenance: bool = Field(False, description="Ensembles: a 'response.blender.progress' event (the "
                                     "Progress) once the candidates are ranked, before the first text delta.")


class _InputText(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "output_text", "text"]
    text: Text


class ResponsesInputMessage(BaseModel):
    """One turn of a Responses API ``input`` list (an EasyInputMessage or a message item)."""

    model_config = ConfigDict(extra="ignore")  # id, status, phase: not used here
    type: Literal["message"] = "message"
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[Text, list[_InputText]]

    def to_core(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class ResponsesTextFormat(BaseModel):
    """``text.format`` of the Responses API: the flat form of chat's ``response_format``."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    name: Optional[str] = None
    description: Optional[str] = None
    schema_: Optional[dict[str, Any]] = Field(None, alias="schema")
    strict: Optional[bool] = None

    def as_response_format(self) -> ResponseFormat:
        if self.type != "json_schema":
            return ResponseFormat(type=self.type)
        spec = {"name": self.name or "response", "description": self.description, "schema": self.schema_ or {},
                "strict": self.strict}
        return ResponseFormat(type="json_schema", json_schema=spec)


class ResponsesText(BaseModel):
    model_config = ConfigDict(extra="ignore")  # verbosity: ignored
    format: Optional[ResponsesTextFormat] = None


#: Responses API fields refused with a 400 naming them (text in, text out is what is served).
NOT_IN_RESPONSES: dict[str, str] = {
    "tools": "tools are not supported; for structured output send text={'format': {'type': 'json_schema', ...}}",
    "tool_choice": "tools are not supported; drop tool_choice",
    "previous_response_id": "responses are not stored; send the whole conversation in 'input'",
    "conversation": "conversations are not stored; send the whole conversation in 'input'",
    "background": "background responses are not supported; send the request and wait, or stream it",
    "reasoning": "reasoning options are not supported by these models; drop 'reasoning'",
    "include": "no extra output data is available; drop 'include'",
    "prompt": "stored prompt templates are not supported; send the text in 'input' and 'instructions'",
    "top_logprobs": "the answer is ranked and fused from several models, so no token log-probabilities describe it",
}


class ResponsesRequest(_IgnoredFields):
    """``POST /v1/responses`` for text: ``input`` (a string or messages), ``instructions``, sampling."""

    model: Text = Field(description="An ensemble name (e.g. 'blender') or one base model's name.")
    input: Union[Text, list[ResponsesInputMessage]] = Field(description="The question, or the conversation as messages.")
    instructions: Optional[Text] = Field(None, description="A system message put before the input.")
    max_output_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(None, ge=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    stream: bool = False
    text: Optional[ResponsesText] = None
    blender: Optional[BlendOptions] = Field(None, description="Ensemble options (models, top_k, strategy, fusion, deadline_s...).")
    # accepted and ignored besides those of _IgnoredFields
    truncation: Optional[Literal["auto", "disabled"]] = Field(None, description="Ignored: over-long input is refused (400).")
    stream_options: Optional[ResponsesStreamOptions] = Field(None, description="include_provenance: see ResponsesStreamOptions.")
    max_tool_calls: Optional[int] = Field(None, description="Ignored: tools are refused.")
    # refused (NOT_IN_RESPONSES)
    tools: Optional[list[dict[str, Any]]] = None
    tool_choice: Optional[Union[str, dict[str, Any]]] = None
    previous_response_id: Optional[str] = None
    conversation: Optional[Union[str, dict[str, Any]]] = None
    background: Optional[bool] = None
    reasoning: Optional[dict[str, Any]] = None
    include: Optional[list[str]] = None
    prompt: Optional[dict[str, Any]] = None
    top_logprobs: Optional[int] = None

    def unsupported(self) -> list[str]:
        """The fields of NOT_IN_RESPONSES this request sets ('auto' tool_choice with no tools asks nothing)."""
        return [name for name in NOT_IN_RESPONSES
                if _set(getattr(self, name)) and not (name == "tool_choice" and self.tool_choice == "auto")]

    def core_messages(self) -> list[ChatMessage]:
        turns = [ChatMessage(role="user", content=self.input)] if isinstance(self.input, str) else \
            [m.to_core() for m in self.input]
        return ([ChatMessage(role="system", content=self.instructions)] if self.instructions else []) + turns

    def sampling(self) -> SamplingParams:
        fmt = self.text.format.as_response_format() if self.text is not None and self.text.format is not None else None
        return SamplingParams(max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p,
                              response_format=fmt)


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText] = Field(default_factory=list)


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens: int
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})
    total_tokens: int

    @classmethod
    def of(cls, usage: Usage) -> "ResponseUsage":
        return cls(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens, total_tokens=usage.total_tokens)


class ResponseObject(BaseModel):
    """A Responses API ``response``: the answer as one output message; ensemble answers carry ``blender``."""

    id: str
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["in_progress", "completed", "incomplete", "failed"] = "completed"
    model: str
    output: list[OutputMessage] = Field(default_factory=list)
    usage: Optional[ResponseUsage] = None
    error: Optional[dict[str, Any]] = None
    incomplete_details: Optional[dict[str, str]] = None
    instructions: Optional[str] = None
    max_output_tokens: Optional[int] = None
    temperature: Optional[float] = None
    top_p: Optional[float] = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    parallel_tool_calls: bool = False
    tool_choice: str = "none"
    tools: list[Any] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    truncation: str = "disabled"
    store: bool = False
    blender: Optional[Provenance] = Field(None, exclude_if=_unset, description="The ensemble's provenance (ensemble answers only).")
