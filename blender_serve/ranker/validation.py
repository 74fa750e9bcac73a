"""How well a PairRanker orders scored candidates: pairwise accuracy and top-1 quality.

Both come from one full ranking per record (``max_logits``: every ordered pair scored once), since
its pairwise matrix M already holds ``compare(a, b) = M[a, b] - M[b, a]`` for every pair.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import numpy as np

from blender_serve.errors import InvalidInputError
from blender_serve.ranker.pairs import TrainExample, signal_pairs

__all__ = ["ValMetrics", "evaluate_ranker"]

# Sources ranked per rank_batch call: wide enough to fill batches, small enough to bound memory.
_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class ValMetrics:
    """Validation of a ranker on scored records.

    ``pairwise_accuracy``: share of candidate pairs with different target scores (and texts) whose
    both-orders comparison f(a, b) - f(b, a) has the sign of score(a) - score(b), an exact tie counting
    half (None: no such pair).
    ``top1_score``: mean target score of the candidate ranked first (strategy max_logits);
    ``oracle_score``: mean of the best score (a perfect ranker); ``random_score``: mean of the mean
    score (a uniformly random pick). A useful ranker has random < top1 <= oracle.
    """

    examples: int
    pairs: int
    pairwise_accuracy: Optional[float]
    top1_score: float
    oracle_score: float
    random_score: float

    def line(self) -> str:
        """One human line for logs."""
        acc = "n/a" if self.pairwise_accuracy is None else f"{self.pairwise_accuracy:.3f}"
        return (f"pair acc {acc} ({self.pairs} pairs), top-1 {self.top1_score:.4f} "
                f"(oracle {self.oracle_score:.4f}, random {self.random_score:.4f})")


def evaluate_ranker(ranker, examples: Sequence[TrainExample]) -> ValMetrics:
    """Score ``ranker`` (a ``PairRanker``) on ``examples`` (each with >= 2 candidates).

    Costs n(n-1) forward pairs per record of n candidates.
    """
    if not examples:
        raise InvalidInputError("evaluate_ranker needs at least one example")
    correct, total = 0.0, 0
    top1, oracle, rand = [], [], []
    for start in range(0, len(examples), _CHUNK):
        chunk = examples[start:start + _CHUNK]
        results = ranker.rank_batch([ex.source for ex in chunk], [ex.candidates for ex in chunk], strategy="max_logits")
        for ex, res in zip(chunk, results):
            scores = np.asarray(ex.scores, dtype=np.float64)
            M = np.asarray(res.matrix, dtype=np.float64)  # [n, n], M[i, j] = f(c_i, c_j)
            for i, j in signal_pairs(ex):
                total += 1
                d = M[i, j] - M[j, i]
                correct += 0.5 if d == 0 else float(np.sign(d) == np.sign(scores[i] - scores[j]))
            top1.append(scores[res.order[0]])
            oracle.append(scores.max())
            rand.append(scores.mean())
    return ValMetrics(
        examples=len(examples), pairs=total, pairwise_accuracy=correct / total if total else None,
        top1_score=float(np.mean(top1)), oracle_score=float(np.mean(oracle)), random_score=float(np.mean(rand)),
    )
