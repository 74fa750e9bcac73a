"""The ranked Progress of a streamed answer, without Ray: the pipeline yields it once, between ranking
and the first piece (``BlendStream.events``); the one-shot call and plain iteration ignore it; over
HTTP it is a chunk with no choices (``stream_options.include_provenance``) or a
``response.blender.progress`` event, and only when asked."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from blender_serve.pipeline import Blender
from blender_serve.types import Progress
from deployments.config import AppArgs
from deployments.router import app, current_serving
from deployments.serving import BlenderServing

ENSEMBLE = {
    "name": "blender", "fusion": "always", "top_k": 2, "deadline_s": 5,
    "generators": [
        {"name": "alpha", "backend": "scripted", "options": {"template": "alpha says: {prompt}", "latency_s": 0.02}},
        {"name": "beta", "backend": "scripted", "options": {"template": "beta gives a longer answer about {prompt}"}},
        {"name": "broken", "backend": "scripted", "options": {"fail": True, "error_message": "simulated outage"}}],
    "ranker": {"kind": "scripted", "path": "scripted"},
    "fuser": {"kind": "scripted", "path": "scripted", "max_new_tokens": 6},
}
CHAT = {"model": "blender", "messages": [{"role": "user", "content": "Why is the sky blue?"}], "stream": True}


def _same(a, b) -> bool:
    return [(c.model, c.text, c.score, c.rank, c.chosen, c.time_to_first_token_s) for c in a] == \
        [(c.model, c.text, c.score, c.rank, c.chosen, c.time_to_first_token_s) for c in b]


def test_the_stream_yields_the_ranking_before_the_first_piece_and_blend_ignores_it():
    async def run():
        blender = Blender(ENSEMBLE)
        stream = blender.stream("Why is the sky blue?")
        events = [e async for e in stream.events()]
        plain = blender.stream("Why is the sky blue?")
        pieces = [p async for p in plain]
        return events, stream, pieces, plain, await blender.blend("Why is the sky blue?")

    events, stream, pieces, plain, one_shot = asyncio.run(run())
    assert isinstance(events[0], Progress) and all(isinstance(e, str) for e in events[1:])
    progress, result = events[0], stream.result
    assert stream.progress is progress and progress.stage == "ranked" and progress.will_fuse
    assert progress.chosen == result.chosen and _same(progress.candidates, result.candidates)
    assert progress.matrix == result.matrix and progress.strategy == result.strategy
    assert progress.errors == {"broken": result.errors["broken"]} and set(progress.timings) == {"generate_s", "rank_s"}
    assert "".join(events[1:]) == result.text == "".join(pieces) == one_shot.text  # plain iteration: text only
    assert plain.progress is not None and plain.result is not None
    alpha = next(c for c in result.candidates if c.model == "alpha")
    assert 0.02 <= alpha.time_to_first_token_s <= alpha.latency_s


def test_a_skipped_fusion_is_known_before_the_answer():
    async def run():
        stream = Blender(ENSEMBLE).stream("hi", {"fusion": "never"})
        return [e async for e in stream.events()], stream.result

    (progress, *pieces), result = asyncio.run(run())
    assert not progress.will_fuse and progress.chosen == [] and not any(c.chosen for c in progress.candidates)
    assert progress.fusion_skipped_reason == result.fusion_skipped_reason == "fusion disabled for this request"
    assert pieces == [result.candidates[0].text]


@pytest.fixture(scope="module")
def client():
    args = AppArgs.model_validate({"ensemble": ENSEMBLE})
    serving = BlenderServing(args, Blender(args.ensemble))
    app.dependency_overrides[current_serving] = lambda: serving
    yield TestClient(app, raise_server_exceptions=False)
    app.dependency_overrides.pop(current_serving, None)


def _events(client, path: str, body: dict) -> list[dict]:
    with client.stream("POST", path, json=body) as r:
        assert r.status_code == 200, r.read()
        lines = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]" or path.endswith("responses")
    return [json.loads(line) for line in lines if line != "[DONE]"]


def test_chat_progress_chunk_comes_after_the_role_and_before_any_text(client):
    chunks = _events(client, "/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True,
                                                                                   "include_provenance": True}})
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    progress = chunks[1]
    assert progress["choices"] == [] and progress["blender"]["stage"] == "ranked" and "usage" not in progress
    assert progress["object"] == "chat.completion.chunk" and progress["id"] == chunks[0]["id"]
    texts = [i for i, c in enumerate(chunks) if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert texts and texts[0] > 1
    final = next(c["blender"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"])
    assert progress["blender"]["candidates"] == final["candidates"] and progress["blender"]["matrix"] == final["matrix"]
    assert progress["blender"]["will_fuse"] and progress["blender"]["chosen"] == final["chosen"]
    assert all(c["time_to_first_token_s"] is not None for c in final["candidates"])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] and "blender" not in chunks[-1]


def test_without_the_knob_the_chat_stream_is_unchanged(client):
    for options in (None, {"include_usage": True}, {"include_usage": True, "include_provenance": False}):
        chunks = _events(client, "/v1/chat/completions", {**CHAT, **({"stream_options": options} if options else {})})
        empty = [c for c in chunks if c["choices"] == []]
        assert empty == ([chunks[-1]] if options else []) and all("blender" not in c for c in empty)
        assert [c for c in chunks if "blender" in c] == [chunks[-2 if options else -1]]
        assert "stage" not in chunks[-2 if options else -1]["blender"]


def test_the_knob_on_a_base_model_changes_nothing(client):
    chunks = _events(client, "/v1/chat/completions", {**CHAT, "model": "alpha", "stream_options": {"include_provenance": True}})
    assert all(c["choices"] for c in chunks) and not any("blender" in c for c in chunks)


def test_responses_progress_event(client):
    body = {"model": "blender", "input": "Why is the sky blue?", "stream": True}
    kinds = [e["type"] for e in _events(client, "/v1/responses", body)]
    assert "response.blender.progress" not in kinds
    events = _events(client, "/v1/responses", {**body, "stream_options": {"include_provenance": True}})
    kinds = [e["type"] for e in events]
    at = kinds.index("response.blender.progress")
    assert kinds[:at] == ["response.created", "response.in_progress", "response.output_item.added",
                          "response.content_part.added"] and kinds[at + 1] == "response.output_text.delta"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[at]["blender"]["candidates"] == events[-1]["response"]["blender"]["candidates"]
