"""What a chat request relays to a base model's own server: tool turns and tool fields as sent,
this server's own fields left out; and what the ensemble is told it cannot take."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from blender_serve.errors import UnsupportedParameterError
from deployments.protocol import ChatCompletionRequest

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
TURNS = [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
         {"role": "assistant", "content": None, "tool_calls": [CALL], "refusal": None},
         {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]


def test_the_body_is_the_clients_request_less_our_fields():
    req = ChatCompletionRequest.model_validate({
        "model": "smol", "messages": TURNS, "tools": [{"type": "function", "function": {"name": "get_weather"}}],
        "tool_choice": "required", "parallel_tool_calls": False, "logprobs": True, "top_logprobs": 2, "temperature": 0,
        "stream": True, "stream_options": {"include_usage": True}, "user": "u-1", "metadata": {"a": "b"}})
    body = req.passthrough_body()
    assert body["messages"] == TURNS  # as sent, explicit nulls and extra keys included
    assert {k for k in body if k != "messages"} == {"tools", "tool_choice", "parallel_tool_calls", "logprobs",
                                                    "top_logprobs", "temperature"}
    assert req.unsupported() == ["tools", "tool_choice", "logprobs", "top_logprobs", "messages"]
    assert req.chars() == len("Weather?") + len("sunny") + len('[{"id": "c1", "type": "function", "function": '
                                                               '{"name": "get_weather", "arguments": "{}"}}]')


def test_a_text_chat_asks_nothing_and_tool_turns_stay_out_of_the_core():
    plain = ChatCompletionRequest.model_validate({"model": "blender", "messages": TURNS[:1], "tool_choice": "none",
                                                  "logprobs": False})
    assert plain.unsupported() == [] and plain.core_messages()[0].content == "Weather?"
    with pytest.raises(UnsupportedParameterError, match="openai backend") as info:
        ChatCompletionRequest.model_validate({"model": "blender", "messages": TURNS}).core_messages()
    assert info.value.param == "messages"


@pytest.mark.parametrize("message", [{"role": "user"}, {"role": "tool", "tool_call_id": "c1", "content": None},
                                     {"role": "assistant", "content": None}, {"role": "robot", "content": "hi"}])
def test_content_may_be_left_out_by_a_calling_assistant_only(message):
    with pytest.raises(ValidationError):
        ChatCompletionRequest.model_validate({"model": "smol", "messages": [message]})
