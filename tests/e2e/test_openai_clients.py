"""The ensemble as real OpenAI clients call it: the official ``openai`` SDK (JSON mode, JSON schema,
n > 1, ignored and refused fields, the Responses API), LangChain's ``ChatOpenAI`` and LiteLLM, over
real HTTP on a real local Ray cluster.

The app's base models are scripted: three answer JSON (one in a code fence, one with a field too
many for the strict schema), one answers prose. Ranker and fuser are scripted as well (the fuser
writes the top candidate, cut to 5 words: a 4-word JSON answer fuses into valid JSON, a longer one
into a broken one), so every JSON outcome (dropped, fused, fallen back, none valid) is one request.
"""

from __future__ import annotations

import json
import os

import httpx
import openai
import pytest

APP = "clients"
ZERO = {"ray_actor_options": {"num_cpus": 0}}
PARIS = '{"city": "Paris", "country": "France"}'  # 4 words: survives the fuser's 5-word cut
LYON = 'Sure:\n```json\n{"city": "Lyon", "country": "France"}\n```'
NICE = '{"city": "Nice", "country": "France", "note": "on the coast"}'  # cut by the fuser; extra field for the schema
GENERATORS = [
    {"name": "paris", "backend": "scripted", "options": {"responses": [PARIS]}},
    {"name": "lyon", "backend": "scripted", "options": {"responses": [LYON]}},
    {"name": "nice", "backend": "scripted", "options": {"responses": [NICE]}},
    {"name": "prose", "backend": "scripted", "options": {"template": "The capital is Paris, as you asked: {prompt}"}},
]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
          "required": ["city", "country"], "additionalProperties": False}
PLACE = {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}}
MSG = [{"role": "user", "content": "Which city? Answer in JSON."}]
TOOL = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def app_url(deploy):
    args = {"ensemble": {"name": "blender", "generators": GENERATORS, "ranker": {"kind": "scripted", "path": "scripted"},
                         "fuser": {"kind": "scripted", "path": "scripted", "max_new_tokens": 5},
                         "fusion": "always", "top_k": 2, "deadline_s": 10.0},
            "deployments": {**{g["name"]: ZERO for g in GENERATORS}, "ranker": ZERO, "fuser": ZERO, "ingress": ZERO}}
    return deploy(args, APP)


@pytest.fixture(scope="module")
def client(app_url):
    return openai.OpenAI(base_url=f"{app_url}/v1", api_key="unused", max_retries=0, timeout=60)


def _prov(resp) -> dict:
    return resp.model_extra["blender"]


# -- the official openai client: JSON --------------------------------------------------------

def test_json_object_drops_prose_before_ranking_and_answers_json(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, response_format={"type": "json_object"})
    prov = _prov(resp)
    assert "not a JSON object" in prov["errors"]["prose"]
    assert sorted(c["model"] for c in prov["candidates"]) == ["lyon", "nice", "paris"]
    assert json.loads(resp.choices[0].message.content)["country"] == "France"
    lyon = next(c for c in prov["candidates"] if c["model"] == "lyon")
    assert lyon["text"] == '{"city": "Lyon", "country": "France"}'  # the fence is cut away


def test_json_schema_drops_what_does_not_validate(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, response_format=PLACE)
    prov = _prov(resp)
    assert "does not match the JSON schema" in prov["errors"]["nice"] and "note" in prov["errors"]["nice"]
    assert sorted(c["model"] for c in prov["candidates"]) == ["lyon", "paris"]
    answer = json.loads(resp.choices[0].message.content)
    assert set(answer) == {"city", "country"}


def test_a_valid_fused_answer_is_used(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, response_format={"type": "json_object"},
                                          extra_body={"blender": {"models": ["paris", "prose"]}})
    prov = _prov(resp)
    assert prov["fused"] is True and prov["chosen"] == ["paris"] and "fuser" not in prov["errors"]
    assert json.loads(resp.choices[0].message.content) == json.loads(PARIS)


def test_an_invalid_fused_answer_falls_back_to_the_best_valid_candidate(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, response_format={"type": "json_object"},
                                          extra_body={"blender": {"models": ["nice", "prose"]}})
    prov = _prov(resp)
    assert prov["fused"] is False and "unfused" in prov["degraded"]
    assert "did not match response_format" in prov["fusion_skipped_reason"] and "fused answer" in prov["errors"]["fuser"]
    assert resp.choices[0].message.content == NICE


