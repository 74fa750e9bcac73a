"""How often a ranker orders candidate pairs the way a target metric does.

Over all pairs i < j whose target scores differ (a target tie says nothing, so it is not counted),
a pair is correct when the predicted order is strict and agrees with the target's; a predicted tie
counts as wrong. Both functions return (correct, counted) so callers can pool records before
dividing.
"""

from __future__ import annotations

from typing import Sequence

from blender_serve.errors import InvalidInputError

__all__ = ["pairwise_accuracy", "pairwise_accuracy_from_matrix"]


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def _count(n: int, predicted_margin, target: Sequence[float]) -> tuple[int, int]:
    """predicted_margin(i, j) > 0 means i is predicted better than j."""
    correct = counted = 0
    for i in range(n):
        for j in range(i + 1, n):
            want = _sign(float(target[i]) - float(target[j]))
            if want == 0:
                continue
            counted += 1
            correct += _sign(predicted_margin(i, j)) == want
    return correct, counted


def pairwise_accuracy(predicted: Sequence[float], target: Sequence[float]) -> tuple[int, int]:
    """(correct, counted) pairs of candidates ordered by ``predicted`` as by ``target`` (higher = better).

    Example: ``pairwise_accuracy([3, 1, 1], [2, 1, 0]) == (2, 3)``: pairs (0,1) and (0,2) agree, the
    predicted tie on (1,2) is wrong.
    """
    if len(predicted) != len(target):
        raise InvalidInputError(f"got {len(predicted)} predicted scores but {len(target)} targets; pass one per candidate")
    return _count(len(target), lambda i, j: float(predicted[i]) - float(predicted[j]), target)


def pairwise_accuracy_from_matrix(matrix, target: Sequence[float]) -> tuple[int, int]:
    """(correct, counted) pairs, reading the ranker's verdict on (i, j) as ``M[i][j] - M[j][i]``.

    Args:
        matrix: (N, N) array-like, M[i][j] = the ranker's logit that candidate i beats j (the
            diagonal is ignored).
        target: (N,) target scores, higher = better.
    Example: ``pairwise_accuracy_from_matrix([[0, 2], [-1, 0]], [1.0, 0.0]) == (1, 1)``.
    """
    n = len(target)
    if len(matrix) != n or any(len(row) != n for row in matrix):
        raise InvalidInputError(f"the comparison matrix must be {n} x {n} for {n} target scores")
    return _count(n, lambda i, j: float(matrix[i][j]) - float(matrix[j][i]), target)
