"""Tools and logprobs on the single-model route, relayed to a base model's own OpenAI-compatible server.

A served app with one ``openai``-backend base model in front of a real llama.cpp server
(llama-cpp-python's, on SmolLM2's GGUF file, with its ``chatml-function-calling`` format), a
scripted one and one whose server is down, driven by the official ``openai`` client. Oracles: the
relayed answer is the server's own (greedy, so a streamed answer joins to the plain one; the
log-probabilities' tokens join to the text), under our response id (the Serve request id) and the
model name asked for. The ensemble and the scripted model still refuse these fields with a 400
naming them. The tiny model calls a tool reliably only when ``tool_choice`` names the function.
llama-cpp-python is opt-in: these tests skip without it unless BLENDER_REQUIRE_LLAMA_CPP=1.
"""

from __future__ import annotations

import importlib.util
import json
import os

import openai
import pytest

from blender_serve.testing.apps import free_port

HAVE = importlib.util.find_spec("llama_cpp") is not None
if not HAVE and os.environ.get("BLENDER_REQUIRE_LLAMA_CPP") == "1":
    raise RuntimeError("BLENDER_REQUIRE_LLAMA_CPP=1 but llama-cpp-python is not installed (bash scripts/llama_cpp.sh)")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not HAVE, reason="llama-cpp-python is not installed (opt-in: bash scripts/llama_cpp.sh)")]

LLAMA_CHAT_FORMAT = "chatml-function-calling"  # read by the llama_server fixture: the format that takes tools
APP = "passthrough"
ZERO = {"ray_actor_options": {"num_cpus": 0}}
MSG = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
GREEDY = {"temperature": 0, "max_tokens": 6}


@pytest.fixture(scope="module")
def app_url(deploy, llama_server):
    generators = [
        {"name": "smol", "backend": "openai", "model": "smol", "options": {"base_url": llama_server}},
        {"name": "paris", "backend": "scripted", "options": {"template": "Sunny in Paris: {prompt}"}},
        {"name": "local", "backend": "llama_cpp", "model": "local:smollm2-135m-instruct-gguf",  # computes its own
         "options": {"n_threads": 1, "n_ctx": 1024}},
        {"name": "down", "backend": "openai", "model": "smol",  # nothing listens there
         "options": {"base_url": f"http://127.0.0.1:{free_port()}/v1", "max_retries": 0}},
    ]
    args = {"ensemble": {"name": "blender", "generators": generators, "ranker": {"kind": "scripted", "path": "scripted"},
                         "fusion": "never", "top_k": 2, "deadline_s": 30.0},
            "deployments": {**{g["name"]: ZERO for g in generators}, "ranker": ZERO, "ingress": ZERO},
            "limits": {"max_prompt_chars": 20000}}
    return deploy(args, APP)


@pytest.fixture(scope="module")
def client(app_url):
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0, timeout=120)


def _ours(raw) -> None:
    """The answer carries our id (the Serve request id) and the model name asked for, not the server's."""
    assert raw.parse().id == f"chatcmpl-{raw.headers['x-request-id']}"


# -- logprobs -----------------------------------------------------------------------------------

def test_logprobs_come_back_plain_and_streamed(client):
    raw = client.chat.completions.with_raw_response.create(model="smol", messages=MSG, logprobs=True, top_logprobs=2,
                                                           **GREEDY)
    _ours(raw)
    resp = raw.parse()
    choice = resp.choices[0]
    assert resp.model == "smol" and choice.message.content and choice.finish_reason == "length"
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 2 for t in tokens)
    assert resp.usage.completion_tokens == len(tokens) and resp.usage.prompt_tokens > 0

    chunks = list(client.chat.completions.create(model="smol", messages=MSG, logprobs=True, top_logprobs=2, stream=True,
                                                 **GREEDY))
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id != resp.id and {c.model for c in chunks} == {"smol"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert text == choice.message.content and [t.token for t in streamed] == [t.token for t in tokens]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_a_model_that_computes_logprobs_answers_them_plain_and_streamed(client):
    """An in-process llama.cpp model computes them itself, in the same shape the relayed server's
    come in; streamed, they come with the text they belong to."""
    resp = client.chat.completions.create(model="local", messages=MSG, logprobs=True, top_logprobs=2, **GREEDY)
    choice = resp.choices[0]
    tokens = choice.logprobs.content
    assert "".join(t.token for t in tokens) == choice.message.content and choice.message.content
    assert len(tokens) == resp.usage.completion_tokens == GREEDY["max_tokens"]
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob == t.logprob <= 0 for t in tokens)  # greedy
    assert all(t.bytes == list(t.token.encode()) for t in tokens)
    chunks = list(client.chat.completions.create(model="local", messages=MSG, logprobs=True, top_logprobs=2, stream=True,
                                                 **GREEDY))
    streamed = [t for c in chunks if c.choices and c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in tokens]
    assert all(c.choices[0].delta.content == "".join(t.token for t in c.choices[0].logprobs.content)
               for c in chunks if c.choices and c.choices[0].logprobs)  # each chunk's tokens are its text
    plain = client.chat.completions.create(model="local", messages=MSG, **GREEDY)
    assert plain.choices[0].logprobs is None and plain.choices[0].message.content == choice.message.content


