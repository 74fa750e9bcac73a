"""Aggregation strategies as pure functions of the pairwise matrix (no model involved)."""

from __future__ import annotations

import numpy as np
import pytest

from blender_serve.errors import InvalidInputError, UnknownStrategyError
from blender_serve.ordering import order_from_scores
from blender_serve.ranker import STRATEGIES, get_strategy, max_logits_scores, max_wins_scores


def _run(strategy_name: str, M: np.ndarray, seed: int = 0):
    """Drive a strategy's rounds with logits read from a fixed matrix; count the pairs asked for."""
    strat = get_strategy(strategy_name)
    gen = strat.rounds(M.shape[0], np.random.default_rng(seed))
    asked = 0
    pairs = gen.send(None)
    while True:
        asked += len(pairs)
        try:
            pairs = gen.send(np.array([M[i, j] for i, j in pairs]))
        except StopIteration as done:
            return done.value, asked


def test_max_logits_is_mean_of_antisymmetric_part():
    M = np.array([[0.0, 2.0, -1.0], [0.5, 0.0, 3.0], [1.0, -2.0, 0.0]])
    expected = np.array([(0 + 1.5 - 2.0) / 3, (-1.5 + 0 + 5.0) / 3, (2.0 - 5.0 + 0) / 3])
    np.testing.assert_allclose(max_logits_scores(M), expected)


def test_max_wins_counts_wins_and_losses_caused():
    M = np.array([[0.0, 2.0, -1.0], [0.5, 0.0, 3.0], [1.0, -2.0, 0.0]])
    # row wins: [1, 2, 1]; column share of negatives (M[j, i] < 0): col0 0/3, col1 1/3, col2 1/3
    np.testing.assert_allclose(max_wins_scores(M), [1.0, 2 + 1 / 3, 1 + 1 / 3])


def test_order_is_stable_on_ties():
    assert order_from_scores(np.array([1.0, 3.0, 3.0, 0.0])) == [1, 2, 0, 3]


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_pass_counts(n):
    M = np.random.default_rng(n).normal(size=(n, n))
    np.fill_diagonal(M, 0)
    expected = {"max_logits": n * (n - 1), "max_wins": n * (n - 1), "single_order": n * (n - 1) // 2, "bubble": 2 * (n - 1)}
    for name, count in expected.items():
        ranking, asked = _run(name, M)
        assert asked == count == ranking.num_pairs == get_strategy(name).num_pairs(n)
        assert sorted(ranking.order) == list(range(n))


def test_full_strategies_recover_a_consistent_total_order():
    # f(i, j) = q_i - q_j (+ a position bias that cancels in both orders): every full strategy finds q's order.
    q = np.array([0.3, 2.0, -1.0, 1.1, 0.0])
    M = q[:, None] - q[None, :] + 0.4
    np.fill_diagonal(M, 0)
    truth = list(np.argsort(-q))
    for name in ("max_logits", "max_wins", "single_order"):
        assert _run(name, M)[0].order == truth, name
    for seed in range(10):
        assert _run("bubble", M, seed)[0].order[0] == truth[0]


def test_single_order_balances_positions():
    n = 6
    pairs = next(iter([get_strategy("single_order").rounds(n, np.random.default_rng(0)).send(None)]))
    left = np.bincount([i for i, _ in pairs], minlength=n)
    right = np.bincount([j for _, j in pairs], minlength=n)
    assert len(pairs) == n * (n - 1) // 2 and len({frozenset(p) for p in pairs}) == len(pairs)
    assert np.abs(left - right).max() <= 1


def test_bubble_is_deterministic_per_seed_and_its_winner_scores_highest():
    M = np.random.default_rng(7).normal(size=(8, 8))
    np.fill_diagonal(M, 0)
    a, _ = _run("bubble", M, seed=11)
    b, _ = _run("bubble", M, seed=11)
    assert a.order == b.order and np.array_equal(a.scores, b.scores)
    assert a.scores[a.order[0]] == 8 and a.matrix is None


def test_unknown_strategy_is_a_typed_error_listing_choices():
    with pytest.raises(UnknownStrategyError, match="max_logits"):
        get_strategy("best_guess")
    assert issubclass(UnknownStrategyError, InvalidInputError)
    assert set(STRATEGIES) >= {"max_logits", "max_wins", "bubble", "single_order"}
