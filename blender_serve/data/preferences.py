"""The supervising and evaluation signals of a record: metric scores and ChatGPT's pairwise verdicts.

A *signal* names what "better" means for a record's candidates (see :data:`signal_help`): one
metric from the candidates' ``scores``, a sum of metrics, or ``cmp_results``, read as GPT-Rank
does (SPEC "GPT-Rank"). Every signal is higher-is-better.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from blender_serve.data.records import MixRecord
from blender_serve.errors import InvalidInputError

__all__ = ["CMP_SIGNAL", "candidate_scores", "cmp_matrix", "cmp_scores", "parse_signal", "signal_help"]

CMP_SIGNAL = "cmp_results"

signal_help = (
    "A signal says which candidate is better: a score key of the candidates' 'scores' (e.g. "
    "'rougeL', 'bertscore'), a sum of keys joined by '+' (e.g. 'rougeL+bleu+bertscore'), or "
    "'cmp_results' for ChatGPT's pairwise verdicts, scored as GPT-Rank does. Higher is better. "
    "Records where any candidate lacks the signal are skipped."
)

# verdict -> (added to M[a, b], added to M[b, a]) for the key "a,b" (SPEC "GPT-Rank")
_DELTAS = {
    "A is better": (1.0, -1.0),
    "B is better": (-1.0, 1.0),
    "Same good": (0.5, 0.5),
    "Same bad": (-0.5, -0.5),
}


def parse_signal(signal: str) -> tuple[str, ...]:
    """The terms of a signal string; raises InvalidInputError when it is empty or malformed.

    Example: ``parse_signal("rougeL + bleu") == ("rougeL", "bleu")``
    """
    if not isinstance(signal, str) or not signal.strip():
        raise InvalidInputError(f"the signal is empty; {signal_help}")
    terms = tuple(term.strip() for term in signal.split("+"))
    if not all(terms):
        raise InvalidInputError(f"malformed signal {signal!r}: an empty term around '+'; {signal_help}")
    if CMP_SIGNAL in terms and len(terms) > 1:
        raise InvalidInputError(f"malformed signal {signal!r}: 'cmp_results' cannot be added to scores")
    return terms


def _cmp_matrix(record: MixRecord) -> tuple[list[str], np.ndarray, int]:
    models = record.models
    index = {model: i for i, model in enumerate(models)}
    matrix = np.zeros((len(models), len(models)))  # (C, C)
    applied = 0
    for key, verdict in (record.cmp_results or {}).items():
        a, _, b = key.partition(",")
        if a == b or a not in index or b not in index:
            continue  # a verdict on an answer this record does not hold says nothing about its candidates
        to_ab, to_ba = _DELTAS[verdict]
        matrix[index[a], index[b]] += to_ab
        matrix[index[b], index[a]] += to_ba
        applied += 1
    return models, matrix, applied


def cmp_matrix(record: MixRecord) -> tuple[list[str], np.ndarray]:
    """The record's model names and its (C, C) GPT-Rank matrix M over its C candidates.

    For each verdict ``"a,b"``: "A is better" adds 1 to M[a,b] and −1 to M[b,a], "B is better" the
    opposite, "Same good" 0.5 to both, "Same bad" −0.5 to both. Verdicts naming a model that is not
    among the record's candidates (or a model against itself) are ignored. All zeros without
    ``cmp_results``.

    Example:
        >>> models, m = cmp_matrix(record)   # m[i, j] > 0: models[i] judged better than models[j]
    """
    models, matrix, _ = _cmp_matrix(record)
    return models, matrix


def cmp_scores(record: MixRecord) -> Optional[dict[str, float]]:
    """GPT-Rank score per model: the row sums of (M − Mᵀ), higher is better.

    None when the record has no verdicts on its candidates (no or empty ``cmp_results``, or only
    verdicts on other models). A candidate no verdict mentions scores 0, as in the reference.
    Example: ``cmp_scores(r) == {"a": 4.0, "b": -2.0, "c": -2.0}`` for a judged best.
    """
    models, matrix, applied = _cmp_matrix(record)
    if not applied:
        return None
    scores = (matrix - matrix.T).sum(axis=1)  # (C,)
    return {model: float(score) for model, score in zip(models, scores)}


def candidate_scores(record: MixRecord, signal: str) -> Optional[list[float]]:
    """The signal's value for each candidate, in candidate order, higher is better.

    Returns None when any candidate lacks the signal (a missing or NaN score key, or no verdicts for
    ``cmp_results``): callers skip such records. Raises InvalidInputError for a malformed signal.

    Example:
        >>> candidate_scores(record, "rougeL+bleu")  # [0.41, 0.37, ...]
        >>> candidate_scores(record, "cmp_results")  # GPT-Rank scores, or None
    """
    terms = parse_signal(signal)
    if terms == (CMP_SIGNAL,):
        scores = cmp_scores(record)
        return None if scores is None else [scores[model] for model in record.models]
    out = []
    for cand in record.candidates:
        values = [cand.scores.get(term) for term in terms]
        if any(value is None or math.isnan(value) for value in values):
            return None
        out.append(float(sum(values)))
    return out