def test_top_logprobs_without_logprobs_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="local", messages=MSG, top_logprobs=2)
    assert "top_logprobs needs logprobs=true" in info.value.body["message"]


# -- tools --------------------------------------------------------------------------------------

def test_a_forced_tool_call_comes_back_plain_and_streamed(client):
    raw = client.chat.completions.with_raw_response.create(model="smol", messages=MSG, tools=[WEATHER],
                                                           tool_choice=FORCED, temperature=0, max_tokens=40)
    _ours(raw)
    choice = raw.parse().choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id
    assert isinstance(json.loads(call.function.arguments), dict)

    chunks = list(client.chat.completions.create(model="smol", messages=MSG, tools=[WEATHER], tool_choice=FORCED,
                                                 temperature=0, max_tokens=40, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert {d.function.name for d in deltas if d.function.name} == {"get_weather"}
    assert "".join(d.function.arguments or "" for d in deltas) == call.function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_a_follow_up_with_the_tool_result_is_answered(client):
    first = client.chat.completions.create(model="smol", messages=MSG, tools=[WEATHER], tool_choice=FORCED,
                                           temperature=0, max_tokens=40).choices[0].message
    (call,) = first.tool_calls
    # content "" rather than null: llama-cpp-python's server takes no null content on assistant turns
    follow_up = MSG + [{"role": "assistant", "content": "", "tool_calls": [call.model_dump()]},
                       {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "celsius": 21}'}]
    resp = client.chat.completions.create(model="smol", messages=follow_up, tools=[WEATHER], temperature=0, max_tokens=12)
    assert resp.choices[0].message.content and resp.choices[0].finish_reason in ("stop", "length")


# -- what is still refused, and errors ----------------------------------------------------------

@pytest.mark.parametrize("kwargs, param", [
    ({"logprobs": True}, "logprobs"), ({"tools": [WEATHER]}, "tools"), ({"tools": [WEATHER], "tool_choice": FORCED}, "tools"),
    ({"messages": MSG + [{"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}, "messages"),
])
def test_the_ensemble_still_refuses_them(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="blender", **{"messages": MSG, **kwargs})
    body = info.value.body
    assert body["param"] == param and "the ensemble 'blender'" in body["message"]


@pytest.mark.parametrize("kwargs, param", [
    ({"logprobs": True, "top_logprobs": 2}, "logprobs"), ({"tools": [WEATHER], "tool_choice": FORCED}, "tools"),
    ({"messages": MSG + [{"role": "tool", "tool_call_id": "c1", "content": "sunny"}]}, "messages"),
])
def test_a_scripted_model_refuses_them_naming_its_backend(client, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="paris", **{"messages": MSG, **kwargs})
    body = info.value.body
    assert body["param"] == param and body["message"].startswith("Unsupported parameter:")
    assert "runs on the scripted backend" in body["message"] and "openai backend pass" in body["message"]


def test_the_servers_own_4xx_comes_back_with_its_message(client):
    with pytest.raises(openai.BadRequestError) as info:  # past the server's 1024-token context
        client.chat.completions.create(model="smol", messages=[{"role": "user", "content": "word " * 1500}],
                                       logprobs=True, max_tokens=4)
    assert "maximum context length" in info.value.body["message"] and info.value.body["code"] == "400"


@pytest.mark.parametrize("stream", [False, True])
def test_a_server_that_cannot_be_reached_is_a_503(client, stream):
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="down", messages=MSG, logprobs=True, stream=stream)
    assert info.value.status_code == 503 and "could not reach" in info.value.body["message"]


def test_plain_chat_on_the_same_model_is_unchanged(client):
    resp = client.chat.completions.create(model="smol", messages=MSG, **GREEDY)
    assert resp.choices[0].message.content and resp.choices[0].logprobs is None and resp.model == "smol"
