"""Token log-probabilities from a model's raw logits, in OpenAI's shape (``TokenLogprob``).

The backends that compute logits here (llama.cpp, transformers) share this; vLLM reports its own.
Log-probabilities are of the model's distribution (a log-softmax of the raw logits, before
temperature, top-p or top-k), as vLLM and OpenAI report them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from blender_serve.types import TokenLogprob, TopLogprob

__all__ = ["token_logprob", "top_entry"]


def top_entry(text: bytes, logprob: float) -> TopLogprob:
    """A token from its bytes (a token may hold part of a UTF-8 character) and its log-probability."""
    return TopLogprob(token=text.decode("utf-8", errors="replace"), logprob=float(logprob), bytes=list(text))


def token_logprob(logits, chosen: int, top: int, token_bytes: Callable[[int], bytes]) -> TokenLogprob:
    """The chosen token's entry from one position's raw logits (a 1-D array over the vocabulary),
    with the ``top`` most likely tokens at that position, most likely first."""
    row = np.asarray(logits, dtype=np.float64)
    shifted = row - row.max()
    logprobs = shifted - np.log(np.exp(shifted).sum())
    best: list[int] = []
    if top > 0:
        part = np.argpartition(-logprobs, min(top, len(row)) - 1)[:top]
        best = [int(i) for i in part[np.argsort(-logprobs[part], kind="stable")]]
    entry = top_entry(token_bytes(chosen), logprobs[chosen])
    return TokenLogprob(**entry.model_dump(), top_logprobs=[top_entry(token_bytes(i), logprobs[i]) for i in best])
