"""GPT-Rank: how good a selection method's picks are by ChatGPT's pairwise verdicts (MixInstruct test).

Per record, the candidates' GPT scores (row sums of M - Mᵀ over the verdict matrix,
``blender_serve.data.preferences.cmp_scores``) become ranks, 1 = best, ties sharing the better
rank. A selection method picks one model per record; its GPT-Rank is the mean rank of its picks
(lower is better), "≥ X %" the share of records where its pick ranks at least as well as model X's,
"Top-3 %" the share where its pick ranks 3 or better. Everything but :func:`record_gpt_ranks`
takes plain data.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

from blender_serve.errors import InvalidInputError
from blender_serve.ordering import ranks_from_scores

if TYPE_CHECKING:
    from blender_serve.data.records import MixRecord

__all__ = ["record_gpt_ranks", "gpt_ranks", "gpt_rank_summary", "model_gpt_ranks"]


def record_gpt_ranks(record: "MixRecord") -> Optional[dict[str, int]]:
    """GPT ranks of one record's candidates from its ChatGPT verdicts; None without verdicts.

    The scores are ``blender_serve.data.preferences.cmp_scores`` (row sums of M - Mᵀ, so a win
    counts +2, a loss -2 and "Same good"/"Same bad" cancel out), ranked by :func:`gpt_ranks`.
    Example: ``record_gpt_ranks(MixRecord(id=1, candidates=[a, b], cmp_results={"a,b": "A is better"}))
    == {"a": 1, "b": 2}``.
    """
    from blender_serve.data.preferences import cmp_scores

    scores = cmp_scores(record)
    return None if scores is None else gpt_ranks(scores)


def gpt_ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Model -> rank (1 = best; equal scores share the better rank).

    Example: ``gpt_ranks({"a": 2.0, "b": 5.0, "c": 2.0}) == {"a": 2, "b": 1, "c": 2}``.
    """
    names = list(scores)
    return dict(zip(names, ranks_from_scores([scores[n] for n in names])))


def gpt_rank_summary(record_ranks: Sequence[Optional[Mapping[str, int]]],
                     selections: Mapping[str, Sequence[Optional[str]]],
                     compare_to: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """The paper's GPT-Rank columns for each selection method.

    Args:
        record_ranks: per record, model -> GPT rank (:func:`gpt_ranks`); None or empty for a record
            without verdicts, which every method skips.
        selections: method -> the model it picked on each record (as long as ``record_ranks``);
            None skips that record for that method.
        compare_to: models X for the ``ge_<X>`` columns; a record that does not rank X is left
            out of that column only (its share is over the records ranking both).
    Returns:
        method -> ``{"gpt_rank": mean rank, "ge_<X>": %, ..., "top3": %, "n": records counted}``;
        percentages on 0-100; a share over no records is NaN.
    Raises:
        InvalidInputError: a selection list of the wrong length, or a pick that the record's
            ranks do not name (a method can only pick among the judged candidates).
    Example::

        gpt_rank_summary([{"a": 1, "b": 2}, {"a": 2, "b": 1}], {"pick-a": ["a", "a"]}, ["b"])
        # -> {"pick-a": {"gpt_rank": 1.5, "ge_b": 50.0, "top3": 100.0, "n": 2}}
    """
    out: dict[str, dict[str, float]] = {}
    for method, picks in selections.items():
        if len(picks) != len(record_ranks):
            raise InvalidInputError(
                f"method {method!r} has {len(picks)} selections for {len(record_ranks)} records; pass one per record (None to skip)")
        ranks, at_least, compared = [], {x: 0 for x in compare_to}, {x: 0 for x in compare_to}
        for i, (pick, by_model) in enumerate(zip(picks, record_ranks)):
            if pick is None or not by_model:
                continue
            if pick not in by_model:
                raise InvalidInputError(
                    f"record {i} has no GPT rank for {pick!r} (method {method!r}); ranked: {sorted(by_model)}")
            ranks.append(by_model[pick])
            for x in compare_to:
                if x in by_model:
                    compared[x] += 1
                    at_least[x] += by_model[pick] <= by_model[x]
        n = len(ranks)
        row: dict[str, float] = {"gpt_rank": _share(sum(ranks), n, 1.0)}
        row.update({f"ge_{x}": _share(at_least[x], compared[x]) for x in compare_to})
        row["top3"] = _share(sum(r <= 3 for r in ranks), n)
        row["n"] = n
        out[method] = row
    return out


def _share(total: float, n: int, scale: float = 100.0) -> float:
    return scale * total / n if n else math.nan


def model_gpt_ranks(record_ranks: Sequence[Optional[Mapping[str, int]]]) -> dict[str, float]:
    """Each model's own GPT-Rank: its mean rank over the records that rank it.

    Example: ``model_gpt_ranks([{"a": 1, "b": 2}, None, {"a": 2, "b": 1}]) == {"a": 1.5, "b": 1.5}``.
    """
    totals: dict[str, list[int]] = {}
    for by_model in record_ranks:
        for model, rank in (by_model or {}).items():
            totals.setdefault(model, []).append(rank)
    return {model: sum(r) / len(r) for model, r in totals.items()}
