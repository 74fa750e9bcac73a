"""MixInstruct records -> ranker training examples, under a chosen supervising signal.

The signal is any ``scores`` key (``rougeL``), a sum of keys (``rougeL+bleu``), ``cmp_results``
(ChatGPT's pairwise verdicts, as GPT-Rank scores) or a verifier result that ``collect`` wrote
(``verify``, ``verify_all``): :func:`blender_serve.data.preferences.candidate_scores` reads them all.
A record that lacks the signal on some candidate, or has fewer than two candidates, is skipped and
counted; one whose candidates all score the same is kept (it yields no pair, and the trainer skips it).
"""

from __future__ import annotations

from typing import Iterable

from blender_serve.ranker.pairs import TrainExample

__all__ = ["examples_from_records", "examples_from_file"]


def examples_from_records(records: Iterable, signal: str) -> tuple[list[TrainExample], int]:
    """(examples, records skipped) for ``signal``. Example::

        examples, skipped = examples_from_records(iter_records("train.jsonl"), "verify")
    """
    from blender_serve.data.preferences import candidate_scores

    examples, skipped = [], 0
    for record in records:
        scores = candidate_scores(record, signal)
        if scores is None or len(record.candidates) < 2:
            skipped += 1
            continue
        examples.append(TrainExample(id=record.id, source=record.source,
                                     candidates=[c.text for c in record.candidates], scores=list(scores)))
    return examples, skipped


def examples_from_file(path: str, signal: str, skip_bad: bool = False) -> tuple[list[TrainExample], int]:
    """:func:`examples_from_records` over a MixInstruct file (JSON array or lines, ``.gz`` allowed)."""
    from blender_serve.data import iter_records

    return examples_from_records(iter_records(path, skip_bad=skip_bad), signal)
