"""Fitting a prompt made of text segments into a token budget by cutting the segments, longest first.

Pure functions of token counts, except ``cut_text`` (which decodes). Both fusers use them: they know
how to render their prompt from segment texts; this module decides how long each segment may be.
"""

from __future__ import annotations

from typing import Callable, Sequence

from blender_serve.errors import InvalidInputError

__all__ = ["cut_text", "water_fill", "fit_lengths", "SOFT_FLOOR"]

# A cut segment ends with this, as the reference marks a cut candidate.
ELLIPSIS = "..."

#: When a prompt is too long, candidates are cut down to this many tokens before the instruction or
#: input lose anything; only then is everything cut further, evenly.
SOFT_FLOOR = 32


def cut_text(tokenizer, text: str, ids: Sequence[int], n: int) -> str:
    """``text`` kept whole when it has at most ``n`` tokens, else its first ``n`` tokens decoded + '...'."""
    if n >= len(ids):
        return text  # the untouched text, not decode(encode(text)): the reference tokenizes it as is
    return tokenizer.decode(list(ids[:n])) + ELLIPSIS


def water_fill(lengths: Sequence[int], floors: Sequence[int], excess: int) -> list[int]:
    """New lengths that remove at least ``excess`` tokens, cutting the longest segments first.

    All segments above the chosen cap are cut to it (so they end up even); none goes below its
    floor. If the floors leave too little room, every segment is cut to its floor.

    Example: ``water_fill([100, 40, 10], [0, 0, 0], 70) == [35, 35, 10]`` (70 removed).
    """
    assert len(lengths) == len(floors), "one floor per segment"
    if excess <= 0:
        return list(lengths)
    floors = [min(f, n) for n, f in zip(lengths, floors)]

    def removed(cap: int) -> int:
        return sum(max(0, n - max(cap, f)) for n, f in zip(lengths, floors))

    if removed(0) <= excess:
        return list(floors)
    # Largest cap that still removes enough: removed() falls as the cap grows.
    lo, hi = 0, max(lengths)  # removed(lo) >= excess > removed(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if removed(mid) >= excess:
            lo = mid
        else:
            hi = mid
    return [min(n, max(lo, f)) for n, f in zip(lengths, floors)]


def _plan(lengths: list[int], stages: Sequence[tuple[Sequence[int], int]], excess: int) -> list[int]:
    """Cut ``excess`` tokens, stage by stage: each stage is (segment indices, floor)."""
    out = list(lengths)
    for indices, floor in stages:
        if excess <= 0:
            break
        before = [out[i] for i in indices]
        after = water_fill(before, [floor] * len(before), excess)
        for i, n in zip(indices, after):
            out[i] = n
        excess -= sum(before) - sum(after)
    return out


def fit_lengths(
    lengths: Sequence[int],
    stages: Sequence[tuple[Sequence[int], int]],
    measure: Callable[[list[int]], int],
    max_length: int,
) -> list[int]:
    """Segment lengths whose rendered prompt measures at most ``max_length`` tokens.

    Args:
        lengths: starting token length of each segment.
        stages: cut order, as (segment indices, floor) pairs; a later stage is cut only once the
            earlier ones are at their floors. End with a floor-0 stage over every segment.
        measure: tokens of the whole prompt rendered with the given segment lengths. Tokenizers
            merge across boundaries and a cut adds '...', so the count is measured, not summed.
        max_length: the budget.

    Returns:
        the lengths to cut each segment to (equal to ``lengths`` when it already fits).

    Raises:
        InvalidInputError: even empty segments leave the prompt over ``max_length``.
    """
    lengths = list(lengths)
    total = measure(lengths)
    need = total - max_length
    while need > 0:
        plan = _plan(lengths, stages, need)
        total = measure(plan)
        if total <= max_length:
            return plan
        if plan == _plan(lengths, stages, sum(lengths)):
            raise InvalidInputError(
                f"the prompt needs {total} tokens even with every text cut to its minimum, over "
                f"max_length={max_length}; pass fewer candidates or raise max_length"
            )
        # The measured count overshot the plan (merges, '...'): ask for that much more.
        need += total - max_length
    return lengths
