"""Ranking strategies: which candidate pairs to score, and how to turn their logits into scores.

A strategy is a plain object with no torch in it. For one source with ``n`` candidates it runs as a
generator of *rounds*: it yields the ordered pairs (i, j) it needs scored, receives their logits
f(c_i, c_j) as a float array (f > 0: c_i is better), and finally returns a ``Ranking``. The
ranker drives the rounds of many sources in lockstep, so each round of every source is scored in
shared batched forward passes. Matrix strategies need one round; bubble needs n-1 small ones.

The aggregation maths are pure numpy functions of the pairwise matrix ``M`` (shape [n, n],
``M[i, j] = f(c_i, c_j)``, zero diagonal), so they are testable on their own.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Generator, Optional

import numpy as np

from blender_serve.errors import UnknownStrategyError
from blender_serve.ordering import order_from_scores

__all__ = [
    "Ranking",
    "Strategy",
    "STRATEGIES",
    "register_strategy",
    "get_strategy",
    "max_logits_scores",
    "max_wins_scores",
    "play",
]

Pairs = list[tuple[int, int]]
Rounds = Generator[Pairs, np.ndarray, "Ranking"]


@dataclasses.dataclass(frozen=True)
class Ranking:
    """The outcome of a strategy: per-candidate scores (input order) and the order, best first."""

    scores: np.ndarray  # [n] float64, higher is better
    order: list[int]  # candidate indices, best first
    matrix: Optional[np.ndarray] = None  # [n, n] pairwise logits, when computed
    num_pairs: int = 0  # pairs the encoder scored


def max_logits_scores(M: np.ndarray) -> np.ndarray:
    """s_i = mean_j (M[i, j] - M[j, i]); the mean runs over all n columns, zero diagonal included.

    M: [n, n] -> [n]. This is the reference's default ("max_logits") aggregation.
    """
    assert M.ndim == 2 and M.shape[0] == M.shape[1], f"expected a square matrix, got {M.shape}"
    return (M - M.T).mean(axis=-1)


def max_wins_scores(M: np.ndarray) -> np.ndarray:
    """s_i = #{j : M[i, j] > 0} + mean_j [M[j, i] < 0]: wins as the left candidate, plus the share
    of comparisons where c_i, placed right, made the left one lose. M: [n, n] -> [n]."""
    assert M.ndim == 2 and M.shape[0] == M.shape[1], f"expected a square matrix, got {M.shape}"
    return (M > 0).sum(axis=-1) + (M < 0).mean(axis=-2)


class Strategy:
    """A ranking strategy. Subclasses implement ``rounds``; ``name`` is its registry key."""

    name: str = ""

    def rounds(self, n: int, rng: np.random.Generator) -> Rounds:  # pragma: no cover - interface
        raise NotImplementedError

    def num_pairs(self, n: int) -> int:
        """Forward passes (pairs) this strategy needs for ``n`` candidates."""
        raise NotImplementedError


class _FullMatrix(Strategy):
    """Scores every ordered pair i != j in one round: n(n-1) passes, position bias cancels out."""

    score_fn: Callable[[np.ndarray], np.ndarray]

    def rounds(self, n: int, rng: np.random.Generator) -> Rounds:
        pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
        logits = yield pairs
        M = np.zeros((n, n), dtype=np.float64)
        for (i, j), v in zip(pairs, logits):
            M[i, j] = v
        scores = type(self).score_fn(M)
        return Ranking(scores=scores, order=order_from_scores(scores), matrix=M, num_pairs=len(pairs))

    def num_pairs(self, n: int) -> int:
        return n * (n - 1)


class MaxLogits(_FullMatrix):
    """Default: full matrix, s_i = mean_j (M[i,j] - M[j,i]). Matches the reference's scores."""

    name = "max_logits"
    score_fn = staticmethod(max_logits_scores)


class MaxWins(_FullMatrix):
    """Full matrix, scores by counting wins (robust to one overconfident logit)."""

    name = "max_wins"
    score_fn = staticmethod(max_wins_scores)


