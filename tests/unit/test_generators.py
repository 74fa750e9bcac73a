"""The generator interface without a model: the scripted backend, input checks, the registry,
stop-string streaming, and the failure paths of the backends whose engines are not here."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import socket
import subprocess
import sys
import time

import pytest

from blender_serve import (
    ChatMessage,
    GenerationError,
    GeneratorConfig,
    InvalidInputError,
    SamplingParams,
    UnknownModelError,
)
from blender_serve.generators import GENERATORS, Generator, build_generator, register_generator
from blender_serve.stops import StopMatcher, truncate_at_stop
from blender_serve.types import GenerationChunk, Usage

USER = [{"role": "user", "content": "What is the capital of France?"}]


def run(coro):
    return asyncio.run(coro)


def scripted(name="s", sampling=None, system_prompt=None, **options):
    return build_generator(GeneratorConfig(
        name=name, backend="scripted", options=options, sampling=sampling or {}, system_prompt=system_prompt,
    ))


async def collect(gen, messages=USER, params=None) -> list[GenerationChunk]:
    return [chunk async for chunk in gen.stream(messages, params)]


# ------------------------------------------------------------------------------------ scripted
def test_scripted_template_names_model_prompt_and_call():
    gen = scripted(name="alpha", template="{model}#{call}: {prompt}")
    first, second = run(gen.generate(USER)), run(gen.generate([ChatMessage(role="user", content="Hi")]))
    assert first.text == "alpha#0: What is the capital of France?"
    assert second.text == "alpha#1: Hi"
    assert first.model == "alpha" and first.finish_reason == "stop" and gen.calls == 2


def test_scripted_responses_cycle_deterministically():
    gen = scripted(responses=["one", "two", "three"])
    assert [run(gen.generate(USER)).text for _ in range(5)] == ["one", "two", "three", "one", "two"]


def test_scripted_usage_counts_whitespace_tokens_including_system_prompt():
    gen = scripted(responses=["Paris is the capital."], system_prompt="Be brief please")
    out = run(gen.generate(USER))
    assert out.usage == Usage(prompt_tokens=3 + 6, completion_tokens=4)
    assert out.usage.total_tokens == 13


def test_scripted_stream_pieces_join_to_generate_and_end_with_metadata():
    gen = scripted(responses=["  The capital of France\nis Paris.  "])
    chunks = run(collect(gen))
    expected = run(gen.generate(USER))
    assert "".join(c.text for c in chunks) == expected.text == "  The capital of France\nis Paris.  "
    assert len(chunks) == 8  # leading blank, six words, then the metadata chunk
    assert all(c.finish_reason is None and c.usage is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage == expected.usage


def test_scripted_latency_and_token_pace_are_measured():
    gen = scripted(responses=["a b c d e"], latency_s=0.15, token_latency_s=0.04)
    out = run(gen.generate(USER))
    assert out.time_to_first_token_s >= 0.15
    assert out.latency_s >= 0.15 + 4 * 0.04
    assert out.latency_s >= out.time_to_first_token_s


def test_scripted_max_tokens_and_stop_truncate_with_the_right_finish_reason():
    gen = scripted(responses=["one two three four five"], sampling={"max_tokens": 3})
    assert (run(gen.generate(USER)).text, run(gen.generate(USER)).finish_reason) == ("one two three", "length")
    longer = run(gen.generate(USER, SamplingParams(max_tokens=10)))  # the request wins over config
    assert longer.text == "one two three four five" and longer.finish_reason == "stop"
    stopped = run(gen.generate(USER, {"stop": [" thr"], "max_tokens": 10}))
    assert stopped.text == "one two" and stopped.finish_reason == "stop"
    assert "".join(c.text for c in run(collect(gen, params={"stop": "four", "max_tokens": 10}))) == "one two three "


def test_scripted_failures_raise_generation_error_with_cause():
    gen = scripted(fail=True, error_message="model exploded")
    with pytest.raises(GenerationError, match="'s' \\(scripted\\) failed: .*model exploded") as info:
        run(gen.generate(USER))
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(GenerationError, match="model exploded"):
        run(collect(gen))


def test_scripted_fail_every_fails_exactly_every_nth_call():
    gen = scripted(fail_every=3, responses=["ok"])

    async def outcomes():
        results = []
        for _ in range(6):
            try:
                results.append((await gen.generate(USER)).text)
            except GenerationError:
                results.append("failed")
        return results

    assert run(outcomes()) == ["ok", "ok", "failed", "ok", "ok", "failed"]


def test_scripted_fail_after_pieces_fails_mid_stream():
    gen = scripted(fail=True, fail_after_pieces=2, responses=["a b c d"])

    async def consume():
        seen = []
        with pytest.raises(GenerationError):
            async for chunk in gen.stream(USER):
                seen.append(chunk.text)
        return seen

    assert run(consume()) == ["a ", "b "]


def test_scripted_hang_is_only_ended_by_cancellation():
    gen = scripted(hang=True)

    async def attempt():
        started = time.perf_counter()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gen.generate(USER), 0.2)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(collect(gen), 0.2)
        return time.perf_counter() - started

    assert 0.4 <= run(attempt()) < 2.0


def test_activity_counts_calls_and_shows_a_cancelled_call_stopped():
    gen = scripted(template="one two three four five", token_latency_s=0.05)

    async def attempt():
        await gen.generate(USER)
        stream = gen.stream(USER)
        async for _ in stream:
            break  # the consumer leaves after one piece
        await stream.aclose()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(gen.generate(USER), 0.07)

    run(attempt())
    a = gen.activity
    assert (a.in_flight, a.calls, a.succeeded, a.cancelled, a.failed, a.chunks) == (0, 3, 1, 2, 0, 1)


def test_a_failing_call_counts_as_failed():
    gen = scripted(fail=True)
    with pytest.raises(GenerationError):
        run(gen.generate(USER))
    assert (gen.activity.failed, gen.activity.in_flight) == (1, 0)


def test_scripted_engine_that_dies_fails_its_health_check_and_every_later_call():
    gen = scripted(die_after_calls=2)

    async def attempt():
        with pytest.raises(GenerationError, match="not started"):
            await gen.check_health()
        await gen.generate(USER)
        await gen.check_health()  # alive after one call
        await gen.generate(USER)
        with pytest.raises(RuntimeError, match="died after 2 calls"):
            await gen.check_health()
        with pytest.raises(GenerationError, match="engine is dead"):
            await gen.generate(USER)

    run(attempt())


def test_scripted_jitter_is_reproducible_from_the_seed():
    def draws(seed):
        gen = scripted(jitter_s=1.0, seed=seed)
        return [gen._rng.uniform(0, 1) for _ in range(3)]

    assert draws(7) == draws(7) != draws(8)


def test_system_prompt_is_prepended_only_when_the_request_has_none():
    gen = scripted(system_prompt="You are terse.")
    chat, _ = gen.prepare(USER)
    assert [m.role for m in chat] == ["system", "user"] and chat[0].content == "You are terse."
    own = [{"role": "system", "content": "Be verbose."}] + USER
    chat, _ = gen.prepare(own)
    assert [m.content for m in chat] == ["Be verbose.", USER[0]["content"]]


def test_params_merge_over_config_sampling():
    gen = scripted(sampling={"temperature": 0.7, "max_tokens": 5, "stop": ["x"]})
    _, merged = gen.prepare(USER, {"max_tokens": 9})
    assert (merged.temperature, merged.max_tokens, merged.stop) == (0.7, 9, ["x"])
    _, default = gen.prepare(USER)
    assert default == gen.config.sampling and default is not gen.config.sampling


# ------------------------------------------------------------------------------ input checks
BAD_MESSAGES = [
    ([], "empty"),
    ("What is the capital?", "list of chat messages"),
    ({"role": "user", "content": "hi"}, "list of chat messages"),
    (["hi"], r"messages\[0\] is a str"),
    ([{"role": "robot", "content": "hi"}], r"messages\[0\].*role"),
    ([{"role": "user"}], r"messages\[0\].*content"),
    ([{"role": "user", "content": 5}], r"messages\[0\].*content"),
    ([{"role": "user", "content": "hi", "extra": 1}], r"messages\[0\]"),
    ([{"role": "system", "content": "rules"}], "no user turn"),
    ([{"role": "user", "content": "hi"}, {"role": "user", "content": "   "}], r"messages\[1\].*empty content"),
]


@pytest.mark.parametrize("messages,match", BAD_MESSAGES)
def test_bad_messages_raise_invalid_input_saying_what_to_send(messages, match):
    gen = scripted()
    with pytest.raises(InvalidInputError, match=match) as info:
        run(gen.generate(messages))
    assert "role" in str(info.value) or "send" in str(info.value) or "user" in str(info.value)
    # stream() checks at call time, before anything is iterated
    with pytest.raises(InvalidInputError, match=match):
        gen.stream(messages)
    assert gen.calls == 0


@pytest.mark.parametrize("params,match", [
    ("hot", "sampling params is invalid: .*valid dictionary"),
    ({"temperature": -1}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"bogus": 1}, "bogus"),
])
def test_bad_params_raise_invalid_input(params, match):
    gen = scripted()
    with pytest.raises(InvalidInputError, match=match):
        run(gen.generate(USER, params))
    with pytest.raises(InvalidInputError, match=match):
        gen.stream(USER, params)


def test_bad_options_raise_invalid_input_listing_valid_options():
    with pytest.raises(InvalidInputError, match=r"options of the 'scripted' generator 's' is invalid: latncy_s.*valid options: .*latency_s"):
        scripted(latncy_s=1)
    with pytest.raises(InvalidInputError, match="latency_s"):
        scripted(latency_s=-1)
    with pytest.raises(InvalidInputError, match="template may only use"):
        scripted(template="{model} {oops}")
    with pytest.raises(InvalidInputError, match="api_key or api_key_env"):
        build_generator({"name": "o", "backend": "openai", "options": {"base_url": "http://x/v1", "api_key": "k", "api_key_env": "K"}})
    with pytest.raises(InvalidInputError, match="base_url"):
        build_generator({"name": "o", "backend": "openai"})


@pytest.mark.parametrize("backend", ["transformers", "vllm"])
def test_model_backends_require_a_model(backend):
    with pytest.raises(InvalidInputError, match="needs `model`"):
        build_generator({"name": "m", "backend": backend})
    with pytest.raises(InvalidInputError, match="needs `model`"):  # built directly from a dict, too
        GENERATORS[backend]({"name": "m", "backend": backend})


def test_bad_configs_raise_typed_errors():
    with pytest.raises(UnknownModelError, match=r"'nope'.*\['llama_cpp', 'openai', 'scripted', 'transformers', 'vllm'\].*register"):
        build_generator({"name": "x", "backend": "nope"})
    with pytest.raises(InvalidInputError, match="name"):
        build_generator({"backend": "scripted"})
    with pytest.raises(InvalidInputError, match="generator config is invalid: .*GeneratorConfig"):
        build_generator(42)
    with pytest.raises(InvalidInputError, match="generator config is invalid: .*GeneratorConfig"):
        GENERATORS["scripted"](["not", "a", "config"])


# ---------------------------------------------------------------------------------- registry
def test_registry_builds_every_backend_without_starting_it():
    configs = {
        "scripted": {},
        "transformers": {"model": "/nonexistent/checkpoint"},
        "vllm": {"model": "/nonexistent/checkpoint"},
        "openai": {"model": "m", "options": {"base_url": "http://127.0.0.1:9/v1"}},
        "llama_cpp": {"model": "/nonexistent/model.gguf"},
    }
    assert set(GENERATORS) == set(configs)
    for backend, extra in configs.items():
        gen = build_generator({"name": f"g-{backend}", "backend": backend, **extra})
        assert isinstance(gen, GENERATORS[backend]) and gen.backend == backend
        assert gen.name == f"g-{backend}" and not gen.started


def test_importing_and_building_loads_no_heavy_dependency():
    code = (
        "import sys, blender_serve.generators as g\n"
        "for b, extra in [('vllm', {'model': '/m'}), ('transformers', {'model': '/m'}),\n"
        "                 ('openai', {'options': {'base_url': 'http://h/v1'}}), ('scripted', {}), ('llama_cpp', {'model': '/m.gguf'})]:\n"
        "    g.build_generator({'name': b, 'backend': b, **extra})\n"
        "print([m for m in ('vllm', 'torch', 'transformers', 'httpx', 'ray', 'fastapi', 'llama_cpp', 'jinja2') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_register_generator_adds_a_streaming_only_backend():
    @register_generator("echo-test")
    class Echo(Generator):
        async def _stream(self, chat, params):
            for word in chat[-1].content.split():
                yield GenerationChunk(text=word + " ")
            yield GenerationChunk(finish_reason="stop", usage=Usage(completion_tokens=2))

    try:
        gen = build_generator({"name": "e", "backend": "echo-test"})
        out = run(gen.generate([{"role": "user", "content": "hello there"}]))
        assert (out.text, out.finish_reason, out.usage.completion_tokens, out.model) == ("hello there ", "stop", 2, "e")
        assert out.time_to_first_token_s is not None
        with pytest.raises(ValueError, match="already registered"):
            register_generator("echo-test")(type("Other", (Echo,), {}))
        with pytest.raises(TypeError, match="Generator subclasses"):
            register_generator("not-a-generator")(int)
    finally:
        GENERATORS.pop("echo-test", None)


# ----------------------------------------------------------------- backends absent or down here
def _have_vllm() -> bool:
    spec = importlib.util.find_spec("vllm")
    return spec is not None and spec.origin is not None  # not a bare folder that happens to be called vllm


@pytest.mark.skipif(_have_vllm(), reason="vllm is installed in this environment")
def test_vllm_backend_without_vllm_fails_at_start_with_generation_error():
    gen = build_generator({"name": "v", "backend": "vllm", "model": "/m"})
    with pytest.raises(GenerationError, match="'v' \\(vllm\\) could not start: ModuleNotFoundError"):
        run(gen.generate(USER))
    assert not gen.started


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with-block ends: nothing listens there


def test_openai_backend_reports_an_unreachable_server_after_retries():
    gen = build_generator({"name": "o", "backend": "openai", "model": "m", "options": {
        "base_url": f"http://127.0.0.1:{_closed_port()}/v1", "max_retries": 2, "retry_backoff_s": 0.05}})

    async def attempt():
        started = time.perf_counter()
        with pytest.raises(GenerationError, match="could not reach .*/v1/chat/completions: ConnectError"):
            await gen.generate(USER)
        with pytest.raises(GenerationError, match="could not reach"):
            await collect(gen)
        await gen.close()
        return time.perf_counter() - started

    assert run(attempt()) >= 2 * (0.05 + 0.1)  # both calls waited out their two backoffs


def test_openai_backend_needs_its_api_key_env(monkeypatch):
    monkeypatch.delenv("BLENDER_TEST_MISSING_KEY", raising=False)
    gen = build_generator({"name": "o", "backend": "openai", "options": {
        "base_url": "http://127.0.0.1:9/v1", "api_key_env": "BLENDER_TEST_MISSING_KEY"}})
    with pytest.raises(GenerationError, match="BLENDER_TEST_MISSING_KEY is not set"):
        run(gen.start())


def test_openai_raw_body_keeps_the_clients_fields_and_fills_the_configs():
    gen = build_generator({"name": "o", "backend": "openai", "model": "remote", "system_prompt": "Be brief.",
                           "sampling": {"temperature": 0.3, "max_tokens": 50},
                           "options": {"base_url": "http://h/v1", "extra_body": {"cache_prompt": True}}})
    tool_turns = [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]
    body = gen._raw_body({"model": "o", "messages": tool_turns, "tools": [{"type": "function"}], "temperature": 0,
                          "stream": False}, stream=True)
    assert body["messages"] == [{"role": "system", "content": "Be brief."}] + tool_turns  # the client's turns, as sent
    assert body["model"] == "remote" and body["tools"] == [{"type": "function"}] and body["cache_prompt"] is True
    assert body["temperature"] == 0 and body["max_tokens"] == 50  # the client's value wins; the config's fills gaps
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert gen._raw_body({"messages": [], "max_completion_tokens": 7}, stream=False).keys() >= {"max_completion_tokens"}
    assert "max_tokens" not in gen._raw_body({"messages": [], "max_completion_tokens": 7}, stream=False)


def test_other_backends_take_no_raw_chat():
    from blender_serve.errors import UnsupportedParameterError

    assert [name for name, cls in sorted(GENERATORS.items()) if cls.raw_chat] == ["openai"]
    with pytest.raises(UnsupportedParameterError, match="openai backend"):
        run(build_generator({"name": "s", "backend": "scripted"}).chat_raw({"messages": USER}))


def test_upstream_errors_keep_a_clients_4xx_only():
    from blender_serve.errors import UpstreamError
    from blender_serve.generators.openai_backend import _error_detail
    from deployments.errors import to_http_error

    assert _error_detail('{"error": {"message": "too long", "param": "messages"}}') == ("too long", "messages")
    assert _error_detail("Bad Gateway") == ("Bad Gateway", None)
    status, body, _ = to_http_error(UpstreamError("too long", status=400, param="messages"))
    assert status == 400 and body.error.param == "messages" and body.error.message == "too long"
    assert to_http_error(UpstreamError("slow down", status=429))[0] == 429
    for setup_or_server_error in (401, 404, 500):  # this server's key or model id, or the server itself
        assert to_http_error(UpstreamError("x", status=setup_or_server_error))[0] == 503


# ------------------------------------------------------------------------------- stop strings
TEXT = "The answer is 42.\nUser: next question"


@pytest.mark.parametrize("stops", [["\nUser:"], ["42", "answer"], ["zzz"], ["n"], ["question", "\n"]])
def test_stop_matcher_matches_truncate_for_every_split_of_the_text(stops):
    expected, hit = truncate_at_stop(TEXT, stops)
    for step in (1, 2, 3, 5, 7, len(TEXT)):
        matcher = StopMatcher(stops)
        out = "".join(matcher.push(TEXT[i:i + step]) for i in range(0, len(TEXT), step)) + matcher.flush()
        assert (out, matcher.stopped) == (expected, hit), step


def test_stop_matcher_holds_back_only_a_possible_stop_prefix():
    matcher = StopMatcher(["STOP"])
    assert matcher.push("abc ST") == "abc "
    assert matcher.push("AR") == "STAR"
    assert matcher.push("x STO") == "x "
    assert matcher.push("P tail") == "" and matcher.stopped
    assert matcher.push("more") == "" and matcher.flush() == ""