def test_no_valid_answer_is_a_422_naming_each_model(client):
    with pytest.raises(openai.UnprocessableEntityError) as info:
        client.chat.completions.create(model="blender", messages=MSG, response_format=PLACE,
                                       extra_body={"blender": {"models": ["nice", "prose"]}})
    error = info.value.body
    assert error["code"] == "422" and set(error["errors"]) == {"nice", "prose"} and "response_format" in error["message"]


def test_a_schema_that_is_not_json_schema_is_a_400(client):
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}
    with pytest.raises(openai.BadRequestError, match="not a valid JSON Schema"):
        client.chat.completions.create(model="blender", messages=MSG, response_format=bad)


def test_streamed_json_is_checked_whole_before_it_is_sent(client):
    chunks = list(client.chat.completions.create(model="blender", messages=MSG, response_format=PLACE, stream=True,
                                                 extra_body={"blender": {"models": ["nice", "lyon", "prose"]}}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert json.loads(text) == {"city": "Lyon", "country": "France"}
    final = [c.model_extra["blender"] for c in chunks if c.model_extra.get("blender")]
    assert len(final) == 1 and set(final[0]["errors"]) == {"nice", "prose"}


# -- n, ignored and refused fields -----------------------------------------------------------

def test_n_returns_the_answer_then_the_next_ranked_distinct_candidates(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, n=3, extra_body={"blender": {"fusion": "never"}})
    prov = _prov(resp)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert [c.message.content for c in resp.choices] == [c["text"] for c in prov["candidates"][:3]]
    fused = client.chat.completions.create(model="blender", messages=MSG, n=2, response_format={"type": "json_object"},
                                           extra_body={"blender": {"models": ["paris", "lyon"]}})
    texts = [c.message.content for c in fused.choices]
    assert len(texts) == 2 and len(set(texts)) == 2 and all(json.loads(t) for t in texts)


def test_n_streamed_sends_the_same_choices_by_index(client):
    """Choice 0 streams as it is written; the further choices follow it whole, each with its finish."""
    for kwargs in ({"n": 3, "extra_body": {"blender": {"fusion": "never"}}},
                   {"n": 2, "response_format": {"type": "json_object"}, "extra_body": {"blender": {"models": ["paris", "lyon"]}}}):
        whole = client.chat.completions.create(model="blender", messages=MSG, **kwargs)
        chunks = list(client.chat.completions.create(model="blender", messages=MSG, stream=True, **kwargs))
        texts: dict[int, str] = {}
        finishes: dict[int, str] = {}
        for c in chunks:
            for choice in c.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
                if choice.finish_reason:
                    finishes[choice.index] = choice.finish_reason
        assert texts == {c.index: c.message.content for c in whole.choices}
        assert finishes == {c.index: c.finish_reason for c in whole.choices}
        assert [c.model_extra.get("blender") is not None for c in chunks].count(True) == 1  # the provenance, once
    legacy = list(client.completions.create(model="blender", prompt="Which city?", n=2, stream=True,
                                            extra_body={"blender": {"fusion": "never"}}))
    assert sorted({choice.index for c in legacy for choice in c.choices}) == [0, 1]


@pytest.mark.parametrize("model, kwargs", [("blender", {"n": 5}), ("paris", {"n": 2}), ("paris", {"n": 2, "stream": True})])
def test_n_that_cannot_be_served_is_a_400_naming_n(client, model, kwargs):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=MSG, **kwargs)
    assert info.value.body["param"] == "n"


def test_fields_that_change_nothing_are_accepted(client):
    resp = client.chat.completions.create(model="blender", messages=MSG, metadata={"run": "42"}, store=False, user="u-1",
                                          service_tier="auto", parallel_tool_calls=False, prompt_cache_key="k",
                                          safety_identifier="s")
    assert resp.choices[0].message.content


@pytest.mark.parametrize("kwargs, param, hint", [
    ({"logprobs": True}, "logprobs", "provenance"),
    ({"logprobs": True, "top_logprobs": 2}, "logprobs", "provenance"),
    ({"tools": [TOOL]}, "tools", "response_format"),
    ({"tools": [TOOL], "tool_choice": "required"}, "tools", "response_format"),
    ({"functions": [TOOL["function"]]}, "functions", "response_format"),
])
def test_logprobs_and_tools_on_the_ensemble_are_a_400_naming_the_field(client, kwargs, param, hint):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="blender", messages=MSG, **kwargs)
    body = info.value.body
    assert body["param"] == param and body["code"] == "400" and body["type"] == "invalid_request_error"
    assert f"'{param}'" in body["message"] and hint in body["message"]


