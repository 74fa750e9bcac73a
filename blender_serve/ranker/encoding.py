"""Turning (source, candidate, candidate) texts into PairRanker input ids.

Every segment is encoded on its own with the tokenizer's special tokens,
``encode(prefix + text, max_length=M, truncation=True)``, and a pair is the concatenation
``source_ids + cand1_ids + cand2_ids`` (padding only at the end, added by the batcher). The source
gets M = source_max_length; each candidate M = candidate_max_length + (source_max_length - L)//2,
where L is *this* source's encoded length: a short source lends half its unused room to each
candidate. Unlike the reference's batched collator, a text's truncation never depends on the other
items of a batch. Each candidate of a source is encoded once, with ``<|candidate|>``, and the
prefix id is swapped for ``<|candidate1|>``/``<|candidate2|>`` when a pair is built, so ranking n
candidates tokenizes n + 1 texts, not n(n-1) pairs.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from blender_serve.errors import CheckpointError
from blender_serve.ranker.layout import PREFIX_TOKENS
from blender_serve.tokenize_safe import encode_segments_batch, structural_ids

__all__ = ["PairEncoder", "EncodedGroup"]

# A token never spans more characters than this, so cutting a text at CHARS_PER_TOKEN * max_length
# characters before tokenizing changes nothing in the kept tokens and bounds the cost of huge inputs.
CHARS_PER_TOKEN = 64


@dataclasses.dataclass(frozen=True)
class EncodedGroup:
    """One source and its candidates, encoded; pairs are assembled from these without re-tokenizing."""

    source_ids: tuple[int, ...]
    source_prefix_pos: int
    candidate_ids: tuple[tuple[int, ...], ...]
    candidate_prefix_pos: tuple[int, ...]


class PairEncoder:
    """Encodes sources and candidates for a PairRanker tokenizer that already has the prefix tokens."""

    def __init__(self, tokenizer, source_max_length: int, candidate_max_length: int):
        self.tokenizer = tokenizer
        self.source_max_length = int(source_max_length)
        self.candidate_max_length = int(candidate_max_length)
        ids = tokenizer.convert_tokens_to_ids(list(PREFIX_TOKENS))
        if any(i is None or i == tokenizer.unk_token_id for i in ids):
            raise CheckpointError(f"the ranker tokenizer lacks the prefix tokens {PREFIX_TOKENS}")
        self.source_prefix_id, self.cand1_prefix_id, self.cand2_prefix_id, self.cand_prefix_id = ids
        sep = tokenizer.sep_token if tokenizer.sep_token is not None else tokenizer.eos_token
        self._sep_token = sep
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._structural = structural_ids(tokenizer, extra=ids)

    def candidate_max_length_for(self, source_len: int) -> int:
        """Token budget of each candidate next to a source of ``source_len`` tokens (specials included)."""
        return self.candidate_max_length + (self.source_max_length - source_len) // 2

    def _clean(self, text: str, max_length: int) -> str:
        if self._sep_token:
            text = text.replace(self._sep_token, " ")  # a literal [SEP] would split the segment
        return text[: CHARS_PER_TOKEN * max_length]

    def _encode(self, prefix: str, texts: Sequence[str], max_length: int) -> list[list[int]]:
        prompts = [[(prefix, False), (self._clean(t, max_length), True)] for t in texts]
        return encode_segments_batch(self.tokenizer, prompts, add_special_tokens=True, max_length=max_length,
                                     protected=self._structural)

    @staticmethod
    def _prefix_pos(ids: Sequence[int], prefix_id: int) -> int:
        try:
            return list(ids).index(prefix_id)
        except ValueError:
            raise CheckpointError("a prefix token was truncated away: raise source/candidate max length") from None

    def encode_group(self, source: str, candidates: Sequence[str]) -> EncodedGroup:
        """Encode one source and all its candidates (each candidate once)."""
        (src,) = self._encode(PREFIX_TOKENS[0], [source], self.source_max_length)
        cmax = self.candidate_max_length_for(len(src))
        cands = self._encode(PREFIX_TOKENS[3], candidates, cmax)
        return EncodedGroup(
            source_ids=tuple(src),
            source_prefix_pos=self._prefix_pos(src, self.source_prefix_id),
            candidate_ids=tuple(tuple(c) for c in cands),
            candidate_prefix_pos=tuple(self._prefix_pos(c, self.cand_prefix_id) for c in cands),
        )

    def pair(self, group: EncodedGroup, i: int, j: int) -> tuple[list[int], tuple[int, int, int]]:
        """Input ids of the pair (candidate i as candidate1, j as candidate2) and the three prefix positions."""
        c1 = list(group.candidate_ids[i])
        c2 = list(group.candidate_ids[j])
        c1[group.candidate_prefix_pos[i]] = self.cand1_prefix_id
        c2[group.candidate_prefix_pos[j]] = self.cand2_prefix_id
        s = group.source_ids
        positions = (
            group.source_prefix_pos,
            len(s) + group.candidate_prefix_pos[i],
            len(s) + len(c1) + group.candidate_prefix_pos[j],
        )
        return list(s) + c1 + c2, positions
