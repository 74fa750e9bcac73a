"""Text metrics on hand-worked sentences: BLEU (sacrebleu), ROUGE (rouge_score), and score_texts' contract."""

from __future__ import annotations

import math

import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.eval.metrics import TEXT_METRICS, bleu_scores, rouge_scores, score_texts


def test_identical_strings_score_100_everywhere():
    out = score_texts(["the cat sat on the mat"], ["the cat sat on the mat"])
    assert list(out) == list(TEXT_METRICS)
    for metric, values in out.items():
        assert values == [pytest.approx(100.0)], metric


def test_disjoint_strings_score_0_everywhere():
    out = score_texts(["alpha beta gamma"], ["one two three"])
    assert all(values == [0.0] for values in out.values()), out


def test_rouge_hand_worked():
    # hyp "the cat sat", ref "the cat sat on the mat":
    #   rouge1: 3 shared unigrams, P = 3/3, R = 3/6, F = 2PR/(P+R) = 2/3 -> 66.67
    #   rouge2: hyp bigrams {the cat, cat sat} both in ref's 5 bigrams: P = 1, R = 2/5, F = 0.8/1.4 -> 57.14
    #   rougeL: LCS "the cat sat" = 3 tokens: P = 1, R = 1/2 -> 66.67
    out = rouge_scores(["the cat sat"], ["the cat sat on the mat"])
    assert out["rouge1"] == [pytest.approx(200 / 3)]
    assert out["rouge2"] == [pytest.approx(400 / 7)]
    assert out["rougeL"] == [pytest.approx(200 / 3)]


def test_rougeL_sees_order_rouge1_does_not():
    # hyp "cat the sat" vs ref "the cat sat": same bag of words, so rouge1 = 100;
    # hyp bigrams {cat the, the sat} vs ref {the cat, cat sat}: none shared, rouge2 = 0;
    # LCS is 2 ("the sat" or "cat sat"): P = R = 2/3, rougeL = 66.67.
    out = rouge_scores(["cat the sat"], ["the cat sat"])
    assert out == {"rouge1": [pytest.approx(100.0)], "rouge2": [0.0], "rougeL": [pytest.approx(200 / 3)]}


def test_rouge_uses_the_stemmer():
    # Porter: cats -> cat, sitting -> sit, sits -> sit
    assert rouge_scores(["cats sitting"], ["cat sits"], ["rouge1"]) == {"rouge1": [pytest.approx(100.0)]}


def test_bleu_hand_worked_with_effective_order():
    # hyp "the cat sat" (3 tokens) vs ref "the cat sat on the mat" (6): 1-, 2-, 3-gram precisions are
    # all 1 and there is no 4-gram, so effective order averages orders 1..3 only: geometric mean 1.
    # Brevity penalty exp(1 - 6/3) = e^-1 -> BLEU = 100 / e = 36.79.
    assert bleu_scores(["the cat sat"], ["the cat sat on the mat"]) == [pytest.approx(100 / math.e)]


def test_bleu_matches_sacrebleu_corpus_bleu_on_one_sentence():
    import sacrebleu

    # hyp "the cat sat on a mat" vs ref "the cat sat on the mat", both 6 tokens (BP = 1):
    # precisions 5/6, 3/5, 2/4, 1/3 -> (1/12) ** (1/4) = 0.5373 -> 53.73
    hyp, ref = "the cat sat on a mat", "the cat sat on the mat"
    corpus = sacrebleu.corpus_bleu([hyp], [[ref]]).score
    assert bleu_scores([hyp], [ref]) == [pytest.approx(corpus)]
    assert corpus == pytest.approx(100 * (1 / 12) ** 0.25)


def test_empty_hypothesis_or_reference_scores_0():
    out = score_texts(["", "the cat", "  ", ""], ["the cat", "", "the cat", ""])
    assert all(values == [0.0] * 4 for values in out.values()), out


def test_scores_are_per_example_and_in_order():
    out = score_texts(["the cat sat", "alpha", "the cat sat on the mat"],
                      ["the cat sat on the mat", "beta", "the cat sat on the mat"], ["rouge1", "bleu"])
    assert list(out) == ["rouge1", "bleu"]
    assert out["rouge1"] == [pytest.approx(200 / 3), 0.0, pytest.approx(100.0)]
    assert out["bleu"] == [pytest.approx(100 / math.e), 0.0, pytest.approx(100.0)]


def test_unknown_metric_is_an_input_error():
    with pytest.raises(InvalidInputError, match="unknown metric.*meteor"):
        score_texts(["a"], ["a"], ["bleu", "meteor"])


def test_bertscore_without_a_scorer_is_an_input_error():
    with pytest.raises(InvalidInputError, match="bert_scorer"):
        score_texts(["a"], ["a"], ["bertscore"])


def test_length_mismatch_is_an_input_error():
    with pytest.raises(InvalidInputError, match="2 hypotheses but 1 references"):
        score_texts(["a", "b"], ["a"])
    with pytest.raises(InvalidInputError):
        bleu_scores(["a"], [])


def test_non_string_text_is_an_input_error():
    with pytest.raises(InvalidInputError, match=r"references\[0\]"):
        score_texts(["a"], [None])  # type: ignore[list-item]


def test_no_pairs_no_scores():
    assert score_texts([], []) == {m: [] for m in TEXT_METRICS}
