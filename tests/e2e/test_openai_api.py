"""The served ensemble through the official openai client, over real HTTP on a real local cluster."""

from __future__ import annotations

import httpx
import openai
import pytest


@pytest.fixture(scope="module")
def client(blender_app):
    return openai.OpenAI(base_url=f"{blender_app}/v1", api_key="unused", max_retries=0, timeout=60)


def test_models_lists_the_ensemble_and_every_base_model(client):
    ids = {m.id for m in client.models.list().data}
    assert ids == {"blender", "alpha", "beta", "broken", "slow"}


def test_chat_completion_with_provenance(client):
    resp = client.chat.completions.create(model="blender", messages=[{"role": "user", "content": "Why is the sky blue?"}])
    assert resp.object == "chat.completion" and resp.choices[0].message.content
    prov = resp.model_extra["blender"]
    models = [c["model"] for c in prov["candidates"]]
    assert sorted(models) == ["alpha", "beta"]
    assert [c["rank"] for c in prov["candidates"]] == [1, 2]
    assert prov["fused"] is True and sorted(prov["chosen"]) == ["alpha", "beta"]
    assert "simulated outage" in prov["errors"]["broken"] and "deadline" in prov["errors"]["slow"]
    assert set(prov["timings"]) >= {"generate_s", "rank_s", "fuse_s", "total_s"}
    per_model = sum(c["usage"]["completion_tokens"] for c in prov["candidates"])
    assert resp.usage.completion_tokens > per_model  # + the fuser's tokens
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_chat_completion_streams_sse_chunks_that_add_up_to_the_one_shot_answer(client):
    request = {"model": "blender", "messages": [{"role": "user", "content": "Name a colour"}],
               "extra_body": {"blender": {"models": ["alpha", "beta"]}}}  # the app's fuser is greedy: deterministic
    one_shot = client.chat.completions.create(**request)
    chunks = list(client.chat.completions.create(**request, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == one_shot.choices[0].message.content and finishes == [one_shot.choices[0].finish_reason]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage == one_shot.usage  # the fuser's tokens included
    final = [c for c in chunks if c.model_extra.get("blender")]
    assert len(final) == 1 and final[0].model_extra["blender"]["fused"] is True
    ranked = [(c["model"], c["score"], c["rank"]) for c in final[0].model_extra["blender"]["candidates"]]
    assert ranked == [(c["model"], c["score"], c["rank"]) for c in one_shot.model_extra["blender"]["candidates"]]


def test_the_progress_chunk_comes_before_the_answer_with_the_final_candidates(client):
    request = {"model": "blender", "messages": [{"role": "user", "content": "Name a colour"}], "stream": True,
               "stream_options": {"include_usage": True, "include_provenance": True},
               "extra_body": {"blender": {"models": ["alpha", "beta", "broken"]}}}
    chunks = list(client.chat.completions.create(**request))
    progress = [i for i, c in enumerate(chunks) if not c.choices and (c.model_extra or {}).get("blender")]
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content)
    assert len(progress) == 1 and progress[0] < first_text
    ranked = chunks[progress[0]].model_extra["blender"]
    final = next(c.model_extra["blender"] for c in chunks if c.choices and c.choices[0].finish_reason)
    assert ranked["stage"] == "ranked" and ranked["will_fuse"] is True and ranked["chosen"] == final["chosen"]
    assert ranked["candidates"] == final["candidates"] and ranked["matrix"] == final["matrix"]
    assert "simulated outage" in ranked["errors"]["broken"] and set(ranked["timings"]) == {"generate_s", "rank_s"}
    assert all(c["time_to_first_token_s"] is not None for c in final["candidates"])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and not chunks[-1].model_extra.get("blender")


def test_without_the_knob_the_stream_has_no_progress_chunk(client):
    request = {"model": "blender", "messages": [{"role": "user", "content": "Name a colour"}], "stream": True,
               "extra_body": {"blender": {"models": ["alpha", "beta"]}}}
    plain = list(client.chat.completions.create(**request))
    assert all(c.choices for c in plain)
    with_usage = list(client.chat.completions.create(**request, stream_options={"include_usage": True}))
    assert [i for i, c in enumerate(with_usage) if not c.choices] == [len(with_usage) - 1]
    for chunks in (plain, with_usage):
        carrying = [c.model_extra["blender"] for c in chunks if (c.model_extra or {}).get("blender")]
        assert len(carrying) == 1 and "stage" not in carrying[0] and carrying[0]["fused"] is True


def test_single_model_pass_through(client):
    resp = client.chat.completions.create(model="alpha", messages=[{"role": "user", "content": "ping"}])
    assert resp.choices[0].message.content == "alpha says: ping"
    assert "blender" not in (resp.model_extra or {})
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="beta", stream=True, messages=[{"role": "user", "content": "ping"}]) if c.choices]
    assert "".join(pieces) == "beta gives a longer answer about ping"


def test_completions_route(client):
    resp = client.completions.create(model="blender", prompt="Say hi", extra_body={"blender": {"fusion": "never"}})
    assert resp.choices[0].text in ("alpha says: Say hi", "beta gives a longer answer about Say hi")


