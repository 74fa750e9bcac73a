"""The reference library's API (``llm_blender.Blender``) on top of blender_serve.

Switch by changing one import::

    # import llm_blender; blender = llm_blender.Blender()
    from blender_serve import compat as llm_blender; blender = llm_blender.Blender()
    blender.loadranker("llm-blender/PairRM")          # or a local directory, either layout
    ranks = blender.rank(inputs, candidates)            # ranks[i][j]: 1 = best
    blender.loadfuser("llm-blender/gen_fuser_3b")
    fused = blender.fuse(inputs, topk_candidates)

Method names, arguments and return shapes follow llm-blender 0.0.2. Differences, all deliberate:
candidates lists may differ in length between inputs; truncation never depends on the batch (the
reference's batched collator uses the longest source of a batch); the bubble shuffle is seeded;
``batch_size`` counts pairs per forward pass rather than inputs; the fuser keeps its final
instruction line when the input is too long.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import numpy as np

from blender_serve.errors import BlenderError, InvalidInputError
from blender_serve.ordering import order_from_scores, ranks_from_scores

__all__ = ["Blender", "get_ranks_from_scores"]

logger = logging.getLogger(__name__)

_COMPARE_MODES = {"[A,B]": "single", "[B,A]": "reversed", "[A,B]+[B,A]": "both"}


def get_ranks_from_scores(scores: np.ndarray) -> np.ndarray:
    """Ranks (1 = best) from scores (higher is better); equal scores share the better rank. [n, c] -> [n, c]."""
    scores = np.asarray(scores, dtype=np.float64)
    flat = scores.reshape(1, -1) if scores.ndim == 1 else scores
    return np.array([ranks_from_scores(row) for row in flat], dtype=np.int32).reshape(scores.shape)


def _sources(inputs: Sequence[str], instructions: Optional[Sequence[str]]) -> list[str]:
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise InvalidInputError("inputs must be a list of str (one per example)")
    if instructions is None:
        return list(inputs)
    if isinstance(instructions, str) or len(instructions) != len(inputs):
        raise InvalidInputError(f"instructions must be a list with one str per input ({len(inputs)})")
    return [ins + inp for ins, inp in zip(instructions, inputs)]


class Blender:
    """Drop-in for ``llm_blender.Blender``: load a ranker and a fuser, then rank, compare, fuse."""

    def __init__(self, blender_config=None, ranker_config=None, fuser_config=None, device: str = "auto"):
        self.device = device
        self.ranker = None
        self.fuser = None

    # ------------------------------------------------------------------ loading
    def loadranker(self, ranker_path: str, device: Optional[str] = None, **kwargs):
        """Load a PairRM checkpoint (hub id or local directory, either layout)."""
        from blender_serve.ranker import PairRanker

        allowed = {"batch_size", "source_max_length", "candidate_max_length", "dtype", "seed"}
        self.ranker = PairRanker.from_pretrained(ranker_path, device=device or self.device,
                                                 **{k: v for k, v in kwargs.items() if k in allowed})
        return self.ranker

    def loadfuser(self, fuser_path: str, device: Optional[str] = None, **kwargs):
        """Load a gen_fuser seq2seq checkpoint (hub id or local directory)."""
        from blender_serve.fuser import GenFuser

        self.fuser = GenFuser.from_pretrained(fuser_path, device=device or self.device, **kwargs)
        return self.fuser

    def _need_ranker(self):
        if self.ranker is None:
            raise BlenderError("no ranker loaded; call loadranker(path) first")
        return self.ranker

    def _need_fuser(self):
        if self.fuser is None:
            raise BlenderError("no fuser loaded; call loadfuser(path) first")
        return self.fuser

    # ------------------------------------------------------------------ ranking
    def rank(self, inputs: Sequence[str], candidates: Sequence[Sequence[str]], instructions=None,
             return_scores: bool = False, batch_size: int = 8, disable_tqdm: bool = False, **rank_kwargs):
        """Ranks (np.int32 [n, c], 1 = best, ties share the better rank) or scores (higher is better)."""
        policy = rank_kwargs.get("policy", "max_logits")
        results = self._need_ranker().rank_batch(_sources(inputs, instructions), candidates, strategy=policy)
        scores = [np.array(r.scores, dtype=np.float32) for r in results]
        same = len({len(s) for s in scores}) == 1
        if return_scores:
            return np.stack(scores) if same else scores
        ranks = [get_ranks_from_scores(s) for s in scores]
        return np.stack(ranks) if same else ranks

    def compare(self, inputs: Sequence[str], candidates_A: Sequence[str], candidates_B: Sequence[str],
                instructions=None, batch_size: int = 4, return_logits: bool = False,
                mode: str = "[A,B]+[B,A]", disable_tqdm: bool = False):
        """Logits that A beats B (> 0: A is better), or booleans A-is-better. ``mode`` as in the reference,
        including its quirk: in "[B,A]" mode it returns f(B, A), whose sign favours B."""
        if mode not in _COMPARE_MODES:
            raise InvalidInputError(f"unknown mode {mode!r}; use one of {list(_COMPARE_MODES)}")
        logits = np.array(self._need_ranker().compare_batch(_sources(inputs, instructions), candidates_A, candidates_B,
                                                            mode=_COMPARE_MODES[mode]), dtype=np.float32)
        if mode == "[B,A]":
            logits = -logits  # the reference returns f(B, A) as is in this mode (> 0: B is better)
        return logits if return_logits else logits > 0

    def get_best_of_n(self, inputs, candidates, instructions=None, pairrm_cmp_type: str = "bubble",
                      return_all: bool = False, batch_size: int = 8):
        """The best candidate per input (``pairrm_cmp_type`` 'bubble' or 'full'), or all of them best-first."""
        if pairrm_cmp_type not in ("bubble", "full"):
            raise InvalidInputError(f"pairrm_cmp_type must be 'bubble' or 'full', got {pairrm_cmp_type!r}")
        out = []
        sources = _sources(inputs, instructions)
        single = [k for k, c in enumerate(candidates) if len(c) == 1]
        multi = [k for k in range(len(candidates)) if k not in single]
        results = dict(zip(multi, self._need_ranker().rank_batch(
            [sources[k] for k in multi], [candidates[k] for k in multi],
            strategy="bubble" if pairrm_cmp_type == "bubble" else "max_logits"))) if multi else {}
        for k, cands in enumerate(candidates):
            order = results[k].order if k in results else [0]
            out.append([cands[i] for i in order] if return_all else cands[order[0]])
        return out

    # ------------------------------------------------------------------ fusion
    def fuse(self, inputs: Sequence[str], candidates: Sequence[Sequence[str]], instructions=None,
             batch_size: int = 4, **generate_kwargs) -> list[str]:
        """Fused answers, one per input, from each input's (top-ranked) candidates."""
        fuser = self._need_fuser()
        instructions = list(instructions) if instructions is not None else [""] * len(inputs)
        if len(instructions) != len(inputs) or len(candidates) != len(inputs):
            raise InvalidInputError("inputs, candidates and instructions must have one entry per example")
        items = list(zip(instructions, inputs, [list(c) for c in candidates]))
        texts: list[str] = []
        for start in range(0, len(items), max(1, batch_size)):
            texts.extend(o.text for o in fuser.fuse_batch(items[start:start + batch_size], **generate_kwargs))
        return texts

    def rank_and_fuse(self, inputs, candidates, instructions=None, return_scores: bool = False, batch_size: int = 4,
                      top_k: int = 3, **generate_kwargs):
        """(fused texts, ranks or scores): rank, keep each input's top_k, fuse them."""
        scores = self.rank(inputs, candidates, instructions=instructions, return_scores=True)
        topk = [[cands[i] for i in order_from_scores(s)[:top_k]] for cands, s in zip(candidates, scores)]
        fused = self.fuse(inputs, topk, instructions=instructions, batch_size=batch_size, **generate_kwargs)
        if return_scores:
            return fused, scores
        ranks = [get_ranks_from_scores(s) for s in scores]
        return fused, (np.stack(ranks) if len({len(r) for r in ranks}) == 1 else ranks)
