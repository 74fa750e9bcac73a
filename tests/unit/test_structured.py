"""JSON answers (``response_format``): what counts as one, the instruction the models get, the
filter before ranking, and the in-process pipeline with scripted components."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from blender_serve import structured
from blender_serve.errors import InvalidInputError, NoValidAnswerError
from blender_serve.pipeline import Blender
from blender_serve.types import ChatMessage, Generation, ResponseFormat, SamplingParams

OBJECT = ResponseFormat(type="json_object")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "pop": {"type": "integer"}},
          "required": ["city"], "additionalProperties": False}
PLACE = ResponseFormat(type="json_schema", json_schema={"name": "place", "schema": SCHEMA, "strict": True})


@pytest.mark.parametrize("text, expected", [
    ('{"city": "Paris"}', '{"city": "Paris"}'),
    ('  {"city": "Paris"}\n', '{"city": "Paris"}'),
    ('```json\n{"city": "Paris"}\n```', '{"city": "Paris"}'),
    ('Here you go:\n```\n{"city": "Paris"}\n```\nAnything else?', '{"city": "Paris"}'),
    ('The answer is {"city": "Paris"} as asked.', '{"city": "Paris"}'),
])
def test_json_object_answers_are_cut_to_their_json(text, expected):
    assert structured.check_answer(text, OBJECT) == (expected, None)


@pytest.mark.parametrize("text", ["Paris", "", "[1, 2]", '"Paris"', '{"city": "Paris"', "```json\n{'city': 'Paris'}\n```", "null"])
def test_what_is_not_one_json_object(text):
    found, why = structured.check_answer(text, OBJECT)
    assert found is None and why == "is not a JSON object"


@pytest.mark.parametrize("text, problem", [
    ('{"pop": 3}', "'city' is a required property"),
    ('{"city": "Paris", "pop": "many"}', "(at /pop)"),
    ('{"city": "Paris", "mayor": "x"}', "Additional properties"),
])
def test_schema_violations_say_what_and_where(text, problem):
    found, why = structured.check_answer(text, PLACE)
    assert found is None and why.startswith("does not match the JSON schema") and problem in why


def test_a_valid_schema_answer_passes_and_text_format_asks_nothing():
    assert structured.check_answer('{"city": "Paris", "pop": 2}', PLACE) == ('{"city": "Paris", "pop": 2}', None)
    assert structured.requested(SamplingParams(response_format={"type": "text"})) is None
    assert structured.requested(None) is None and structured.requested(SamplingParams(response_format=OBJECT)) == OBJECT


def test_a_schema_that_is_not_json_schema_is_bad_input():
    with pytest.raises(InvalidInputError, match="not a valid JSON Schema"):
        structured.check_format(ResponseFormat(type="json_schema", json_schema={"name": "x", "schema": {"type": 5}}))
    structured.check_format(PLACE)
    structured.check_format(None)


def test_json_schema_needs_its_schema_and_only_then():
    with pytest.raises(ValueError):
        ResponseFormat(type="json_schema")
    with pytest.raises(ValueError):
        ResponseFormat(type="json_object", json_schema={"name": "x", "schema": {}})
    assert PLACE.model_dump()["json_schema"]["schema"] == SCHEMA  # the OpenAI field name, for pass-through


def test_the_instruction_joins_the_system_prompt_or_leads_a_new_one():
    user = ChatMessage(role="user", content="hi")
    plain = structured.instructed([user], OBJECT)
    assert [m.role for m in plain] == ["system", "user"] and "JSON object" in plain[0].content
    merged = structured.instructed([ChatMessage(role="system", content="Be brief."), user], PLACE)
    assert [m.role for m in merged] == ["system", "user"] and merged[0].content.startswith("Be brief.\n\n")
    assert json.dumps(SCHEMA, separators=(",", ":")) in merged[0].content and "'place'" in merged[0].content
    assert structured.instructed([user], None) == [user]


def test_keep_valid_reports_what_it_drops_and_raises_when_nothing_is_left():
    gens = [Generation(model="a", text="```json\n{\"city\": \"Rome\"}\n```"), Generation(model="b", text="Rome"),
            Generation(model="c", text='{"town": "Rome"}')]
    errors: dict[str, str] = {"d": "timed out"}
    kept = structured.keep_valid(gens, PLACE, errors)
    assert [(g.model, g.text) for g in kept] == [("a", '{"city": "Rome"}')]
    assert set(errors) == {"b", "c", "d"} and "not a JSON object" in errors["b"] and "'city'" in errors["c"]
    with pytest.raises(NoValidAnswerError) as info:
        structured.keep_valid(gens[1:], PLACE, {})
    assert set(info.value.errors) == {"b", "c"}


def test_jsonschema_is_imported_only_to_check_a_schema():
    code = ("import sys, blender_serve.structured as s; from blender_serve.types import ResponseFormat as F; "
            "s.check_answer('{}', F(type='json_object')); print('jsonschema' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


# -- the pipeline, in process ----------------------------------------------------------------

def _blender(fuser_words: int = 128) -> Blender:
    gens = [{"name": "paris", "backend": "scripted", "options": {"responses": ['{"city": "Paris"}']}},
            {"name": "fenced", "backend": "scripted", "options": {"responses": ['```json\n{"city": "Lyon", "pop": 5}\n```']}},
            {"name": "prose", "backend": "scripted", "options": {"responses": ["Paris, surely."]}}]
    return Blender({"generators": gens, "ranker": {"kind": "scripted", "path": "scripted"},
                    "fuser": {"kind": "scripted", "path": "scripted", "max_new_tokens": fuser_words},
                    "fusion": "always", "top_k": 2})


def test_the_pipeline_ranks_only_valid_answers_and_fuses_valid_json():
    result = asyncio.run(_blender().blend("Which city?", sampling={"response_format": {"type": "json_object"}}))
    assert sorted(c.model for c in result.candidates) == ["fenced", "paris"] and "prose" in result.errors
    assert result.fused and json.loads(result.text) in ({"city": "Paris"}, {"city": "Lyon", "pop": 5})


def test_an_invalid_fusion_gives_way_to_the_best_valid_candidate_streamed_or_not():
    blender = _blender(fuser_words=1)  # the fuser writes one word: never a whole JSON object
    result = asyncio.run(blender.blend("Which city?", sampling={"response_format": {"type": "json_object"}}))
    assert not result.fused and result.degraded == ["unfused"] and "fused answer" in result.errors["fuser"]
    assert result.text == result.candidates[0].text and "did not match response_format" in result.fusion_skipped_reason

    async def streamed():
        stream = blender.stream("Which city?", sampling={"response_format": {"type": "json_object"}})
        return [piece async for piece in stream], stream.result

    pieces, final = asyncio.run(streamed())
    assert pieces == [final.text] and not final.fused  # checked whole: one piece


def test_the_pipeline_without_a_format_is_unchanged():
    result = asyncio.run(_blender().blend("Which city?", options={"fusion": "never"}))
    assert len(result.candidates) == 3 and result.errors == {}


def test_the_openai_backend_forwards_the_format_for_the_server_to_enforce():
    from blender_serve.generators import build_generator

    gen = build_generator({"name": "remote", "backend": "openai", "options": {"base_url": "http://127.0.0.1:9/v1"}})
    body = gen._body([ChatMessage(role="user", content="hi")], SamplingParams(response_format=PLACE), stream=False)
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA, "strict": True}}
    assert "response_format" not in gen._body([ChatMessage(role="user", content="hi")], SamplingParams(), stream=False)
