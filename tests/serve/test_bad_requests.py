"""Malformed requests get a 4xx OpenAI-style error body, and the endpoint keeps serving afterwards."""

from __future__ import annotations

import httpx
import pytest


MSG = [{"role": "user", "content": "hi"}]
CHAT = "/v1/chat/completions"

BAD = [
    ("bad json", CHAT, b"{not json", 400),
    ("json array body", CHAT, [1, 2], 400),
    ("missing model", CHAT, {"messages": MSG}, 400),
    ("missing messages", CHAT, {"model": "blender"}, 400),
    ("empty messages", CHAT, {"model": "blender", "messages": []}, 400),
    ("messages not a list", CHAT, {"model": "blender", "messages": "hi"}, 400),
    ("unknown role", CHAT, {"model": "blender", "messages": [{"role": "robot", "content": "hi"}]}, 400),
    ("content wrong type", CHAT, {"model": "blender", "messages": [{"role": "user", "content": 5}]}, 400),
    ("empty last message", CHAT, {"model": "blender", "messages": [{"role": "user", "content": "   "}]}, 400),
    ("no user turn", CHAT, {"model": "blender", "messages": [{"role": "system", "content": "be nice"}]}, 400),
    ("unknown model", CHAT, {"model": "gpt-9", "messages": MSG}, 404),
    ("oversized prompt", CHAT, {"model": "blender", "messages": [{"role": "user", "content": "x" * 5000}]}, 400),
    ("too many messages", CHAT, {"model": "blender", "messages": MSG * 9}, 400),
    ("negative max_tokens", CHAT, {"model": "blender", "messages": MSG, "max_tokens": -3}, 400),
    ("max_tokens over limit", CHAT, {"model": "blender", "messages": MSG, "max_tokens": 100000}, 400),
    ("temperature out of range", CHAT, {"model": "blender", "messages": MSG, "temperature": 7}, 400),
    ("n > 1", CHAT, {"model": "blender", "messages": MSG, "n": 3}, 400),
    ("unknown top-level field", CHAT, {"model": "blender", "messages": MSG, "colour": "blue"}, 400),
    ("unknown ensemble option", CHAT, {"model": "blender", "messages": MSG, "blender": {"turbo": True}}, 400),
    ("unknown base model in options", CHAT, {"model": "blender", "messages": MSG, "blender": {"models": ["nope"]}}, 404),
    ("unknown strategy", CHAT, {"model": "blender", "messages": MSG, "blender": {"strategy": "vibes"}}, 400),
    ("top_k over models", CHAT, {"model": "blender", "messages": MSG, "blender": {"top_k": 99}}, 400),
    ("zero deadline", CHAT, {"model": "blender", "messages": MSG, "blender": {"deadline_s": 0}}, 400),
    ("ensemble options on a base model", CHAT, {"model": "alpha", "messages": MSG, "blender": {"top_k": 1}}, 400),
    ("streamed completions", "/v1/completions", {"model": "blender", "prompt": "hi", "stream": True}, 400),
    ("two prompts", "/v1/completions", {"model": "blender", "prompt": ["a", "b"]}, 400),
    ("rank one candidate", "/v1/rank", {"source": "q", "candidates": ["only"]}, 400),
    ("rank too many candidates", "/v1/rank", {"source": "q", "candidates": ["c"] * 7}, 400),
    ("rank non-string candidate", "/v1/rank", {"source": "q", "candidates": ["a", 3]}, 400),
    ("compare missing b", "/v1/compare", {"source": "q", "candidate_a": "x"}, 400),
    ("fuse no candidates", "/v1/fuse", {"instruction": "q", "candidates": []}, 400),
    ("fuse nothing to answer", "/v1/fuse", {"candidates": ["a"]}, 400),
]


@pytest.mark.parametrize("name, path, body, status", BAD, ids=[b[0] for b in BAD])
def test_malformed_request_gets_4xx_error_body(blender_app, name, path, body, status):
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {"json": body}
    r = httpx.post(f"{blender_app}{path}", timeout=30, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"] and err["code"] == str(status)


def test_endpoint_still_serves_after_the_bad_requests(blender_app):
    r = httpx.post(f"{blender_app}{CHAT}", timeout=60, json={"model": "blender", "messages": MSG, "blender": {"models": ["alpha", "beta"]}})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert sorted(c["model"] for c in r.json()["blender"]["candidates"]) == ["alpha", "beta"]
