"""Fusers on tiny real checkpoints: gen_fuser input (against the reference), generation, batching,
streaming, errors. The pure helpers are tested in test_fuser_units.py."""

from __future__ import annotations

import asyncio
import time
from unittest.mock import ANY

import pytest

from blender_serve.config import FuserConfig
from blender_serve.errors import CheckpointError, GenerationError, InvalidInputError
from blender_serve.fuser import FUSE_SUFFIX, GenFuser, PromptedFuser, build_fuser
from blender_serve.types import SamplingParams

CANDS = ["Paris is the capital of France.", "The capital is Paris, a city on the Seine.", "Rome"]
ITEMS = [
    ("Answer the question.", "What is the capital of France?", CANDS),
    ("", "Explain why the sky is blue in one sentence.", ["light scatters in the air", "blue light scatters more"]),
    ("Write a short poem about the sea and the wind.", "", ["The sea and the wind", "wind, sea"]),
]
LONG = "Large language models answer questions, write code and summarise text. " * 60  # ~2000 tokens with the tiny vocabulary


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- fixtures ----------------------------------------------------------------------------------



@pytest.fixture(scope="module")
def gen_fuser(talkative_fuser_dir):
    return GenFuser.from_pretrained(str(talkative_fuser_dir), device="cpu", max_new_tokens=12)


@pytest.fixture(scope="module")
def prompted(causal_lm_dir):
    return PromptedFuser.from_pretrained(str(causal_lm_dir), device="cpu", max_new_tokens=12)


@pytest.fixture(scope="module")
def reference_ids(gen_fuser_dir):
    """The reference's GenFuserDataset ids (padding dropped) for one item."""
    from transformers import AutoTokenizer

    from blender_serve.testing.reference import import_reference

    import_reference()
    from llm_blender.blender.blender_utils import GenFuserDataset

    tokenizer = AutoTokenizer.from_pretrained(gen_fuser_dir)

    def ids(instruction, input, candidates, max_length=1024, candidate_max_length=128):
        dataset = GenFuserDataset([input], [list(candidates)], tokenizer, max_length, candidate_max_length,
                                  instructions=[instruction])
        item = dataset[0]
        return item["input_ids"][item["attention_mask"].bool()].tolist()

    return ids


# -- GenFuser input ----------------------------------------------------------------------------

@pytest.mark.parametrize("instruction, input, candidates", [
    *ITEMS,
    ("Write.", "Say hello.\nTwice!", ["héllo wörld 1 2 3", LONG, "hello hello"]),  # one candidate cut
    ("", "What is 1 + 2?", ["3"]),
])
def test_input_ids_equal_reference_when_they_fit(gen_fuser, reference_ids, instruction, input, candidates):
    ours = gen_fuser.build_input_ids(instruction, input, candidates)
    assert ours == reference_ids(instruction, input, candidates)
    assert len(ours) <= 1024


def test_candidate_cut_matches_reference_and_appends_ellipsis(gen_fuser, reference_ids):
    fuser = GenFuser(gen_fuser.model, gen_fuser.tokenizer, candidate_max_length=8)
    cands = ["The capital of France is Paris. The capital of Italy is Rome.", "Rome"]
    ours = fuser.build_input_ids("Answer.", "Capitals?", cands)
    assert ours == reference_ids("Answer.", "Capitals?", cands, candidate_max_length=8)
    text = fuser.tokenizer.decode(ours)
    assert "..." in text and "Italy" not in text and ":Rome</s>" in text.replace(" ", "")


