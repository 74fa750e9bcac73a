"""Order and ranks from a vector of scores (higher is better): the two ways every part of
blender_serve reads a ranking, written once.

Pure Python over any sequence of floats (lists, numpy arrays). A NaN score counts as the lowest,
in both functions alike.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Sequence

__all__ = ["order_from_scores", "ranks_from_scores"]


def _key(score: float) -> float:
    score = float(score)
    return -math.inf if math.isnan(score) else score


def order_from_scores(scores: Sequence[float]) -> list[int]:
    """Candidate indices, best first; equal scores keep input order, so the result is deterministic.

    Example: ``order_from_scores([1.0, 3.0, 3.0, 0.0]) == [1, 2, 0, 3]``.
    """
    keys = [_key(s) for s in scores]
    return sorted(range(len(keys)), key=lambda i: -keys[i])


def ranks_from_scores(scores: Sequence[float]) -> list[int]:
    """1-based rank of each candidate, in input order: 1 + how many candidates score strictly higher.

    Equal scores share the better rank, as the reference's ``get_ranks_from_scores`` has it, so a
    rank says how many candidates beat this one, whatever order a strategy listed them in.
    Example: ``ranks_from_scores([1.0, 3.0, 3.0, 0.0]) == [3, 1, 1, 4]``.
    """
    keys = [_key(s) for s in scores]
    ascending = sorted(keys)
    # 1 + count(k > key) = 1 + n - count(k <= key)
    return [1 + len(keys) - bisect_right(ascending, k) for k in keys]
