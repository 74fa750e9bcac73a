"""blender_serve.compat.Blender returns what llm_blender.Blender returns, for the same calls."""

from __future__ import annotations

import numpy as np
import pytest

from blender_serve import compat
from blender_serve.errors import BlenderError, InvalidInputError
from blender_serve.testing.reference import import_reference


INPUTS = ["What is the capital of France?", "Write a haiku about rain."]
INSTRUCTIONS = ["Answer briefly. ", ""]
CANDS = [["Paris", "Lyon", "It is Paris, on the Seine."], ["rain falls soft", "drip drop", "clouds weep on the roofs"]]


@pytest.fixture(scope="module")
def both(pairrm_original, talkative_fuser_dir):
    import_reference()
    from llm_blender.blender.blender import Blender as RefBlender

    ref = RefBlender()
    ref.blender_config.use_tqdm = False
    ref.loadranker(str(pairrm_original), device="cpu")
    ref.loadfuser(str(talkative_fuser_dir), device="cpu", torch_dtype="float32")
    ours = compat.Blender()
    ours.loadranker(str(pairrm_original), device="cpu")
    ours.loadfuser(str(talkative_fuser_dir), device="cpu")
    return ref, ours


def test_rank_returns_reference_ranks_and_scores(both):
    ref, ours = both
    for ins in (None, INSTRUCTIONS):
        for k in range(len(INPUTS)):  # one input per call: the reference's truncation is then per source too
            args = ([INPUTS[k]], [CANDS[k]])
            kw = {"instructions": [ins[k]] if ins else None}
            np.testing.assert_allclose(ours.rank(*args, return_scores=True, **kw), ref.rank(*args, return_scores=True, batch_size=1, **kw), atol=1e-4)
            got = ours.rank(*args, **kw)
            assert got.dtype == np.int32 and np.array_equal(got, ref.rank(*args, batch_size=1, **kw))


def test_compare_modes_match_reference(both):
    ref, ours = both
    a, b = [c[0] for c in CANDS], [c[2] for c in CANDS]
    for mode in ("[A,B]", "[B,A]", "[A,B]+[B,A]"):
        expected = np.concatenate([ref.compare([i], [x], [y], return_logits=True, mode=mode, batch_size=1) for i, x, y in zip(INPUTS, a, b)])
        np.testing.assert_allclose(ours.compare(INPUTS, a, b, return_logits=True, mode=mode), expected, atol=1e-4)
        assert np.array_equal(ours.compare(INPUTS, a, b, mode=mode), expected > 0)


def test_get_best_of_n_full_matches_reference(both):
    ref, ours = both
    for k in range(len(INPUTS)):
        assert ours.get_best_of_n([INPUTS[k]], [CANDS[k]], pairrm_cmp_type="full") == ref.get_best_of_n([INPUTS[k]], [CANDS[k]], pairrm_cmp_type="full", batch_size=1)
    best = ours.get_best_of_n(INPUTS, CANDS)
    assert all(b in c for b, c in zip(best, CANDS))
    everything = ours.get_best_of_n(INPUTS, CANDS, return_all=True)
    assert [sorted(x) for x in everything] == [sorted(c) for c in CANDS] and [e[0] for e in everything] == best


def test_fuse_matches_reference_greedy(both):
    ref, ours = both
    kwargs = {"num_beams": 1, "max_new_tokens": 6}
    fused = ours.fuse(INPUTS, CANDS, instructions=INSTRUCTIONS, **kwargs)
    assert fused == ref.fuse(INPUTS, CANDS, instructions=INSTRUCTIONS, batch_size=1, **kwargs)
    assert all(t.strip() for t in fused) and fused[0] != fused[1]  # real, input-dependent texts


@pytest.mark.parametrize("return_scores", [False, True])
def test_rank_and_fuse_matches_reference(both, return_scores):
    ref, ours = both
    kwargs = {"top_k": 2, "num_beams": 1, "max_new_tokens": 6, "return_scores": return_scores}
    for k in range(len(INPUTS)):  # one input per call, as above
        args = ([INPUTS[k]], [CANDS[k]])
        fused, ranked = ours.rank_and_fuse(*args, instructions=[INSTRUCTIONS[k]], **kwargs)
        ref_fused, ref_ranked = ref.rank_and_fuse(*args, instructions=[INSTRUCTIONS[k]], batch_size=1, **kwargs)
        assert fused == ref_fused and fused[0].strip()
        np.testing.assert_allclose(ranked, ref_ranked, atol=1e-4)
    fused, ranks = ours.rank_and_fuse(INPUTS, CANDS, **{**kwargs, "return_scores": False})  # several inputs at once
    assert ranks.dtype == np.int32 and ranks.shape == (len(INPUTS), 3) and len(fused) == len(INPUTS)


def test_errors():
    fresh = compat.Blender()
    with pytest.raises(BlenderError, match="loadranker"):
        fresh.rank(INPUTS, CANDS)
    with pytest.raises(BlenderError, match="loadfuser"):
        fresh.fuse(INPUTS, CANDS)


def test_bad_input(both):
    _, ours = both
    with pytest.raises(InvalidInputError):
        ours.compare(INPUTS, ["a"], ["b", "c"])
    with pytest.raises(InvalidInputError):
        ours.rank(INPUTS, CANDS, instructions=["only one"])
    with pytest.raises(InvalidInputError):
        ours.compare(INPUTS, ["a", "b"], ["b", "c"], mode="[B,B]")
    with pytest.raises(InvalidInputError):
        ours.rank("not a list", CANDS)