def test_long_input_keeps_the_final_line_and_cuts_candidates_first(gen_fuser, reference_ids):
    tok = gen_fuser.tokenizer
    suffix = tok.encode(FUSE_SUFFIX, add_special_tokens=False)
    instruction, input, cands = "Answer the question.", "What do language models do", [LONG, LONG + LONG, "Rome"]
    for max_length in (1024, 400, 200):
        fuser = GenFuser(gen_fuser.model, tok, max_length=max_length, candidate_max_length=1024)
        ids = fuser.build_input_ids(instruction, input, cands)
        assert max_length - 8 <= len(ids) <= max_length  # cut to fit, not far below it
        assert ids[-len(suffix):] == suffix
        text = tok.decode(ids)
        assert "Instruction: Answer the question.</s>" in text and "What do language models do</s>" in text
        assert text.count("...") == 2 and ":Rome</s>" in text.replace(" ", "")
    # The two long candidates were cut evenly: same length, give or take the tokenizer's merges.
    cand_parts = [p for p in tok.decode(ids).split("</s>") if p.strip().startswith("Candidate")]
    n0, n1 = (len(tok.encode(p, add_special_tokens=False)) for p in cand_parts[:2])
    assert abs(n0 - n1) <= 3
    # The reference right-truncates the same input and loses that line: the deliberate difference.
    ref = reference_ids(instruction, input, cands, max_length=300, candidate_max_length=1024)
    assert len(ref) == 300 and ref[-len(suffix):] != suffix


def test_huge_input_is_cut_after_candidates_reach_their_floor(gen_fuser):
    fuser = GenFuser(gen_fuser.model, gen_fuser.tokenizer, max_length=200)
    ids = fuser.build_input_ids("Answer.", LONG, [LONG, LONG])
    text = gen_fuser.tokenizer.decode(ids)
    assert len(ids) <= 200 and text.endswith("for the given instruction:")
    assert text.count("...") == 3  # input and both candidates cut
    with pytest.raises(InvalidInputError, match="fewer candidates or raise max_length"):
        GenFuser(gen_fuser.model, gen_fuser.tokenizer, max_length=60).build_input_ids("Answer.", "x", ["a"] * 6)


def test_too_many_candidates_for_the_extra_ids(gen_fuser):
    assert gen_fuser.max_candidates == 100
    with pytest.raises(InvalidInputError, match="at most 100 candidates"):
        gen_fuser.fuse("q", "", ["a"] * 101)


# -- GenFuser generation -----------------------------------------------------------------------

def test_fuse_is_deterministic_text_and_counts_usage(gen_fuser):
    import torch

    out = gen_fuser.fuse(*ITEMS[0], num_beams=1)
    assert out.text.strip() and out.latency_s > 0
    assert out == gen_fuser.fuse(*ITEMS[0], num_beams=1).model_copy(update={"latency_s": out.latency_s})
    prompt = gen_fuser.build_input_ids(*ITEMS[0])
    assert out.usage.prompt_tokens == len(prompt)
    # Independent count: run generate by hand and count tokens up to the first eos.
    with torch.inference_mode():
        raw = gen_fuser.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, num_beams=1)[0, 1:].tolist()
    eos = gen_fuser.tokenizer.eos_token_id
    assert out.usage.completion_tokens == (raw.index(eos) + 1 if eos in raw else len(raw))
    assert out.text == gen_fuser.tokenizer.decode(raw, skip_special_tokens=True)
    beams = gen_fuser.fuse(*ITEMS[0])  # the default: 4 beams, checked against transformers' own beam search
    with torch.inference_mode():
        raw = gen_fuser.model.generate(input_ids=torch.tensor([prompt]), max_new_tokens=12, num_beams=4)[0, 1:].tolist()
    assert beams.text == gen_fuser.tokenizer.decode(raw, skip_special_tokens=True) and beams.text.strip()
    assert 1 <= beams.usage.completion_tokens <= 12
    assert gen_fuser.fuse(*ITEMS[0], num_beams=1, max_new_tokens=3).usage.completion_tokens <= 3
    # Counting stops at eos whatever pads a finished row (seq2seq rows start with the decoder start).
    rows = torch.tensor([[0, 5, eos, 0, 0], [0, 5, 6, 7, 8], [0, eos, 9, eos, 0]])
    assert gen_fuser._worker._completions(rows, prompt_width=99) == [[5, eos], [5, 6, 7, 8], [eos]]


