"""Fusion through an already-served base model (fuser kind 'generator') on a real local Ray.

The app has no fuser deployment: the ingress sends the fusion prompt to the named base model's
LLMServer, whose replica counts the call. Base model 'lm' is a tiny real causal LM (transformers
backend), greedy, so what the served app fuses can be checked against the library's GeneratorFuser
over the same checkpoint in this process.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from blender_serve.fuser import GeneratorFuser
from blender_serve.generators import build_generator

APP, FLAKY_APP = "viabase", "viabase-flaky"
QUESTION = "What is the capital of France?"
ZERO = {"ray_actor_options": {"num_cpus": 0}}


def _args(generators: list[dict], fuser: dict) -> dict:
    return {"ensemble": {"name": "blender", "generators": generators, "ranker": {"kind": "scripted", "path": "scripted"},
                         "fuser": fuser, "fusion": "always", "top_k": 2, "deadline_s": 30.0},
            "deployments": {**{g["name"]: ZERO for g in generators}, "ranker": ZERO, "ingress": ZERO}}


def _lm(causal_lm_dir) -> dict:
    return {"name": "lm", "backend": "transformers", "model": str(causal_lm_dir),
            "options": {"device": "cpu", "torch_threads": 1}}


ALPHA = {"name": "alpha", "backend": "scripted", "options": {"template": "Paris. {prompt}"}}


@pytest.fixture(scope="module")
def app_url(deploy, causal_lm_dir):
    url = deploy(_args([_lm(causal_lm_dir), ALPHA], {"kind": "generator", "generator": "lm", "max_new_tokens": 10}), APP)
    # The fusion call of the first request fails (every second call of 'flaky' does): the answer degrades.
    flaky = {"name": "flaky", "backend": "scripted", "options": {"template": "flaky: {prompt}", "fail_every": 2}}
    deploy(_args([ALPHA, flaky], {"kind": "generator", "generator": "flaky"}), FLAKY_APP)
    return url


@pytest.fixture(scope="module")
def local_fuser(causal_lm_dir):
    """The library's GeneratorFuser over the same checkpoint, in this process."""
    gen = build_generator(_lm(causal_lm_dir))
    yield GeneratorFuser(gen, max_new_tokens=10)
    asyncio.run(gen.close())


def _calls(deployment: str, app: str = APP) -> int:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=app).stats.remote().result(timeout_s=10)["calls"]


def _chat(url: str, stream: bool = False) -> httpx.Response:
    body = {"model": "blender", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 8, "stream": stream}
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_no_fuser_deployment_is_created(app_url):
    from ray import serve

    assert set(serve.status().applications[APP].deployments) == {"llm-lm", "llm-alpha", "ranker", "ingress"}
    assert httpx.get(f"{app_url}/health", timeout=10).json()["fuser"] is True


def test_a_blended_answer_is_fused_by_the_base_models_replica(app_url, local_fuser):
    before = _calls("llm-lm")
    r = _chat(app_url)
    assert r.status_code == 200, r.text
    body = r.json()
    prov = body["blender"]
    assert prov["fused"] and set(prov["chosen"]) == {"lm", "alpha"} and not prov["degraded"]
    assert _calls("llm-lm") == before + 2  # its candidate, then the fusion
    texts = {c["model"]: c["text"] for c in prov["candidates"]}
    expected = asyncio.run(local_fuser.afuse(QUESTION, "", [texts[m] for m in prov["chosen"]], sampling={"max_tokens": 8}))
    assert body["choices"][0]["message"]["content"] == expected.text
    candidate_tokens = sum(c["usage"]["completion_tokens"] for c in prov["candidates"])
    assert body["usage"]["completion_tokens"] == candidate_tokens + expected.usage.completion_tokens


def test_streaming_fuses_through_the_base_model(app_url):
    one_shot = _chat(app_url).json()["choices"][0]["message"]["content"]
    before = _calls("llm-lm")
    r = _chat(app_url, stream=True)
    assert r.status_code == 200
    frames = [json.loads(line[len("data: "):]) for line in r.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(c["delta"].get("content") or "" for f in frames for c in f["choices"])
    assert text == one_shot  # greedy all the way: the same answer, streamed
    assert [f["blender"]["fused"] for f in frames if f.get("blender")] == [True]
    assert _calls("llm-lm") == before + 2


def test_the_fuse_route_goes_to_the_base_model(app_url, local_fuser):
    req = {"instruction": "Name a colour.", "candidates": ["red", "blue is a colour"], "max_new_tokens": 6}
    before = _calls("llm-lm")
    r = httpx.post(f"{app_url}/v1/fuse", json=req, timeout=60)
    assert r.status_code == 200, r.text
    expected = local_fuser.fuse("Name a colour.", "", ["red", "blue is a colour"], max_new_tokens=6)
    assert r.json()["text"] == expected.text and r.json()["usage"] == expected.usage.model_dump()
    streamed = httpx.post(f"{app_url}/v1/fuse", json={**req, "stream": True}, timeout=60)
    assert streamed.status_code == 200 and streamed.text == expected.text
    assert _calls("llm-lm") == before + 2
    bad = httpx.post(f"{app_url}/v1/fuse", json={**req, "num_beams": 4}, timeout=60)
    assert bad.status_code == 400 and "one sequence" in bad.text


def test_a_failed_fusion_answers_unfused(app_url, ray_cluster):
    r = _chat(f"{ray_cluster}/{FLAKY_APP}")
    assert r.status_code == 200, r.text
    prov = r.json()["blender"]
    assert not prov["fused"] and prov["degraded"] == ["unfused"]
    assert "simulated" in prov["errors"]["fuser"] or "scripted failure" in prov["errors"]["fuser"]
    assert _calls("llm-flaky", FLAKY_APP) == 2