def test_completions_stream_adds_up_to_the_one_shot_answer(client):
    request = {"model": "blender", "prompt": "Name a colour", "extra_body": {"blender": {"models": ["alpha", "beta"]}}}
    one_shot = client.completions.create(**request)
    chunks = list(client.completions.create(**request, stream=True,
                                            stream_options={"include_usage": True, "include_provenance": True}))
    assert all(c.object == "text_completion" and c.id == chunks[0].id for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == one_shot.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == \
        [one_shot.choices[0].finish_reason]
    progress = [i for i, c in enumerate(chunks) if not c.choices and (c.model_extra or {}).get("blender")]
    first_text = next(i for i, c in enumerate(chunks) if c.choices and c.choices[0].text)
    assert len(progress) == 1 and progress[0] < first_text
    final = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert final.model_extra["blender"]["fused"] is True
    assert chunks[-1].choices == [] and chunks[-1].usage == one_shot.usage
    base = list(client.completions.create(model="beta", prompt="ping", max_tokens=2, stream=True))
    assert "".join(c.choices[0].text for c in base) == "beta gives" and base[-1].choices[0].finish_reason == "length"
    assert not any((c.model_extra or {}).get("blender") for c in base)


def test_ensemble_options_in_the_extension_field(client):
    resp = client.chat.completions.create(model="blender", messages=[{"role": "user", "content": "hi"}],
                                          extra_body={"blender": {"models": ["alpha", "beta"], "fusion": "never", "strategy": "bubble"}})
    prov = resp.model_extra["blender"]
    assert prov["fused"] is False and prov["strategy"] == "bubble" and prov["errors"] == {}
    assert resp.choices[0].message.content == prov["candidates"][0]["text"]


def test_too_few_candidates_is_503_with_retry_after(blender_app):
    r = httpx.post(f"{blender_app}/v1/chat/completions", timeout=30, json={
        "model": "blender", "messages": [{"role": "user", "content": "hi"}], "blender": {"models": ["broken"]}})
    assert r.status_code == 503 and r.headers.get("retry-after")
    assert "simulated outage" in r.json()["error"]["errors"]["broken"]


def test_health(blender_app):
    r = httpx.get(f"{blender_app}/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


def test_max_tokens_bounds_the_fused_answer_over_http(client):
    messages = [{"role": "user", "content": "Name a colour"}]
    body = {"blender": {"models": ["alpha", "beta"]}}
    full = client.chat.completions.create(model="blender", messages=messages, extra_body=body)
    short = client.chat.completions.create(model="blender", messages=messages, max_tokens=3, extra_body=body)

    def fused_tokens(resp):
        return resp.usage.completion_tokens - sum(c["usage"]["completion_tokens"] for c in resp.model_extra["blender"]["candidates"])

    assert fused_tokens(full) == 8 and full.choices[0].finish_reason == "length"  # the app's fuser cap
    assert fused_tokens(short) == 3 and short.choices[0].finish_reason == "length"
    assert short.model_extra["blender"]["fused"] and len(short.choices[0].message.content) < len(full.choices[0].message.content)


def test_streamed_pass_through_reports_the_model_finish_reason(client):
    request = {"model": "beta", "messages": [{"role": "user", "content": "ping"}], "max_tokens": 2}
    one_shot = client.chat.completions.create(**request)
    assert (one_shot.choices[0].message.content, one_shot.choices[0].finish_reason) == ("beta gives", "length")
    chunks = list(client.chat.completions.create(**request, stream=True))
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


def test_response_ids_carry_the_serve_request_id(blender_app):
    for path, body, prefix in [("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, "chatcmpl"),
                               ("/v1/completions", {"prompt": "hi"}, "cmpl")]:
        r = httpx.post(f"{blender_app}{path}", timeout=60, json={"model": "alpha", **body})
        assert r.status_code == 200 and r.json()["id"] == f"{prefix}-{r.headers['x-request-id']}"


def test_responses_are_typed_in_the_openapi_schema(blender_app):
    schemas = httpx.get(f"{blender_app}/openapi.json", timeout=10).json()["components"]["schemas"]
    assert {"ChatCompletionResponse", "CompletionResponse", "RankResponse", "ModelList", "Provenance"} <= set(schemas)


def test_a_stream_that_fails_before_its_first_piece_gets_a_status_code(blender_app):
    for path, body in [("/v1/chat/completions", {"model": "blender", "stream": True, "blender": {"models": ["broken"]},
                                                 "messages": [{"role": "user", "content": "hi"}]}),
                       ("/v1/completions", {"model": "blender", "stream": True, "blender": {"models": ["broken"]},
                                            "prompt": "hi"}),
                       ("/v1/fuse", {"instruction": "q", "candidates": ["a", "b"], "stream": True, "num_beams": 4})]:
        r = httpx.post(f"{blender_app}{path}", timeout=60, json=body)
        assert r.status_code in (400, 503) and r.json()["error"]["message"], r.text
        assert r.headers["content-type"].startswith("application/json")
