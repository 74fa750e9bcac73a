"""The transformers fusers' opt-in decoding modes (``FuserConfig.decoding``). 'static' decodes
exactly the tokens of transformers' default cache, call after call (its caches are reused), in
batches and streams; 'compiled' sends the decoding loop through torch.compile and still does.
CPU, float32, on the tiny talkative gen_fuser; the inductor + CUDA graphs path is GPU-only."""

from __future__ import annotations

import asyncio

import pytest

from blender_serve.config import FuserConfig
from blender_serve.errors import InvalidInputError
from blender_serve.fuser import GenFuser, PromptedFuser, build_fuser
from blender_serve.hf_generation import StaticDecoding

ITEMS = [
    ("Answer the question.", "What is the capital of France?",
     ["Paris is the capital of France.", "The capital is Paris, a city on the Seine.", "Rome"]),
    ("", "Explain why the sky is blue in one sentence.", ["light scatters in the air", "blue light scatters more"]),
    ("Write a short poem about the sea and the wind.", "", ["The sea and the wind", "wind, sea"]),
]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _answer(out):
    return out.text, out.usage, out.finish_reason


async def _pieces(stream):
    return [chunk async for chunk in stream]


@pytest.fixture(scope="module")
def dynamic(talkative_fuser_dir):
    return GenFuser.from_pretrained(str(talkative_fuser_dir), device="cpu", max_new_tokens=16)


@pytest.fixture(scope="module")
def static(talkative_fuser_dir):
    return GenFuser.from_pretrained(str(talkative_fuser_dir), device="cpu", max_new_tokens=16, decoding="static")


@pytest.fixture
def counted_compile(monkeypatch):
    """'compiled' decoding on torch.compile's aot_eager backend (traced and functionalised like
    inductor's input, in seconds on CPU); yields the graphs it compiled."""
    import torch
    from torch._dynamo.backends.registry import lookup_backend

    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return lookup_backend("aot_eager")(gm, example_inputs)

    monkeypatch.setattr(StaticDecoding, "backend", staticmethod(backend))
    yield graphs
    torch._dynamo.reset()


@pytest.mark.parametrize("beams", [1, 4])
def test_static_decoding_writes_the_same_tokens_as_the_default(dynamic, static, beams):
    # ITEMS[0] twice: the second call reuses (and resets) the cache of the first.
    for item in [*ITEMS, ITEMS[0]]:
        assert _answer(static.fuse(*item, num_beams=beams)) == _answer(dynamic.fuse(*item, num_beams=beams))


def test_static_decoding_reuses_one_cache_per_shape(static):
    caches = static._worker._static._caches
    static.fuse(*ITEMS[1], num_beams=4)
    cache = caches[next(reversed(caches))]
    static.fuse(*ITEMS[1], num_beams=4)
    assert caches[next(reversed(caches))] is cache  # same tensors: what a CUDA graph needs
    assert len(caches) <= StaticDecoding.keep


@pytest.mark.parametrize("beams", [1, 4])
def test_static_fuse_batch_equals_the_default(dynamic, static, beams):
    ours = [_answer(o) for o in static.fuse_batch(ITEMS, num_beams=beams)]
    assert ours == [_answer(o) for o in dynamic.fuse_batch(ITEMS, num_beams=beams)]
    assert len({text for text, _, _ in ours}) == len(ITEMS)  # varied text: the equality means something


def test_static_stream_joins_to_the_greedy_text(dynamic, static):
    for item in ITEMS[:2]:
        chunks = asyncio.run(_pieces(static.stream(*item)))
        one_shot = dynamic.fuse(*item, num_beams=1)
        assert "".join(c.text for c in chunks) == one_shot.text
        assert (chunks[-1].usage, chunks[-1].finish_reason) == (one_shot.usage, one_shot.finish_reason)


def test_static_decoding_on_a_causal_fuser(causal_lm_dir):
    # Left-padded prompts and a plain (not encoder-decoder) static cache.
    dyn = PromptedFuser.from_pretrained(str(causal_lm_dir), device="cpu", max_new_tokens=12)
    sta = PromptedFuser.from_pretrained(str(causal_lm_dir), device="cpu", max_new_tokens=12, decoding="static")
    for beams in (1, 3):
        assert [_answer(o) for o in sta.fuse_batch(ITEMS, num_beams=beams)] == \
               [_answer(o) for o in dyn.fuse_batch(ITEMS, num_beams=beams)]


def test_compiled_decoding_runs_the_loop_compiled_and_writes_the_same_tokens(talkative_fuser_dir, dynamic,
                                                                             counted_compile):
    compiled = GenFuser.from_pretrained(str(talkative_fuser_dir), device="cpu", max_new_tokens=16, decoding="compiled")
    assert _answer(compiled.fuse(*ITEMS[0], num_beams=1)) == _answer(dynamic.fuse(*ITEMS[0], num_beams=1))
    assert counted_compile, "the decoding steps never went through torch.compile"
    for beams in (1, 4):  # prompts padded to a multiple of 64: the same answers still
        assert [_answer(o) for o in compiled.fuse_batch(ITEMS[:2], num_beams=beams)] == \
               [_answer(o) for o in dynamic.fuse_batch(ITEMS[:2], num_beams=beams)]
    chunks = asyncio.run(_pieces(compiled.stream(*ITEMS[1])))
    assert "".join(c.text for c in chunks) == dynamic.fuse(*ITEMS[1], num_beams=1).text


def test_config_decoding_reaches_the_fuser_and_bad_values_are_rejected(talkative_fuser_dir, static):
    from pydantic import ValidationError

    fuser = build_fuser(FuserConfig(path=str(talkative_fuser_dir), device="cpu", max_new_tokens=4, decoding="static"))
    assert (fuser.decoding, fuser._worker.decoding) == ("static", "static")
    assert FuserConfig(path="x").decoding == "dynamic"
    with pytest.raises(ValidationError):
        FuserConfig(path="x", decoding="fast")
    with pytest.raises(InvalidInputError, match="decoding must be one of"):
        GenFuser(static.model, static.tokenizer, decoding="fast")


@pytest.mark.gpu
def test_compiled_decoding_with_inductor_and_cuda_graphs_on_cuda(talkative_fuser_dir):
    """GPU-only: 'compiled' on cuda is inductor with CUDA graphs (mode 'reduce-overhead'), which these
    CPU machines cannot run; inductor's CPU build of the same graphs alone takes about a minute here."""
    import torch

    item = ITEMS[0]
    dyn = GenFuser.from_pretrained(str(talkative_fuser_dir), device="cuda", dtype="float32", max_new_tokens=12)
    com = GenFuser.from_pretrained(str(talkative_fuser_dir), device="cuda", dtype="float32", max_new_tokens=12,
                                   decoding="compiled")
    try:
        for beams in (1, 4):
            first, again = com.fuse(*item, num_beams=beams), com.fuse(*item, num_beams=beams)  # compiles, then replays
            assert _answer(first) == _answer(again) == _answer(dyn.fuse(*item, num_beams=beams))
    finally:
        torch._dynamo.reset()