def test_overrides_temperature_zero_is_greedy_and_seed_repeats_samples(gen_fuser):
    # temperature 0 turns sampling off and leaves the beam width alone (default 4 beams).
    assert gen_fuser.fuse(*ITEMS[1], temperature=0, top_p=None).text == gen_fuser.fuse(*ITEMS[1]).text
    greedy = gen_fuser.fuse(*ITEMS[1], num_beams=1).text
    assert gen_fuser.fuse(*ITEMS[1], temperature=0, num_beams=1, top_p=0.5).text == greedy
    a = gen_fuser.fuse(*ITEMS[1], temperature=1.0, seed=7).text
    assert a == gen_fuser.fuse(*ITEMS[1], temperature=1.0, seed=7).text
    samples = {gen_fuser.fuse(*ITEMS[1], do_sample=True, temperature=2.0, seed=s).text for s in range(4)}
    assert len(samples) > 1  # sampling really samples
    with pytest.raises(InvalidInputError, match="unknown generation settings"):
        gen_fuser.fuse(*ITEMS[1], beam_size=2)


@pytest.mark.parametrize("fuser_name", ["gen_fuser", "prompted"])
def test_fuse_batch_equals_per_item_fuse(request, fuser_name):
    fuser = request.getfixturevalue(fuser_name)
    batch = fuser.fuse_batch(ITEMS, num_beams=1)
    singles = [fuser.fuse(*item, num_beams=1) for item in ITEMS]
    assert [b.text for b in batch] == [s.text for s in singles]
    assert [b.usage for b in batch] == [s.usage for s in singles]
    assert len({s.text for s in singles}) == len(ITEMS)  # outputs depend on the input
    with pytest.raises(InvalidInputError):
        fuser.fuse_batch([])
    with pytest.raises(InvalidInputError, match="candidate 0"):
        fuser.fuse_batch([ITEMS[0], ("q", "", [None])])


# -- streaming and async -----------------------------------------------------------------------

async def _collect(stream):
    return [chunk.text async for chunk in stream if chunk.text]


async def _chunks(stream):
    return [chunk async for chunk in stream]


@pytest.mark.parametrize("fuser_name", ["gen_fuser", "prompted"])
def test_stream_joins_to_the_greedy_one_shot_text(request, fuser_name):
    fuser = request.getfixturevalue(fuser_name)
    for item in ITEMS:
        pieces = asyncio.run(_collect(fuser.stream(*item, max_new_tokens=24)))
        assert "".join(pieces) == fuser.fuse(*item, num_beams=1, max_new_tokens=24).text
        if fuser_name == "gen_fuser":
            # A real stream, not one final string. (The tiny causal LM writes no spaces, so the
            # streamer rightly holds its text until the end; the cancellation test covers it.)
            assert len(pieces) > 1
    with pytest.raises(InvalidInputError, match="beam search cannot stream"):
        fuser.stream(*ITEMS[0], num_beams=4)  # raised at the call, before iterating
    with pytest.raises(InvalidInputError, match="no candidates"):
        fuser.stream("q", "", [])


@pytest.mark.parametrize("fuser_name", ["gen_fuser", "prompted"])
def test_stream_ends_with_the_usage_and_finish_reason_of_the_one_shot_call(request, fuser_name):
    fuser = request.getfixturevalue(fuser_name)
    for item in ITEMS:
        chunks = asyncio.run(_chunks(fuser.stream(*item, max_new_tokens=24)))
        one_shot = fuser.fuse(*item, num_beams=1, max_new_tokens=24)
        assert all(c.usage is None and c.finish_reason is None for c in chunks[:-1])
        assert chunks[-1].usage == one_shot.usage and chunks[-1].usage.completion_tokens > 0
        assert chunks[-1].finish_reason == one_shot.finish_reason


def test_request_sampling_bounds_the_answer_with_the_fuser_as_cap(gen_fuser):
    greedy = gen_fuser.fuse(*ITEMS[0], num_beams=1)  # the fixture's cap: 12 new tokens
    assert greedy.usage.completion_tokens == 12 and greedy.finish_reason == "length"
    short = gen_fuser.fuse(*ITEMS[0], SamplingParams(max_tokens=3), num_beams=1)
    assert short.usage.completion_tokens == 3 and greedy.text.startswith(short.text.rstrip())
    assert gen_fuser.fuse(*ITEMS[0], SamplingParams(max_tokens=10_000), num_beams=1) == greedy.model_copy(
        update={"latency_s": ANY})  # the request cannot raise the operator's cap
    # A stop string cuts the answer, one-shot and streamed alike, and ends it with finish 'stop'.
    item, full = next((i, o) for i, o in ((i, gen_fuser.fuse(*i, num_beams=1)) for i in ITEMS) if len(o.text.split()) >= 3)
    stop = full.text.split()[1]
    expected = full.text[:full.text.index(stop)]
    cut = gen_fuser.fuse(*item, SamplingParams(stop=[stop]), num_beams=1)
    assert (cut.text, cut.finish_reason) == (expected, "stop")
    chunks = asyncio.run(_chunks(gen_fuser.stream(*item, SamplingParams(stop=[stop]))))
    assert "".join(c.text for c in chunks) == expected and chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage.completion_tokens < full.usage.completion_tokens  # the generation ended early


