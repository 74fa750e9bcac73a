"""Ranks from scores: one function, defined from the scores, ties as the reference breaks them.

Every place that turns a ranking into 1-based ranks (RankResult.ranks, the /v1/rank response, the
candidates of a blend, the compat API) goes through ``blender_serve.ordering.ranks_from_scores``.
"""

from __future__ import annotations

import numpy as np

from blender_serve.ordering import order_from_scores, ranks_from_scores
from blender_serve.types import RankResult


def test_ranks_are_whole_when_order_was_cut_by_top_k():
    scores = [0.1, 0.5, -1.0, 2.0, 0.3]
    cut = RankResult(order=order_from_scores(scores)[:2], scores=scores, strategy="max_logits")
    assert cut.order == [3, 1]
    assert cut.ranks == [4, 2, 5, 1, 3]  # one rank per candidate, not per kept position
    assert RankResult(order=[1, 0], scores=[0.2, 0.9, 0.5], strategy="max_logits").ranks == [3, 1, 2]


def test_ranks_agree_with_the_order_of_the_scores():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 12):
        scores = rng.normal(size=n).tolist()
        ranks = ranks_from_scores(scores)
        assert [ranks[i] for i in order_from_scores(scores)] == list(range(1, n + 1))


def test_ties_share_the_better_rank_like_the_reference():
    from blender_serve.testing.reference import import_reference

    import_reference()
    from llm_blender.gpt_eval.utils import get_ranks_from_scores

    rng = np.random.default_rng(1)
    for _ in range(50):
        scores = rng.integers(0, 4, size=int(rng.integers(1, 9))).astype(float)  # many ties
        assert ranks_from_scores(scores) == get_ranks_from_scores(scores).tolist()
    assert ranks_from_scores([1.0, 3.0, 3.0, 0.0]) == [3, 1, 1, 4]


def test_nan_scores_rank_last_in_order_and_ranks_alike():
    scores = [0.5, float("nan"), 2.0, float("nan")]
    assert order_from_scores(scores) == [2, 0, 1, 3]
    assert ranks_from_scores(scores) == [2, 3, 1, 3]
    assert ranks_from_scores([]) == [] and order_from_scores([]) == []
