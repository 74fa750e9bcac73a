"""Training examples of a PairRanker, and the candidate pairs an epoch trains on.

Pure Python and numpy, no torch: a record is one source with its candidates and a target score
each (higher is better); an epoch draws, per record, up to ``k`` of the C(n, 2) candidate pairs that
carry a signal (different scores, different texts) and puts the better candidate first or second
with probability 1/2, as the reference's "all_pair" sub-sampling does.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from blender_serve.errors import InvalidInputError

__all__ = ["TrainExample", "TrainPair", "check_examples", "signal_pairs", "sample_epoch_pairs"]


@dataclasses.dataclass(frozen=True)
class TrainExample:
    """One record: the source text (instruction + input) and its candidates, a target score each.

    Example:
        >>> TrainExample("q1", "What is 2+2?", ["4", "5", "four"], [1.0, 0.0, 0.9])
    """

    id: str
    source: str
    candidates: list[str]
    scores: list[float]


@dataclasses.dataclass(frozen=True)
class TrainPair:
    """One training pair: candidate ``first`` as candidate1, ``second`` as candidate2 of example ``example``."""

    example: int  # index into the example list
    first: int
    second: int
    sign: float  # sign(score[first] - score[second]): +1.0 when candidate1 is the better one


def check_examples(examples: Sequence[TrainExample], what: str = "train") -> None:
    """Raise InvalidInputError, naming the record, on anything a ranker cannot train or validate on."""
    if isinstance(examples, (str, bytes)) or not isinstance(examples, Sequence):
        raise InvalidInputError(f"{what} examples must be a list of TrainExample, got {type(examples).__name__}")
    for k, ex in enumerate(examples):
        if not isinstance(ex, TrainExample):
            raise InvalidInputError(f"{what}[{k}] is a {type(ex).__name__}, not a TrainExample")
        name = f"{what} example {ex.id!r} (#{k})"
        if not isinstance(ex.source, str):
            raise InvalidInputError(f"{name}: source must be a str, got {type(ex.source).__name__}")
        if isinstance(ex.candidates, str) or not isinstance(ex.candidates, Sequence):
            raise InvalidInputError(f"{name}: candidates must be a list of str")
        if len(ex.candidates) < 2:
            raise InvalidInputError(f"{name} has {len(ex.candidates)} candidate(s); a pairwise ranker needs at least 2")
        if not all(isinstance(c, str) for c in ex.candidates):
            raise InvalidInputError(f"{name}: every candidate must be a str")
        if isinstance(ex.scores, str) or not isinstance(ex.scores, Sequence) or len(ex.scores) != len(ex.candidates):
            got = len(ex.scores) if isinstance(ex.scores, Sequence) else type(ex.scores).__name__
            raise InvalidInputError(f"{name} has {len(ex.candidates)} candidates but {got} scores; give one score per candidate")
        for s in ex.scores:
            if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
                raise InvalidInputError(f"{name}: scores must be finite numbers, got {s!r}")


def signal_pairs(example: TrainExample) -> list[tuple[int, int]]:
    """All (i, j), i < j, whose scores differ and whose texts differ; the others teach nothing
    (equal scores) or contradict themselves (one text, two scores)."""
    s, c = example.scores, example.candidates
    n = len(c)
    return [(i, j) for i in range(n) for j in range(i + 1, n) if s[i] != s[j] and c[i] != c[j]]


def sample_epoch_pairs(examples: Sequence[TrainExample], pairs_per_example: int, seed: int, epoch: int) -> list[TrainPair]:
    """The pairs of one epoch, in training order.

    Per example, up to ``pairs_per_example`` pairs drawn without replacement from
    :func:`signal_pairs`, each flipped with probability 1/2; then all pairs shuffled. The draw
    depends only on (seed, epoch), so a resumed run sees the pairs an uninterrupted one would have.
    The number of pairs is the same every epoch (it depends only on the examples).
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    pairs: list[TrainPair] = []
    for k, ex in enumerate(examples):
        eligible = signal_pairs(ex)
        if not eligible:
            continue
        chosen = rng.choice(len(eligible), size=min(pairs_per_example, len(eligible)), replace=False)
        flips = rng.random(len(chosen)) < 0.5
        for idx, flip in zip(chosen, flips):
            i, j = eligible[int(idx)]
            if flip:
                i, j = j, i
            pairs.append(TrainPair(k, i, j, 1.0 if ex.scores[i] > ex.scores[j] else -1.0))
    order = rng.permutation(len(pairs))
    return [pairs[int(p)] for p in order]