def test_cancelled_stream_stops_generation(gen_fuser):
    import copy

    import torch

    model = copy.deepcopy(gen_fuser.model)
    with torch.no_grad():
        model.lm_head.weight[gen_fuser.tokenizer.eos_token_id] = 0.0  # logit 0 is never the max: no end
    endless = GenFuser(model, gen_fuser.tokenizer)

    async def consume_then_cancel():
        first = asyncio.Event()

        async def consume():
            async for _ in endless.stream(*ITEMS[0], max_new_tokens=20000):  # minutes if not stopped
                first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The model's one worker thread is free again: a short call gets through at once, which it
        # could not if the 20000-token generation were still running.
        t0 = time.monotonic()
        out = await asyncio.wait_for(endless.afuse(*ITEMS[0], num_beams=1, max_new_tokens=2), 30)
        assert out.usage.completion_tokens == 2 and time.monotonic() - t0 < 10

    asyncio.run(consume_then_cancel())
    assert endless.fuse(*ITEMS[0], num_beams=1).usage.completion_tokens == 128


def test_cancelled_afuse_stops_generation(gen_fuser):
    import copy

    import torch

    model = copy.deepcopy(gen_fuser.model)
    with torch.no_grad():
        model.lm_head.weight[gen_fuser.tokenizer.eos_token_id] = 0.0
    endless = GenFuser(model, gen_fuser.tokenizer)

    async def deadline_then_call_again():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(endless.afuse(*ITEMS[0], num_beams=1, max_new_tokens=20000), 1.0)
        t0 = time.monotonic()
        out = await asyncio.wait_for(endless.afuse(*ITEMS[0], num_beams=1, max_new_tokens=2), 30)
        return out, time.monotonic() - t0

    out, waited = asyncio.run(deadline_then_call_again())
    assert out.usage.completion_tokens == 2 and waited < 10


def test_stream_reports_a_failing_generation_instead_of_hanging(gen_fuser):
    class BrokenIds(GenFuser):
        def build_input_ids(self, instruction, input, candidates):
            return [10**6]  # outside the vocabulary: the real embedding lookup fails in the worker

    broken = BrokenIds(gen_fuser.model, gen_fuser.tokenizer)
    with pytest.raises(GenerationError, match="fuser"):
        asyncio.run(asyncio.wait_for(_collect(broken.stream(*ITEMS[0])), 30))
    with pytest.raises(GenerationError):
        broken.fuse(*ITEMS[0])


def test_afuse_keeps_the_event_loop_free(gen_fuser):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        tick = asyncio.create_task(ticker())
        outs = await asyncio.gather(*(gen_fuser.afuse(*item, num_beams=1, max_new_tokens=24) for item in ITEMS))
        tick.cancel()
        return outs, ticks

    outs, ticks = asyncio.run(main())
    assert [o.text for o in outs] == [gen_fuser.fuse(*i, num_beams=1, max_new_tokens=24).text for i in ITEMS]
    assert ticks > 5


# -- PromptedFuser -----------------------------------------------------------------------------