@pytest.mark.parametrize("model", ["blender", "paris"])
@pytest.mark.parametrize("kwargs, param", [
    ({"logprobs": 0}, "logprobs"), ({"logprobs": 2}, "logprobs"), ({"echo": True}, "echo"),
    ({"suffix": " and so on."}, "suffix"), ({"best_of": 2}, "best_of"),
])
def test_legacy_completion_fields_that_ask_something_are_a_400_naming_them(client, model, kwargs, param):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=model, prompt="Which city?", **kwargs)
    assert info.value.body["param"] == param and f"'{param}'" in info.value.body["message"]


def test_legacy_completion_fields_that_ask_nothing_are_accepted(client):
    resp = client.completions.create(model="blender", prompt="Which city?", logprobs=None, echo=False, suffix="", best_of=1)
    assert resp.choices[0].text


def test_tools_on_a_base_model_name_its_backend(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="paris", messages=MSG, tools=[TOOL])
    assert info.value.body["param"] == "tools" and "runs on the scripted backend" in info.value.body["message"]


def test_a_base_model_is_asked_for_json_too(client):
    resp = client.chat.completions.create(model="lyon", messages=MSG, response_format={"type": "json_object"})
    assert resp.choices[0].message.content == LYON  # passed through as the model wrote it
    assert "blender" not in (resp.model_extra or {})


# -- the Responses API -----------------------------------------------------------------------

def test_responses_create(client):
    resp = client.responses.create(model="blender", input="Which city?", instructions="Answer in JSON.",
                                   max_output_tokens=50, temperature=0.5, metadata={"a": "b"}, store=False,
                                   extra_body={"blender": {"models": ["paris", "prose"]}})
    assert resp.object == "response" and resp.status == "completed" and resp.output_text
    message = resp.output[0]
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "output_text" and message.content[0].annotations == []
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0
    assert resp.instructions == "Answer in JSON." and resp.max_output_tokens == 50
    assert sorted(c["model"] for c in resp.model_extra["blender"]["candidates"]) == ["paris", "prose"]


