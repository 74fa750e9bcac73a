"""The vllm backend on a real vLLM AsyncLLM engine (CPU build) serving the tiny Llama checkpoint."""

from __future__ import annotations

import asyncio
import time

import pytest

from blender_serve import GenerationError
from blender_serve.generators import build_generator


USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def engine(loop, causal_lm_dir, tiny_engine):
    gen = build_generator({
        "name": "tiny-vllm", "backend": "vllm", "model": str(causal_lm_dir),
        "sampling": {"temperature": 0, "max_tokens": 24}, "options": tiny_engine,
    })
    started = time.perf_counter()
    loop.run_until_complete(gen.start())
    print(f"vllm engine started in {time.perf_counter() - started:.1f} s")
    yield gen
    loop.run_until_complete(gen.close())


async def collect(gen, messages=USER, params=None):
    return [chunk async for chunk in gen.stream(messages, params)]


def test_greedy_answer_equals_the_transformers_backend(loop, engine, reference):
    out = loop.run_until_complete(engine.generate(USER))
    ref = loop.run_until_complete(reference.generate(USER, {"max_tokens": 24}))
    assert out.model == "tiny-vllm" and out.text.strip()
    # Same tokens; vLLM's detokenizer holds back a trailing incomplete UTF-8 sequence that
    # transformers decodes as U+FFFD (this random model emits stray byte tokens).
    assert (out.usage, out.finish_reason) == (ref.usage, ref.finish_reason)
    assert out.text == ref.text.rstrip("\ufffd")
    assert 0 < out.time_to_first_token_s <= out.latency_s


def test_stream_joins_to_the_generate_text_with_the_same_usage(loop, engine):
    out = loop.run_until_complete(engine.generate(USER))
    chunks = loop.run_until_complete(collect(engine))
    assert "".join(c.text for c in chunks) == out.text and len(chunks) > 2
    assert chunks[-1].usage == out.usage and chunks[-1].finish_reason == out.finish_reason


def test_logprobs_equal_the_transformers_backends(loop, engine, reference):
    """vLLM's own log-probabilities (raw logits) for the same greedy tokens as the transformers
    backend's, which equal a forward pass (tests/models); streamed, the same entries."""
    out = loop.run_until_complete(engine.generate(USER, {"logprobs": 2}))
    ref = loop.run_until_complete(reference.generate(USER, {"max_tokens": 24, "logprobs": 2}))
    assert len(out.logprobs) == len(ref.logprobs) > 0  # an end-of-sequence token has an entry in neither
    assert [e.logprob for e in out.logprobs] == pytest.approx([e.logprob for e in ref.logprobs], abs=2e-3)
    for ours, theirs in zip(out.logprobs, ref.logprobs):
        assert [e.logprob for e in ours.top_logprobs] == pytest.approx([e.logprob for e in theirs.top_logprobs], abs=2e-3)
        assert ours.top_logprobs[0].logprob == ours.logprob
    streamed = [e for c in loop.run_until_complete(collect(engine, USER, {"logprobs": 2})) for e in (c.logprobs or [])]
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in out.logprobs], abs=1e-6)


def test_stop_strings_match_the_transformers_backend(loop, engine, reference):
    full = loop.run_until_complete(engine.generate(USER)).text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    out = loop.run_until_complete(engine.generate(USER, {"stop": [stop]}))
    ref = loop.run_until_complete(reference.generate(USER, {"stop": [stop], "max_tokens": 24}))
    assert out.text == full[: full.find(stop)] == ref.text.rstrip("\ufffd") and out.finish_reason == "stop"


def test_concurrent_requests_batch_without_mixing_outputs(loop, engine):
    lengths = [3, 5, 8, 11, 13, 17, 20, 24]
    sequential_started = time.perf_counter()
    sequential = [loop.run_until_complete(engine.generate(USER, {"max_tokens": n})) for n in lengths]
    sequential_s = time.perf_counter() - sequential_started

    async def together():
        return await asyncio.gather(*(engine.generate(USER, {"max_tokens": n}) for n in lengths))

    batch_started = time.perf_counter()
    batched = loop.run_until_complete(together())
    batch_s = time.perf_counter() - batch_started
    print(f"8 requests: sequential {sequential_s:.2f} s, concurrent {batch_s:.2f} s")
    assert [g.text for g in batched] == [g.text for g in sequential]
    assert [g.usage.completion_tokens for g in batched] == lengths


def test_same_seed_same_sample(loop, engine):
    params = {"temperature": 1.0, "max_tokens": 16}
    a, b, c = (loop.run_until_complete(engine.generate(USER, {**params, "seed": s})).text for s in (5, 5, 6))
    assert a == b != c


def test_cancelling_aborts_the_request_in_the_engine(loop, engine):
    core = engine._engine

    async def scenario():
        stream = engine.stream(USER, {"max_tokens": 400})
        async for _ in stream:
            break
        in_flight = core.get_num_unfinished_requests()
        await stream.aclose()  # the client went away
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(engine.generate(USER, {"max_tokens": 400}), 0.05)
        for _ in range(100):
            if core.get_num_unfinished_requests() == 0:
                break
            await asyncio.sleep(0.01)
        return in_flight, core.get_num_unfinished_requests()

    assert loop.run_until_complete(scenario()) == (1, 0)


def test_engine_kwargs_pass_options_and_engine_args_through():
    gen = build_generator({"name": "v", "backend": "vllm", "model": "/models/m", "options": {
        "gpu_memory_utilization": 0.4, "tensor_parallel_size": 2, "engine_args": {"seed": 3, "dtype": "bfloat16"}}})
    kwargs = gen.engine_kwargs()
    assert kwargs["model"] == "/models/m" and kwargs["gpu_memory_utilization"] == 0.4
    assert kwargs["tensor_parallel_size"] == 2 and kwargs["seed"] == 3 and kwargs["dtype"] == "bfloat16"
    assert "max_model_len" not in kwargs  # unset options stay vLLM's own defaults


def test_an_unknown_engine_arg_fails_at_start_with_generation_error(loop):
    gen = build_generator({"name": "v", "backend": "vllm", "model": "/models/m",
                           "options": {"engine_args": {"no_such_arg": 1}}})
    with pytest.raises(GenerationError, match="'v' \\(vllm\\) could not start: TypeError.*no_such_arg"):
        loop.run_until_complete(gen.start())


def test_a_checkpoint_without_chat_template_gets_the_plain_prompt(loop, causal_lm_dir, tiny_engine, tmp_path):
    import shutil

    plain_dir = tmp_path / "no-template"
    shutil.copytree(causal_lm_dir, plain_dir)
    (plain_dir / "chat_template.jinja").unlink()
    common = {"model": str(plain_dir), "sampling": {"temperature": 0, "max_tokens": 6}}
    engine = build_generator({**common, "name": "plain-vllm", "backend": "vllm", "options": tiny_engine})
    reference = build_generator({**common, "name": "plain-hf", "backend": "transformers",
                                 "options": {"dtype": "float32", "torch_threads": 1}})
    try:
        out = loop.run_until_complete(engine.generate(USER))
        ref = loop.run_until_complete(reference.generate(USER))
    finally:
        loop.run_until_complete(engine.close())
        loop.run_until_complete(reference.close())
    assert out.usage == ref.usage and out.text == ref.text.rstrip("\ufffd")
