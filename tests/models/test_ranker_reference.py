"""PairRanker scores equal the reference implementation's (llm-blender 0.0.2) on identical weights.

The reference runs here as an oracle (blender_serve.testing.reference) on the same tiny random DeBERTa-v2
ranker saved in the original PairRM layout, in fp32 on CPU, with batch_size=1 so that its
truncation uses each source's own length (its batched collator would use the longest source).
"""

from __future__ import annotations

import numpy as np
import pytest

from blender_serve.testing.reference import import_reference


LONG = " ".join(f"word{i} and more text" for i in range(200))
SOURCES = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    LONG,  # longer than the source budget: truncated, lends no room to candidates
    "Explain [SEP] separators",  # a literal [SEP] is replaced by a space
    "",
]
CANDIDATES = [
    ["Paris.", "The capital of France is Paris, a city on the Seine.", "Rome", "I don't know."],
    ["The sea is wide and blue.", "Waves\nand wind", "sea " * 80, "ocean", "x"],
    ["short", LONG, "medium length answer with some words"],
    ["A [SEP] token splits segments.", "They separate segments."],
    ["empty source, first", "empty source, second", ""],
]


@pytest.fixture(scope="module")
def reference_blender(pairrm_original):
    import_reference()
    from llm_blender.blender.blender import Blender

    blender = Blender()
    blender.loadranker(str(pairrm_original), device="cpu")
    blender.blender_config.use_tqdm = False
    return blender


@pytest.fixture(scope="module")
def ranker(pairrm_original):
    from blender_serve.ranker import PairRanker

    return PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="float32", batch_size=7)


def test_rank_max_logits_scores_match_reference(ranker, reference_blender):
    for source, cands in zip(SOURCES, CANDIDATES):
        expected = reference_blender.rank([source], [cands], return_scores=True, batch_size=1)[0]
        got = ranker.rank(source, cands, strategy="max_logits")
        np.testing.assert_allclose(got.scores, expected, atol=1e-4, rtol=0)
        assert np.abs(expected).max() > 1e-2, "logits too small for the comparison to mean anything"
        ref_ranks = reference_blender.rank([source], [cands], batch_size=1)[0]
        for i in range(len(cands)):
            for j in range(len(cands)):
                if ref_ranks[i] < ref_ranks[j] and expected[i] - expected[j] > 1e-3:  # clear of float noise
                    assert got.ranks[i] < got.ranks[j]


def test_rank_batch_matches_reference_per_source(ranker, reference_blender):
    got = ranker.rank_batch(SOURCES, CANDIDATES)
    for source, cands, result in zip(SOURCES, CANDIDATES, got):
        expected = reference_blender.rank([source], [cands], return_scores=True, batch_size=1)[0]
        np.testing.assert_allclose(result.scores, expected, atol=1e-4, rtol=0)


def test_compare_matches_reference_both_orders(ranker, reference_blender):
    pairs = [(s, c[0], c[1]) for s, c in zip(SOURCES, CANDIDATES)] + [(SOURCES[0], "Paris", LONG)]
    sources, a, b = map(list, zip(*pairs))
    expected = [
        reference_blender.compare([s], [x], [y], return_logits=True, batch_size=1)[0] for s, x, y in pairs
    ]
    np.testing.assert_allclose(ranker.compare_batch(sources, a, b), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ranker.compare(sources[0], a[0], b[0]), expected[0], atol=1e-4, rtol=0)


def test_compare_single_order_matches_reference_ab_mode(ranker, reference_blender):
    for s, cands in zip(SOURCES, CANDIDATES):
        expected = reference_blender.compare([s], [cands[0]], [cands[1]], return_logits=True, batch_size=1, mode="[A,B]")[0]
        assert ranker.compare(s, cands[0], cands[1], mode="single") == pytest.approx(expected, abs=1e-4)


def _bubble_replay(M: np.ndarray, perm: list[int]) -> int:
    champion = perm[0]
    for challenger in perm[1:]:
        d = (M[champion, challenger] - M[challenger, champion])
        champion = champion if d > 0 else challenger
    return champion


def test_bubble_rule_matches_reference(ranker, reference_blender):
    """The reference's bubble walks torch.randperm(n); seeding torch lets us replay its permutation
    with our pairwise matrix and our rule (direction, tie-break) must pick the same winner."""
    import torch

    for seed in range(4):
        for source, cands in zip(SOURCES, CANDIDATES):
            torch.manual_seed(seed)
            torch.empty((), dtype=torch.int64).random_()  # the reference's DataLoader draws its base seed first
            perm = torch.randperm(len(cands)).tolist()
            torch.manual_seed(seed)
            best = reference_blender.get_best_of_n([source], [cands], pairrm_cmp_type="bubble", batch_size=1)[0]
            M = np.array(ranker.rank(source, cands).matrix)
            assert cands[_bubble_replay(M, perm)] == best


def test_bubble_strategy_follows_its_seeded_permutation(ranker):
    cands = CANDIDATES[1]
    M = np.array(ranker.rank(SOURCES[1], cands).matrix)
    for seed in range(5):
        perm = [int(i) for i in np.random.default_rng(seed).permutation(len(cands))]
        bubble = ranker.rank(SOURCES[1], cands, strategy="bubble", seed=seed)
        assert bubble.order[0] == _bubble_replay(M, perm)
        assert bubble.num_forward_pairs == 2 * (len(cands) - 1)
        assert bubble.matrix is None