def test_responses_with_messages_and_a_json_schema(client):
    resp = client.responses.create(model="blender", input=[{"role": "user", "content": [{"type": "input_text", "text": "City?"}]}],
                                   text={"format": {"type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True}})
    assert set(json.loads(resp.output_text)) == {"city", "country"}
    assert "nice" in resp.model_extra["blender"]["errors"]


def test_responses_streamed(client):
    events = list(client.responses.create(model="blender", input="Which city?", stream=True,
                                          extra_body={"blender": {"models": ["paris", "prose"]}}))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    done = events[-1].response
    assert deltas == done.output_text == events[-4].text and done.status == "completed"
    assert done.model_extra["blender"]["candidates"]


def test_responses_streamed_with_the_progress_event(client):
    asked = {"blender": {"models": ["paris", "prose"]}, "stream_options": {"include_provenance": True}}
    events = list(client.responses.create(model="blender", input="Which city?", stream=True, extra_body=asked))
    kinds = [e.type for e in events]
    at = kinds.index("response.blender.progress")
    assert at < kinds.index("response.output_text.delta") and kinds[-1] == "response.completed"
    progress = events[at].model_extra["blender"]
    assert progress["candidates"] == events[-1].response.model_extra["blender"]["candidates"]
    with client.responses.stream(model="blender", input="Which city?", extra_body=asked) as stream:
        final = stream.get_final_response()
    assert final.output_text and final.status == "completed"


def test_responses_stream_helper_and_incomplete(client):
    with client.responses.stream(model="paris", input="Which city?") as stream:
        final = stream.get_final_response()
    assert final.output_text == PARIS
    cut = client.responses.create(model="nice", input="Which city?", max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("extra", [{"tools": [{"type": "web_search"}]}, {"previous_response_id": "resp_1"},
                                   {"background": True}, {"reasoning": {"effort": "low"}}])
def test_unsupported_responses_features_are_a_400_naming_them(client, extra):
    (param,) = extra
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="blender", input="hi", **extra)
    assert info.value.body["param"] == param and f"'{param}'" in info.value.body["message"]


def test_responses_route_refuses_an_unknown_model(app_url):
    r = httpx.post(f"{app_url}/v1/responses", json={"model": "gpt-9", "input": "hi"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["message"]


# -- LangChain -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chat_model(app_url):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model="blender", base_url=f"{app_url}/v1", api_key="unused", max_retries=0, timeout=60)


def test_langchain_invoke_and_stream(chat_model):
    reply = chat_model.invoke("Which city?")
    assert reply.content and reply.response_metadata["model_name"] == "blender"
    pieces = [chunk.content for chunk in chat_model.stream("Which city?")]
    assert "".join(pieces)


def test_langchain_streams_with_the_progress_chunk(chat_model):
    pieces = [chunk.content for chunk in chat_model.stream("Which city?", stream_options={"include_provenance": True})]
    assert "".join(pieces) == "".join(chunk.content for chunk in chat_model.stream("Which city?"))
    assert "".join(pieces)


def test_langchain_json_mode(chat_model):
    structured = chat_model.with_structured_output(None, method="json_mode")
    answer = structured.invoke("Which city? Answer in JSON.")
    assert answer["country"] == "France"
    bound = chat_model.bind(response_format={"type": "json_object"})
    assert json.loads(bound.invoke("Which city?").content)["country"] == "France"


def test_langchain_structured_output_by_its_default_method(chat_model):
    """``with_structured_output(Model)`` sends a strict json_schema by default (langchain-openai >= 0.3):
    the answer comes back parsed into the model. Function calling, its other method, is refused on the
    ensemble with a 400 that LangChain raises as is."""
    from pydantic import BaseModel, ConfigDict

    class Place(BaseModel):
        model_config = ConfigDict(extra="forbid")
        city: str
        country: str

    place = chat_model.with_structured_output(Place).invoke("Which city? Answer in JSON.")
    assert isinstance(place, Place) and place.country == "France"
    raw = chat_model.with_structured_output(Place, include_raw=True).invoke("Which city?")
    assert raw["parsing_error"] is None and raw["parsed"] == place
    assert raw["raw"].response_metadata["model_name"] == "blender"
    with pytest.raises(openai.BadRequestError) as refused:
        chat_model.with_structured_output(Place, method="function_calling").invoke("Which city?")
    assert refused.value.body["param"] == "tools"


def test_langchain_completions_llm_invoke_and_stream(app_url):
    """LangChain's ``OpenAI`` LLM speaks ``/v1/completions``, streamed or not."""
    from langchain_openai import OpenAI

    llm = OpenAI(model="blender", base_url=f"{app_url}/v1", api_key="unused", max_retries=0, timeout=60)
    answer = llm.invoke("Which city?")
    assert answer and "".join(llm.stream("Which city?")) == answer  # scripted ranker and fuser: deterministic


# -- LiteLLM ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def litellm_mod():
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of the price list
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    return litellm


def test_litellm_plain_streamed_and_json(litellm_mod, app_url):
    common = {"model": "openai/blender", "api_base": f"{app_url}/v1", "api_key": "unused", "messages": MSG,
              "timeout": 60, "num_retries": 0}
    resp = litellm_mod.completion(**common)
    assert resp.choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in litellm_mod.completion(**common, stream=True) if c.choices)
    assert streamed
    as_json = litellm_mod.completion(**common, response_format={"type": "json_object"})
    assert json.loads(as_json.choices[0].message.content)["country"] == "France"
    schema = litellm_mod.completion(**common, response_format=PLACE)
    assert set(json.loads(schema.choices[0].message.content)) == {"city", "country"}


def test_litellm_text_completion_plain_and_streamed(litellm_mod, app_url):
    """``text-completion-openai/`` is LiteLLM's provider for ``/v1/completions``."""
    common = {"model": "text-completion-openai/blender", "api_base": f"{app_url}/v1", "api_key": "unused",
              "prompt": "Which city?", "timeout": 60}
    answer = litellm_mod.text_completion(**common).choices[0].text
    assert answer
    streamed = "".join(c.choices[0].text or "" for c in litellm_mod.text_completion(**common, stream=True) if c.choices)
    assert streamed == answer


def test_a_responses_stream_that_fails_before_its_first_event_gets_a_status_code(app_url):
    body = {"model": "blender", "input": "Which city?", "stream": True, "text": {"format": {"type": "json_object"}},
            "blender": {"models": ["prose"]}}
    r = httpx.post(f"{app_url}/v1/responses", json=body, timeout=60)
    assert r.status_code == 422 and r.headers["content-type"].startswith("application/json")
    assert "prose" in r.json()["error"]["errors"]
