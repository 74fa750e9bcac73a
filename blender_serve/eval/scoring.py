"""Scores of a record's candidates, written into ``candidate.scores`` as MixInstruct keeps them.

Two sources, used when a record has them: text metrics against the reference ``output``
(:mod:`blender_serve.eval.metrics`, 0-100) and the record's task ``verifiers``
(:mod:`blender_serve.eval.verifiers`: ``verify`` is the share of checks passed, ``verify_all`` 1 or 0).
``collect`` scores as it writes; ``eval`` scores fused answers the same way, so every method is
measured by one function.
"""

from __future__ import annotations

from typing import Optional, Sequence

__all__ = ["CandidateScorer", "record_verifiers"]


def record_verifiers(record) -> Optional[list[dict]]:
    """The record's verifier specs (the ``verifiers`` key of a MixInstruct record), or None."""
    specs = (record.model_extra or {}).get("verifiers")
    return list(specs) if specs else None


class CandidateScorer:
    """Scores texts for a record: metrics against its ``output``, verifiers from its ``verifiers``.

    Example::

        scorer = CandidateScorer(metrics=("bleu", "rougeL"))
        record = scorer.score_record(record)      # a copy whose candidates carry the scores
        scorer.score_texts(record, ["a fused answer"])   # [{'bleu': ..., 'rougeL': ..., 'verify': ...}]
    """

    def __init__(self, metrics: Sequence[str] = None, bert_scorer=None):
        from blender_serve.eval.metrics import TEXT_METRICS

        self.metrics = tuple(TEXT_METRICS if metrics is None else metrics)
        self.bert_scorer = bert_scorer
        if bert_scorer is not None and "bertscore" not in self.metrics:
            self.metrics += ("bertscore",)

    def score_texts(self, record, texts: Sequence[str]) -> list[dict[str, float]]:
        """The scores of ``texts`` as answers to ``record`` (one dict per text, possibly empty)."""
        from blender_serve.eval.metrics import score_texts
        from blender_serve.eval.verifiers import verify

        out: list[dict[str, float]] = [{} for _ in texts]
        if record.output and record.output.strip() and self.metrics and texts:
            values = score_texts(list(texts), [record.output] * len(texts), metrics=self.metrics,
                                 bert_scorer=self.bert_scorer)
            for name, column in values.items():
                for scores, v in zip(out, column):
                    scores[name] = float(v)
        specs = record_verifiers(record)
        if specs:
            for scores, text in zip(out, texts):
                scores.update(verify(text, specs))
        return out

    def score_record(self, record):
        """A copy of ``record`` whose candidates' ``scores`` also hold this scorer's scores."""
        fresh = self.score_texts(record, [c.text for c in record.candidates])
        candidates = [c.model_copy(update={"scores": {**c.scores, **s}}) for c, s in zip(record.candidates, fresh)]
        return record.model_copy(update={"candidates": candidates})
