"""GPT-Rank from ChatGPT's pairwise verdicts, worked by hand: matrix, scores, ranks, and the summary columns."""

from __future__ import annotations

import json
import math

import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.data.records import MixRecord
from blender_serve.eval.gpt_rank import gpt_rank_summary, gpt_ranks, model_gpt_ranks, record_gpt_ranks

MODELS = ["a", "b", "c", "d"]
CMP = {
    "a,b": "A is better",  # M[a,b] += 1,   M[b,a] -= 1
    "a,c": "Same good",    # M[a,c] += 0.5, M[c,a] += 0.5
    "d,a": "A is better",  # M[d,a] += 1,   M[a,d] -= 1   (keys come in either order)
    "b,c": "Same bad",     # M[b,c] -= 0.5, M[c,b] -= 0.5
    "b,d": "B is better",  # M[b,d] -= 1,   M[d,b] += 1
    "c,d": "A is better",  # M[c,d] += 1,   M[d,c] -= 1
}
# M (rows a, b, c, d):          M - Mᵀ:                       row sums (scores):
#   a [  0,   1,  .5, -1]         a [ 0,  2,  0, -2]            a  0
#   b [ -1,   0, -.5, -1]         b [-2,  0,  0, -2]            b -4
#   c [ .5, -.5,   0,  1]         c [ 0,  0,  0,  2]            c  2
#   d [  1,   1,  -1,  0]         d [ 2,  2, -2,  0]            d  2
# "Same good"/"Same bad" cancel in M - Mᵀ. Ranks: c and d tie for 1, a is 3 (two score higher), b 4.
RANKS = {"a": 3, "b": 4, "c": 1, "d": 1}


def _record(cmp_results) -> MixRecord:
    return MixRecord(id="r", candidates=[{"model": m, "text": m} for m in MODELS], cmp_results=cmp_results)


def test_hand_worked_record():
    assert record_gpt_ranks(_record(CMP)) == RANKS
    assert record_gpt_ranks(_record(json.dumps(CMP))) == RANKS  # MixInstruct sometimes stores a JSON string


def test_a_record_without_verdicts_has_no_ranks():
    assert record_gpt_ranks(_record(None)) is None
    assert record_gpt_ranks(_record({})) is None


def test_gpt_ranks_ties_share_the_better_rank():
    assert gpt_ranks({"a": 0.0, "b": -4.0, "c": 2.0, "d": 2.0}) == RANKS
    assert gpt_ranks({}) == {}


RECORDS = [
    RANKS,                                # r0: the record above
    {"a": 1, "b": 2, "c": 3, "d": 4},     # r1
    None,                                 # r2: no cmp_results -> skipped by every method
    {"a": 2, "b": 1, "c": 4, "d": 3},     # r3
]


def test_summary_hand_worked():
    selections = {
        # ranks 3, 1, -, 2 -> mean 2; <= b's (4, 2, -, 1): yes yes no; <= d's (1, 4, -, 3): no yes yes
        "always-a": ["a", "a", "a", "a"],
        # r0 c -> 1, r1 not scored (None), r2 no ranks, r3 d -> 3: mean 2, n 2;
        # <= b: 1<=4 yes, 3<=1 no; <= d: 1<=1 yes (a tie counts), 3<=3 yes
        "picker": ["c", None, "b", "d"],
        # ranks 4, 4, -, 4 -> mean 4; <= b: 4<=4 yes, 4<=2 no, 4<=1 no; <= d: no, 4<=4 yes, 4<=3 no
        "worst": ["b", "d", "a", "c"],
    }
    out = gpt_rank_summary(RECORDS, selections, ["b", "d"])
    assert out["always-a"] == {"gpt_rank": 2.0, "ge_b": pytest.approx(200 / 3), "ge_d": pytest.approx(200 / 3),
                               "top3": 100.0, "n": 3}
    assert out["picker"] == {"gpt_rank": 2.0, "ge_b": 50.0, "ge_d": 100.0, "top3": 100.0, "n": 2}
    assert out["worst"] == {"gpt_rank": 4.0, "ge_b": pytest.approx(100 / 3), "ge_d": pytest.approx(100 / 3),
                            "top3": 0.0, "n": 3}
    assert list(out["always-a"]) == ["gpt_rank", "ge_b", "ge_d", "top3", "n"]


def test_the_oracle_scores_1_and_100():
    oracle = [min(r, key=r.get) if r else None for r in RECORDS]
    out = gpt_rank_summary(RECORDS, {"oracle": oracle}, ["a", "b", "c", "d"])["oracle"]
    assert out == {"gpt_rank": 1.0, "ge_a": 100.0, "ge_b": 100.0, "ge_c": 100.0, "ge_d": 100.0, "top3": 100.0, "n": 3}


def test_a_method_with_nothing_scored_reports_nan():
    out = gpt_rank_summary(RECORDS, {"none": [None] * 4}, ["a"])["none"]
    assert out["n"] == 0 and all(math.isnan(out[k]) for k in ("gpt_rank", "ge_a", "top3"))


def test_summary_input_errors():
    with pytest.raises(InvalidInputError, match="3 selections for 4 records"):
        gpt_rank_summary(RECORDS, {"short": ["a", "a", "a"]}, [])
    with pytest.raises(InvalidInputError, match="no GPT rank for 'z'"):
        gpt_rank_summary(RECORDS, {"bad": ["z", None, None, None]}, [])


def test_a_compared_model_missing_from_a_record_leaves_only_that_column():
    records = [{"a": 1, "b": 2}, {"a": 2, "b": 1, "x": 3}, {"a": 3, "b": 1, "x": 2}]
    out = gpt_rank_summary(records, {"always-a": ["a", "a", "a"]}, ["b", "x"])["always-a"]
    # ge_b over all 3 records: 1<=2 yes, 2<=1 no, 3<=1 no; ge_x over the 2 that rank x: 2<=3 yes, 3<=2 no
    assert out == {"gpt_rank": 2.0, "ge_b": pytest.approx(100 / 3), "ge_x": 50.0, "top3": 100.0, "n": 3}
    assert math.isnan(gpt_rank_summary(records[:1], {"a": ["a"]}, ["x"])["a"]["ge_x"])


def test_model_gpt_ranks_average_over_ranked_records():
    # a: (3+1+2)/3, b: (4+2+1)/3, c: (1+3+4)/3, d: (1+4+3)/3
    assert model_gpt_ranks(RECORDS) == pytest.approx({"a": 2.0, "b": 7 / 3, "c": 8 / 3, "d": 8 / 3})


def test_from_verdicts_to_summary():
    records = [record_gpt_ranks(_record(CMP)), record_gpt_ranks(_record(None))]
    out = gpt_rank_summary(records, {"vicuna": ["a", "a"]}, ["c"])
    assert out == {"vicuna": {"gpt_rank": 3.0, "ge_c": 0.0, "top3": 100.0, "n": 1}}
