"""Reference-based text metrics, per example, on a 0-100 scale where higher is better.

- ``bleu``: sacrebleu's sentence BLEU with effective order (short sentences are not zeroed by a
  missing 4-gram), default 13a tokenizer.
- ``rouge1``, ``rouge2``, ``rougeL``: the F-measure of Google's ``rouge_score`` with the Porter
  stemmer, x100.
- ``bertscore``: :class:`BertScorer`, F1 of greedy cosine matching of contextual token embeddings
  (no idf weighting, no baseline rescaling), x100.

An empty (or whitespace-only) hypothesis or reference scores 0.0 in every metric, both empty
included: there is nothing to match. The heavy libraries load inside the functions that use them.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence

from blender_serve.errors import InvalidInputError

__all__ = ["TEXT_METRICS", "ALL_METRICS", "bleu_scores", "rouge_scores", "BertScorer", "score_texts"]

TEXT_METRICS = ("bleu", "rouge1", "rouge2", "rougeL")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
ALL_METRICS = TEXT_METRICS + ("bertscore",)


def _empty(text: str) -> bool:
    return not text.strip()


def _check_pairs(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise InvalidInputError(f"got {len(hyps)} hypotheses but {len(refs)} references; pass one reference per hypothesis")
    for what, texts in (("hypotheses", hyps), ("references", refs)):
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise InvalidInputError(f"{what}[{bad}] is a {type(texts[bad]).__name__}, not a str; pass plain strings")


def bleu_scores(hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
    """Sentence BLEU (0-100) of each hypothesis against its one reference.

    Example: ``bleu_scores(["the cat sat"], ["the cat sat"]) == [100.0]`` (up to float rounding).
    """
    _check_pairs(hyps, refs)
    from sacrebleu.metrics import BLEU

    bleu = BLEU(effective_order=True)
    return [0.0 if _empty(h) or _empty(r) else float(bleu.sentence_score(h, [r]).score) for h, r in zip(hyps, refs)]


def rouge_scores(hyps: Sequence[str], refs: Sequence[str], types: Sequence[str] = ROUGE_TYPES) -> dict[str, list[float]]:
    """ROUGE F-measures (0-100) per example, one scorer for the whole call.

    Example: ``rouge_scores(["the cat sat"], ["the cat sat on the mat"], ["rouge1"]) == {"rouge1": [66.66...]}``.
    """
    _check_pairs(hyps, refs)
    unknown = [t for t in types if t not in ROUGE_TYPES]
    if unknown:
        raise InvalidInputError(f"unknown ROUGE type(s) {unknown}; choose from {list(ROUGE_TYPES)}")
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(types), use_stemmer=True)
    out: dict[str, list[float]] = {t: [] for t in types}
    for h, r in zip(hyps, refs):
        scores = None if _empty(h) or _empty(r) else scorer.score(target=r, prediction=h)
        for t in types:
            out[t].append(0.0 if scores is None else 100.0 * float(scores[t].fmeasure))
    return out


class BertScorer:
    """BERTScore F1 (0-100) with any local encoder: loads once, scores pairs in batches.

    Each text is encoded on its own (truncated to the model's maximum length); the [CLS], [SEP] and
    padding positions are dropped and the token vectors L2-normalised. For hypothesis tokens
    h_1..h_m and reference tokens r_1..r_n: P = mean_i max_j cos(h_i, r_j), R = mean_j max_i
    cos(h_i, r_j), F1 = 2PR / (P + R). No idf weighting, no baseline rescaling, so values are not
    comparable with bert-score's rescaled numbers, only with each other under the same encoder.

    Args:
        model_dir: a directory that ``AutoModel``/``AutoTokenizer`` load (or ``local:minilm-l6-v2``).
        device: 'cpu', 'cuda', 'auto'...
        batch_size: pairs per forward pass (each pass encodes 2 x batch_size texts).
        layer: which hidden layer to read: None for the last, else an index into
            ``hidden_states`` (0 = embeddings, -1 = last).
        dtype: the model's dtype ('float32' by default: the scores should not depend on the device).
    Example::

        scorer = BertScorer(minilm_backbone())
        scorer.score(["a cat sat on the mat"], ["a cat was sitting on the mat"])  # -> [~90.]
    """

    def __init__(self, model_dir: str | os.PathLike, device: str = "cpu", batch_size: int = 32,
                 layer: Optional[int] = None, dtype: str = "float32"):
        from blender_serve.loading import load_pretrained

        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.model, self.tokenizer, self.device = load_pretrained("AutoModel", model_dir, device=device, dtype=dtype)
        self.batch_size = batch_size
        self.layer = layer
        limits = [getattr(self.tokenizer, "model_max_length", None),
                  getattr(self.model.config, "max_position_embeddings", None)]
        # tokenizers without a limit report a huge sentinel (1e30): the position table is the real one
        self.max_length = min(int(x) for x in limits if x is not None and x < 1_000_000)

    def score(self, hyps: Sequence[str], refs: Sequence[str]) -> list[float]:
        """F1 x 100 for each (hypothesis, reference) pair, in input order; an empty side scores 0.

        Example: ``scorer.score(["hello there"], ["hello there"])`` -> ``[100.0]`` (up to rounding).
        """
        _check_pairs(hyps, refs)
        out = [0.0] * len(hyps)
        todo = [i for i in range(len(hyps)) if not (_empty(hyps[i]) or _empty(refs[i]))]
        # similar lengths together: less padding per pass
        todo.sort(key=lambda i: len(hyps[i]) + len(refs[i]))
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            f1 = self._f1([hyps[i] for i in chunk], [refs[i] for i in chunk])
            for i, value in zip(chunk, f1):
                out[i] = value
        return out

    def _embed(self, texts: list[str]):
        """(B, L, D) unit token vectors and the (B, L) bool mask of real (non-special) tokens."""
        import torch

        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_special_tokens_mask=True, return_tensors="pt")
        special = enc.pop("special_tokens_mask").bool()
        enc.pop("token_type_ids", None)  # single segments: all zeros, and some encoders take none
        enc = {k: v.to(self.device) for k, v in enc.items()}
        out = self.model(**enc, output_hidden_states=self.layer is not None)
        hidden = out.last_hidden_state if self.layer is None else out.hidden_states[self.layer]
        vectors = torch.nn.functional.normalize(hidden.float(), dim=-1)  # (B, L, D)
        mask = enc["attention_mask"].bool() & ~special.to(self.device)  # (B, L)
        return vectors, mask

    def _f1(self, hyps: list[str], refs: list[str]) -> list[float]:
        import torch

        with torch.no_grad():
            vectors, mask = self._embed(hyps + refs)
            b = len(hyps)
            h, hm = vectors[:b], mask[:b]  # (B, Lh, D), (B, Lh); the padded length is shared
            r, rm = vectors[b:], mask[b:]
            # (B, L, L): cos(h_i, r_j); clamped, as float rounding can lift a self-match above 1
            sim = torch.bmm(h, r.transpose(1, 2)).clamp(-1.0, 1.0)
            pair_mask = hm[:, :, None] & rm[:, None, :]
            sim = sim.masked_fill(~pair_mask, -2.0)  # below any cosine, so max ignores it
            h_count = hm.sum(1).clamp(min=1)  # (B,)
            r_count = rm.sum(1).clamp(min=1)
            precision = (sim.max(dim=2).values * hm).sum(1) / h_count  # (B,)
            recall = (sim.max(dim=1).values * rm).sum(1) / r_count
            f1 = 2 * precision * recall / (precision + recall)
            # no real tokens on a side (a text of control characters): nothing to match
            valid = (hm.sum(1) > 0) & (rm.sum(1) > 0) & (precision + recall > 0)
            f1 = torch.where(valid, f1, torch.zeros_like(f1))
        return [100.0 * float(x) for x in f1.cpu()]


def _bleu_metric(hyps, refs, bert_scorer):  # registry adapters: one signature for all
    return bleu_scores(hyps, refs)


def _bertscore_metric(hyps, refs, bert_scorer):
    if bert_scorer is None:
        raise InvalidInputError("the 'bertscore' metric needs a scorer: pass bert_scorer=BertScorer(model_dir)")
    return bert_scorer.score(hyps, refs)


_METRICS: Mapping[str, Callable[..., list[float]]] = {"bleu": _bleu_metric, "bertscore": _bertscore_metric}


def score_texts(hyps: Sequence[str], refs: Sequence[str], metrics: Sequence[str] = TEXT_METRICS,
                bert_scorer: Optional[BertScorer] = None) -> dict[str, list[float]]:
    """Every requested metric (0-100, higher is better) for each (hypothesis, reference) pair.

    Args:
        hyps, refs: equally long lists of strings.
        metrics: names from :data:`ALL_METRICS`; ``bertscore`` needs ``bert_scorer``.
        bert_scorer: a loaded :class:`BertScorer`.
    Returns:
        ``{metric: [score per pair]}`` in the order of ``metrics``.
    Raises:
        InvalidInputError: mismatched lengths, an unknown metric, or ``bertscore`` without a scorer.
    Example::

        score_texts(["the cat sat"], ["the cat sat on the mat"], ["rouge1", "bleu"])
        # -> {"rouge1": [66.67], "bleu": [36.79]}
    """
    _check_pairs(hyps, refs)
    unknown = [m for m in metrics if m not in ALL_METRICS]
    if unknown:
        raise InvalidInputError(f"unknown metric(s) {unknown}; choose from {list(ALL_METRICS)}")
    if "bertscore" in metrics and bert_scorer is None:
        _bertscore_metric(hyps, refs, None)  # raises, before any other metric spends time
    rouge_types = [m for m in metrics if m in ROUGE_TYPES]
    rouge = rouge_scores(hyps, refs, rouge_types) if rouge_types else {}
    return {m: rouge[m] if m in rouge else _METRICS[m](hyps, refs, bert_scorer) for m in metrics}
