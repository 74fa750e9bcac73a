"""Pairwise agreement of predicted scores (or a ranker's comparison matrix) with a target metric."""

from __future__ import annotations

import numpy as np
import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.eval.agreement import pairwise_accuracy, pairwise_accuracy_from_matrix


def test_perfect_and_reversed_orders():
    assert pairwise_accuracy([3.0, 2.0, 1.0], [30.0, 20.0, 10.0]) == (3, 3)
    assert pairwise_accuracy([1.0, 2.0, 3.0], [30.0, 20.0, 10.0]) == (0, 3)


def test_target_ties_are_not_counted_predicted_ties_are_wrong():
    # target [2, 1, 1]: pair (1,2) is a target tie -> skipped; pairs (0,1), (0,2) counted.
    # predicted [5, 5, 0]: (0,1) a predicted tie -> wrong; (0,2) 5 > 0 as 2 > 1 -> right.
    assert pairwise_accuracy([5.0, 5.0, 0.0], [2.0, 1.0, 1.0]) == (1, 2)
    assert pairwise_accuracy([1.0, 1.0], [0.0, 0.0]) == (0, 0)  # nothing to count


def test_from_matrix_reads_the_antisymmetric_margin():
    # M[i][j] = logit that i beats j; verdict on (i, j) is M[i][j] - M[j][i].
    m = np.array([[0.0, 2.0, -1.0],
                  [1.0, 0.0, 0.5],
                  [0.5, 0.5, 0.0]])
    # (0,1): 2 - 1 = 1 > 0 -> 0 better;  target 3 > 2 -> right
    # (0,2): -1 - 0.5 = -1.5 -> 2 better; target 3 > 1 -> wrong
    # (1,2): 0.5 - 0.5 = 0 -> a tie;      target 2 > 1 -> wrong
    assert pairwise_accuracy_from_matrix(m, [3.0, 2.0, 1.0]) == (1, 3)
    assert pairwise_accuracy_from_matrix(m.tolist(), [3.0, 2.0, 1.0]) == (1, 3)


def test_matrix_and_scores_agree_on_a_consistent_ranker():
    scores = np.array([0.3, -1.2, 2.0, 0.7])
    m = scores[:, None] - scores[None, :]  # (N, N): i beats j by s_i - s_j
    target = [1.0, 0.0, 4.0, 5.0]  # only (2,3) disagrees: 2.0 > 0.7 but 4 < 5
    assert pairwise_accuracy_from_matrix(m, target) == pairwise_accuracy(scores, target) == (5, 6)


def test_shape_errors():
    with pytest.raises(InvalidInputError):
        pairwise_accuracy([1.0], [1.0, 2.0])
    with pytest.raises(InvalidInputError, match="2 x 2"):
        pairwise_accuracy_from_matrix([[0.0, 1.0, 2.0]], [1.0, 2.0])