class SingleOrder(Strategy):
    """Scores each unordered pair once and fills the other order by antisymmetry: n(n-1)/2 passes.

    Accuracy trade-off: PairRanker is not exactly antisymmetric (f(a, b) != -f(b, a)); the full
    matrix averages the two positions and so cancels the model's position bias, this mode does
    not. To keep that bias from favouring whichever candidates come first, the orientation of the
    pairs alternates so that every candidate sits left and right about equally often. Expect it to
    agree with ``max_logits`` on the top-1 most of the time, at half the cost; prefer
    ``max_logits`` when candidates are close.
    """

    name = "single_order"

    def rounds(self, n: int, rng: np.random.Generator) -> Rounds:
        pairs = [(i, j) if (i + j) % 2 == 0 else (j, i) for i in range(n) for j in range(i + 1, n)]
        logits = yield pairs
        M = np.zeros((n, n), dtype=np.float64)
        for (i, j), v in zip(pairs, logits):
            M[i, j], M[j, i] = v, -v
        scores = max_logits_scores(M)
        return Ranking(scores=scores, order=order_from_scores(scores), matrix=M, num_pairs=len(pairs))

    def num_pairs(self, n: int) -> int:
        return n * (n - 1) // 2


class Bubble(Strategy):
    """One bubble pass over a seeded random order: 2(n-1) passes, a reliable top-1 only.

    Each adjacent comparison runs both orders, d = f(a, b) - f(b, a); the better one moves on
    (on d == 0 the later one moves on, as in the reference). A candidate's score is the number of
    comparisons it won (plus a fraction < 1 that grows with how late it lost); the winner gets n,
    the highest score. Only the top-1 is reliable; the rest of the order is approximate. The shuffle is seeded: the same seed gives the same result.
    """

    name = "bubble"

    def rounds(self, n: int, rng: np.random.Generator) -> Rounds:
        perm = [int(i) for i in rng.permutation(n)]
        wins = np.zeros(n, dtype=np.float64)
        lost_at = np.full(n, -1, dtype=np.float64)
        champion = perm[0]
        for step, challenger in enumerate(perm[1:]):
            forward, backward = (yield [(champion, challenger), (challenger, champion)])
            if forward - backward > 0:
                wins[champion] += 1
                lost_at[challenger] = step
            else:
                wins[challenger] += 1
                lost_at[champion] = step
                champion = challenger
        # Others: wins, then how late they lost (the fraction stays < 1); they won at most n - 2
        # times, so the champion's score of n is always the highest.
        scores = wins + (lost_at + 1) / (n + 1)
        scores[champion] = float(n)
        order = order_from_scores(scores)
        assert order[0] == champion
        return Ranking(scores=scores, order=order, matrix=None, num_pairs=2 * (n - 1))

    def num_pairs(self, n: int) -> int:
        return 2 * (n - 1)


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(strategy: Strategy) -> Strategy:
    """Add a strategy instance to the registry under its ``name``."""
    assert strategy.name and strategy.name not in STRATEGIES, f"bad or duplicate name {strategy.name!r}"
    STRATEGIES[strategy.name] = strategy
    return strategy


for _s in (MaxLogits(), MaxWins(), SingleOrder(), Bubble()):
    register_strategy(_s)


def get_strategy(name: str) -> Strategy:
    """The registered strategy called ``name``; UnknownStrategyError lists the known ones."""
    if not isinstance(name, str) or name not in STRATEGIES:
        raise UnknownStrategyError(
            f"unknown ranking strategy {name!r}; use one of: {', '.join(sorted(STRATEGIES))}"
        )
    return STRATEGIES[name]


def play(strategy: Strategy | str, M: np.ndarray, rng: Optional[np.random.Generator] = None) -> Ranking:
    """Run a strategy's rounds against an already computed full matrix ``M`` (``M[i, j] = f(c_i, c_j)``).

    Each strategy sees exactly the logits it would have asked the encoder for, so its ranking
    equals a live run's; the evaluation scores every ordered pair once and plays every strategy
    from the cache. Example: ``play("bubble", M, np.random.default_rng(0)).order[0]``.
    """
    strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
    M = np.asarray(M, dtype=np.float64)
    run = strategy.rounds(M.shape[0], rng if rng is not None else np.random.default_rng(0))
    pairs = run.send(None)
    while True:
        try:
            pairs = run.send(np.array([M[i, j] for i, j in pairs], dtype=np.float64))
        except StopIteration as done:
            return done.value