def test_prompted_prompt_uses_chat_template_and_numbers_candidates(prompted):
    tok = prompted.tokenizer
    message = prompted.format_prompt(*ITEMS[0])
    assert "## Answer 1\nParis is the capital" in message and "## Answer 3\nRome" in message
    assert "Answer the question.\n\nWhat is the capital of France?" in message
    ids = prompted.build_input_ids(*ITEMS[0])
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    out = prompted.fuse(*ITEMS[0])
    assert out.usage.prompt_tokens == len(ids) and 1 <= out.usage.completion_tokens <= 12
    # Causal rows repeat the (left-padded) prompt: counting starts after it and stops at eos.
    import torch

    eos, pad = tok.eos_token_id, tok.pad_token_id
    rows = torch.tensor([[pad, 7, 5, eos, pad], [7, 8, 5, 6, 9]])
    assert prompted._worker._completions(rows, prompt_width=2) == [[5, eos], [5, 6, 9]]
    assert out == prompted.fuse(*ITEMS[0]).model_copy(update={"latency_s": out.latency_s})  # greedy default


def test_prompted_limits_and_templates(prompted):
    tok, model = prompted.tokenizer, prompted.model
    # The default prompt alone is ~250 tokens with the tiny vocabulary.
    small = PromptedFuser(model, tok, max_length=400, candidate_max_length=1000, system_prompt="Be brief.")
    ids = small.build_input_ids("Answer the question.", "What do models do?", [LONG, LONG, "Rome"])
    text = tok.decode(ids)
    assert 392 <= len(ids) <= 400 and text.endswith("<|im_start|>assistant\n")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert "What do models do?" in text and "Rome" in text and text.count("...") == 2
    custom = PromptedFuser(model, tok, template="Q: {instruction} {input}\n{candidates}\nBest:",
                           candidate_template="- {text}\n")
    assert custom.format_prompt("Hi?", "", ["a", "b"]) == "Q: Hi? \n- a\n- b\nBest:"
    assert custom.fuse("Hi?", "", ["a", "b"]).text == custom.fuse("Hi?", "", ["a", "b"]).text
    for bad in ("no candidates field", "{candidates} {nope}", "{candidates"):
        with pytest.raises(InvalidInputError):
            PromptedFuser(model, tok, template=bad)


def test_prompted_without_chat_template_uses_a_plain_prompt(causal_lm_dir, prompted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(causal_lm_dir)
    tok.chat_template = None
    plain = PromptedFuser(prompted.model, tok, max_new_tokens=5)
    text = tok.decode(plain.build_input_ids(*ITEMS[0]))
    assert "<|im_start|>user" not in text and text.endswith("Answer:\n")
    import torch

    ids = plain.build_input_ids(*ITEMS[0])
    with torch.inference_mode():
        raw = plain.model.generate(input_ids=torch.tensor([ids]), max_new_tokens=5, do_sample=False)[0, len(ids):].tolist()
    assert plain.fuse(*ITEMS[0]).text == tok.decode(raw, skip_special_tokens=True)


# -- building from configs ---------------------------------------------------------------------

def test_build_fuser_and_from_config(gen_fuser_dir, causal_lm_dir):
    import torch

    seq = build_fuser(FuserConfig(kind="seq2seq", path=str(gen_fuser_dir), device="cpu", max_new_tokens=5,
                                  num_beams=2, candidate_max_length=16, max_length=512))
    assert isinstance(seq, GenFuser) and seq.model.dtype == torch.float32
    assert (seq.num_beams, seq.max_new_tokens, seq.candidate_max_length, seq.max_length) == (2, 5, 16, 512)
    assert seq.fuse(*ITEMS[0]).usage.completion_tokens == 5  # the fixture never emits eos
    causal = build_fuser(FuserConfig(kind="causal", path=str(causal_lm_dir), device="cpu", dtype="bfloat16"))
    assert isinstance(causal, PromptedFuser) and causal.num_beams == 1 and causal.model.dtype == torch.bfloat16
    assert PromptedFuser.from_config(FuserConfig(kind="causal", path=str(causal_lm_dir), num_beams=3)).num_beams == 3
    with pytest.raises(InvalidInputError, match="kind"):
        GenFuser.from_config(FuserConfig(kind="causal", path=str(causal_lm_dir)))
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        build_fuser(FuserConfig(path=str(gen_fuser_dir / "missing"), device="cpu"))
    with pytest.raises(CheckpointError, match="cannot load"):
        build_fuser(FuserConfig(path=str(gen_fuser_dir.parent), device="cpu"))  # a directory, but no model
