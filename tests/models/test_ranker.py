"""PairRanker on tiny real checkpoints: both layouts, save/reload, batching, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from blender_serve.config import RankerConfig
from blender_serve.errors import CheckpointError, InvalidInputError, UnknownStrategyError
from blender_serve.ranker import PairRanker


SOURCE = "Which answer is best?"
CANDS = ["first answer", "a second, longer answer with more words", "third", "the fourth one", "5"]


@pytest.fixture(scope="module")
def ranker(pairrm_original):
    return PairRanker.from_pretrained(pairrm_original, device="cpu")


def test_both_layouts_give_the_same_scores(ranker, pairrm_hf):
    hf = PairRanker.from_pretrained(pairrm_hf, device="cpu")
    np.testing.assert_allclose(hf.rank(SOURCE, CANDS).scores, ranker.rank(SOURCE, CANDS).scores, atol=1e-5)
    # The -hf layout has no source/candidate max lengths: PairRM's published defaults apply.
    assert (hf.encoder.source_max_length, hf.encoder.candidate_max_length) == (1224, 412)


def test_save_original_layout_roundtrip(ranker, tmp_path):
    ranker.save_pretrained(tmp_path / "saved")
    assert {"config.json", "model.safetensors"} <= {p.name for p in (tmp_path / "saved").iterdir()}
    again = PairRanker.from_pretrained(tmp_path / "saved", device="cpu")
    np.testing.assert_allclose(again.rank(SOURCE, CANDS).scores, ranker.rank(SOURCE, CANDS).scores, atol=1e-6)


def test_batch_size_and_batch_composition_do_not_change_scores(pairrm_original, ranker):
    one = PairRanker.from_pretrained(pairrm_original, device="cpu", batch_size=1)
    long_source = "context " * 300
    alone = [one.rank(s, c).scores for s, c in [(SOURCE, CANDS), (long_source, CANDS[:3])]]
    together = ranker.rank_batch([SOURCE, long_source], [CANDS, CANDS[:3]])
    for a, b in zip(alone, together):
        np.testing.assert_allclose(a, b.scores, atol=1e-5)


def test_short_source_lends_room_to_candidates(ranker):
    enc = ranker.encoder
    short = enc.encode_group("hi", ["word " * 500])
    long = enc.encode_group("word " * 500, ["word " * 500])
    assert len(long.source_ids) == enc.source_max_length
    assert len(long.candidate_ids[0]) == enc.candidate_max_length
    expected = enc.candidate_max_length + (enc.source_max_length - len(short.source_ids)) // 2
    assert len(short.candidate_ids[0]) == expected > enc.candidate_max_length


def test_compare_modes_and_antisymmetry(ranker):
    both = ranker.compare(SOURCE, CANDS[0], CANDS[1])
    single = ranker.compare(SOURCE, CANDS[0], CANDS[1], mode="single")
    rev = ranker.compare(SOURCE, CANDS[0], CANDS[1], mode="reversed")
    assert both == pytest.approx(single + rev, abs=1e-5)
    assert ranker.compare(SOURCE, CANDS[1], CANDS[0]) == pytest.approx(-both, abs=1e-5)


def test_rank_result_shape_and_top_k(ranker):
    full = ranker.rank(SOURCE, CANDS)
    assert sorted(full.order) == list(range(len(CANDS))) and len(full.scores) == len(CANDS)
    assert full.num_forward_pairs == len(CANDS) * (len(CANDS) - 1)
    M = np.array(full.matrix)  # M[i][j] = f(c_i, c_j), the single-pass logit of each ordered pair
    assert M.shape == (len(CANDS), len(CANDS)) and np.all(np.diag(M) == 0)
    for i, j in [(0, 1), (1, 0), (2, 4), (4, 3)]:
        assert M[i, j] == pytest.approx(ranker.compare(SOURCE, CANDS[i], CANDS[j], mode="single"), abs=1e-5)
    assert all(full.scores[full.order[k]] >= full.scores[full.order[k + 1]] for k in range(len(CANDS) - 1))
    top2 = ranker.rank(SOURCE, CANDS, top_k=2)
    assert top2.order == full.order[:2] and top2.scores == full.scores
    assert full.ranks[full.order[0]] == 1


def test_bf16_on_cpu_agrees_in_order(pairrm_original, ranker):
    bf16 = PairRanker.from_pretrained(pairrm_original, device="cpu", dtype="bfloat16")
    a, b = bf16.rank(SOURCE, CANDS), ranker.rank(SOURCE, CANDS)
    assert np.corrcoef(a.scores, b.scores)[0, 1] > 0.95


def test_from_config(pairrm_hf):
    r = PairRanker.from_config(RankerConfig(path=str(pairrm_hf), device="cpu", batch_size=3, source_max_length=64))
    assert r.batch_size == 3 and r.encoder.source_max_length == 64


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda r: r.rank(SOURCE, []), "at least 2"),
        (lambda r: r.rank(SOURCE, ["only one"]), "nothing to compare"),
        (lambda r: r.rank(SOURCE, ["a", 3]), r"candidates\[1\] must be a str"),
        (lambda r: r.rank(SOURCE, "a string, not a list"), "list of str"),
        (lambda r: r.rank(None, ["a", "b"]), "source must be a str"),
        (lambda r: r.rank(SOURCE, ["a", "b"], top_k=0), "top_k"),
        (lambda r: r.rank_batch([SOURCE, SOURCE], [["a", "b"]]), "one list per source"),
        (lambda r: r.compare(SOURCE, "a", 5), "must be a str"),
        (lambda r: r.compare(SOURCE, "a", "b", mode="sideways"), "compare mode"),
        (lambda r: r.compare_batch([SOURCE], ["a"], ["b", "c"]), "equal lengths"),
        (lambda r: r.compare_batch(SOURCE, "a", "b"), "list of str"),
    ],
)
def test_bad_input_is_a_typed_error(ranker, call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(ranker)


def test_unknown_strategy(ranker):
    with pytest.raises(UnknownStrategyError, match="use one of"):
        ranker.rank(SOURCE, CANDS, strategy="nope")


def test_bad_checkpoints(tmp_path, deberta_backbone):
    with pytest.raises(CheckpointError, match="config.json"):
        PairRanker.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        PairRanker.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{"ranker_type": "pairranker", "model_name": "%s"}' % deberta_backbone)
    with pytest.raises(CheckpointError, match="no weights"):
        PairRanker.from_pretrained(tmp_path)
    # A plain backbone is not a ranker: no head, no prefix tokens in its embeddings.
    with pytest.raises(CheckpointError):
        PairRanker.from_pretrained(deberta_backbone)


def test_batches_respect_rows_and_padded_token_budget(pairrm_original):
    r = PairRanker.from_pretrained(pairrm_original, device="cpu", batch_size=3, max_batch_tokens=100)
    lengths = [10, 20, 30, 30, 40, 60, 90, 120]
    batches = list(r._batches(list(range(len(lengths))), lengths))
    assert [i for b in batches for i in b] == list(range(len(lengths)))  # every pair once, in order
    for b in batches:
        assert len(b) <= 3 and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= 100)
    # One pair longer than the budget still gets its own pass.
    assert batches[-1] == [7]
