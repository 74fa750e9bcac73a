"""`eval` end to end on a small hand-made MixInstruct file, with the tiny ranker and fuser checkpoints."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from blender_serve.data import write_records
from blender_serve.eval.harness import EvalSetup, run_eval

MODELS = ["m_good", "m_mid", "m_bad"]


def _records():
    """Six records; m_good copies the reference, m_mid half of it, m_bad is unrelated.
    cmp_results (on the first four) rank m_good > m_mid > m_bad except record 3, where m_mid wins."""
    refs = ["the cat sat on the mat", "paris is the capital of france", "water boils at one hundred degrees",
            "the quick brown fox jumps", "bees make honey from nectar", "seven plus five is twelve"]
    out = []
    for k, ref in enumerate(refs):
        words = ref.split()
        cands = [
            {"model": "m_good", "text": ref},
            {"model": "m_mid", "text": " ".join(words[: len(words) // 2])},
            {"model": "m_bad", "text": "completely unrelated words here ✓"},
        ]
        record = {"id": f"r{k}", "instruction": f"Question {k}: ", "input": "answer briefly", "output": ref,
                  "candidates": cands}
        if k < 4:
            cmp = {"m_good,m_mid": "A is better", "m_good,m_bad": "A is better", "m_mid,m_bad": "A is better"}
            if k == 3:
                cmp["m_good,m_mid"] = "B is better"
            record["cmp_results"] = json.dumps(cmp) if k % 2 else cmp  # both forms
        out.append(record)
    return out


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "mix.json"
    write_records(path, _records())
    return path


def test_every_method_is_measured_and_oracle_beats_every_single_model(data_file, tmp_path, pairrm_original,
                                                                     gen_fuser_dir):
    out = tmp_path / "eval"
    results = run_eval(EvalSetup(data=str(data_file), out=str(out), ranker=str(pairrm_original),
                                 fuser=str(gen_fuser_dir), top_k=2, fuse_max_new_tokens=6, progress=False))
    methods = results["methods"]
    for name in MODELS + ["random", "blender", "oracle-bleu", "oracle-rougeL", "oracle-gpt_rank",
                          "ranker-max_logits", "ranker-max_wins", "ranker-single_order", "ranker-bubble"]:
        assert name in methods, name
    # oracle-<metric> >= every single model on that metric
    for metric in ("bleu", "rouge1", "rouge2", "rougeL"):
        best_single = max(methods[m][metric] for m in MODELS)
        assert methods[f"oracle-{metric}"][metric] >= best_single - 1e-9
    assert methods["m_good"]["rougeL"] == pytest.approx(100.0)
    assert methods["m_bad"]["rougeL"] == pytest.approx(0.0)
    # random sits between the worst and the best model
    assert methods["m_bad"]["rougeL"] < methods["random"]["rougeL"] < methods["m_good"]["rougeL"]
    # GPT-Rank by hand: records 0-2 rank good 1, mid 2, bad 3; record 3: mid 1, good 2, bad 3.
    assert methods["m_good"]["gpt_rank"] == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert methods["m_mid"]["gpt_rank"] == pytest.approx((2 + 2 + 2 + 1) / 4)
    assert methods["m_bad"]["gpt_rank"] == pytest.approx(3.0)
    assert methods["oracle-gpt_rank"]["gpt_rank"] == pytest.approx(1.0)
    assert methods["m_good"]["ge_m_mid"] == pytest.approx(75.0)
    assert methods["m_bad"]["top3"] == pytest.approx(100.0)
    assert methods["m_good"]["n_gpt_rank"] == 4 and methods["m_good"]["n"] == 6
    # the fused answers were written and scored like candidates
    fused = [json.loads(line) for line in (out / "fused.jsonl").read_text().splitlines()]
    assert len(fused) == 6 and all("rougeL" in f["scores"] for f in fused)
    assert methods["blender"]["n"] == 6 and not math.isnan(methods["blender"]["rougeL"])
    # significance: every method against the best single model (m_good, by GPT-Rank) on the same records
    sig = results["significance"]
    assert (sig["metric"], sig["baseline"], sig["higher_is_better"]) == ("gpt_rank", "m_good", False)
    assert sig["methods"]["oracle-gpt_rank"]["delta"] == pytest.approx(0.25)  # 1.25 -> 1.0 over 4 records
    assert sig["methods"]["m_bad"]["delta"] == pytest.approx(-1.75) and sig["methods"]["m_bad"]["ci95"][1] < 0
    assert "blender" not in sig["methods"]  # a fused answer has no GPT rank offline
    assert "paired bootstrap" in (out / "results.md").read_text()
    # fusing only the least confident records mixes fused and picked answers
    assert {"blender-fuse25%", "blender-fuse50%", "blender-fuse75%"} <= set(methods)
    assert methods["blender-fuse50%"]["n"] == 6 and 0 < methods["blender-fuse50%"]["fused_share"] <= 100
    # comparisons per record: full matrix 6, single order 3, bubble 4 (n = 3)
    per = results["ranker"]["comparisons_per_record"]
    assert per == {"max_logits": 6.0, "max_wins": 6.0, "single_order": 3.0, "bubble": 4.0}
    acc = results["ranker"]["pairwise_accuracy"]
    assert set(acc) >= {"rougeL", "cmp_results"} and 0 <= acc["rougeL"]["accuracy"] <= 100
    # files
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"].keys() == methods.keys()
    table = (out / "results.md").read_text()
    assert "| **blender** |" in table and "GPT-Rank" in table and "| m_good |" in table
    for png in ("wins.png", "margin.png", "comparisons.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png


def test_rerun_is_served_from_the_cache_and_equal(data_file, tmp_path, pairrm_original):
    setup = EvalSetup(data=str(data_file), out=str(tmp_path / "e"), ranker=str(pairrm_original), progress=False)
    first = run_eval(setup)
    assert first["ranker"]["cache_misses"] == 6 * 6 and first["ranker"]["cache_hits"] == 0
    second = run_eval(setup)
    assert second["ranker"]["cache_misses"] == 0 and second["ranker"]["cache_hits"] == 36
    for name, row in first["methods"].items():
        for metric, value in row.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(second["methods"][name][metric])
            else:
                assert second["methods"][name][metric] == value, (name, metric)


def test_paired_bootstrap_by_hand():
    from blender_serve.eval.harness import paired_bootstrap

    stats = paired_bootstrap([1, 1, 0, 1, float("nan")], [0, 1, 0, 0, 1])
    assert stats["delta"] == pytest.approx(0.5) and stats["n"] == 4  # the NaN record is left out
    assert stats["ci95"][0] <= 0.5 <= stats["ci95"][1] and 0 <= stats["p_not_better"] < 0.2
    assert paired_bootstrap([2.0, 3.0], [1.0, 1.0], higher_is_better=False)["delta"] == pytest.approx(-1.5)
    assert paired_bootstrap([float("nan")], [1.0]) is None


def test_strategies_played_from_the_matrix_equal_live_ranking(pairrm_original):
    from blender_serve.ranker import PairRanker
    from blender_serve.ranker.aggregation import play

    ranker = PairRanker.from_pretrained(str(pairrm_original), device="cpu")
    source, cands = "Name a colour.", ["red", "a shade of blue", "green, I think", "purple", "no idea"]
    n = len(cands)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    (logits,) = ranker.pair_logits([source], [cands], [pairs])
    M = np.zeros((n, n))
    for (i, j), v in zip(pairs, logits):
        M[i, j] = v
    for strategy in ("max_logits", "max_wins", "single_order", "bubble"):
        live = ranker.rank(source, cands, strategy=strategy, seed=7)
        played = play(strategy, M, np.random.default_rng(7))
        assert played.order == live.order, strategy
        np.testing.assert_allclose(played.scores, live.scores, atol=1e-5)


def test_eval_without_ranker_still_compares_singles_random_and_oracles(data_file, tmp_path):
    results = run_eval(EvalSetup(data=str(data_file), out=str(tmp_path / "e"), progress=False, metrics=["rougeL"]))
    assert results["ranker"] is None
    assert {"m_good", "m_mid", "m_bad", "random", "oracle-rougeL"} <= set(results["methods"])
    assert not any(k.startswith("ranker-") for k in results["methods"])


def test_eval_rejects_a_fuser_without_ranker_and_data_without_quality_signal(data_file, tmp_path, gen_fuser_dir):
    from blender_serve.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="--ranker"):
        run_eval(EvalSetup(data=str(data_file), out=str(tmp_path / "a"), fuser=str(gen_fuser_dir), progress=False))
    bare = tmp_path / "bare.jsonl"
    write_records(bare, [{"id": "x", "instruction": "hi", "candidates": [{"model": "a", "text": "yo"}]}])
    with pytest.raises(InvalidInputError, match="nothing to measure"):
        run_eval(EvalSetup(data=str(bare), out=str(tmp_path / "b"), progress=False))


MIX_MODELS = ["oasst-sft-4-pythia-12b-epoch-3.5", "koala-7B-HF", "alpaca-native", "llama-7b-hf-baize-lora-bf16",
              "flan-t5-xxl", "stablelm-tuned-alpha-7b", "vicuna-13b-1.1", "dolly-v2-12b", "moss-moon-003-sft",
              "chatglm-6b", "mpt-7b", "mpt-7b-instruct"]


def test_mixinstruct_shaped_file_with_its_untidy_corners(tmp_path, pairrm_original):
    """12 candidates, file-provided scores (bartscore, logprobs) on some candidates only, cmp_results as a
    string and as a dict with verdicts naming absent models, empty texts, a lone candidate, no candidates."""
    import random

    rng = random.Random(0)
    records = []
    for k in range(3):
        cands = []
        for m in MIX_MODELS:
            text = "" if (k, m) == (1, "mpt-7b") else " ".join(rng.choice(["paris", "is", "the", "capital", "日本", "✓"])
                                                              for _ in range(rng.randint(1, 8)))
            scores = {"bartscore": -rng.random() * 5, "logprobs": -rng.random() * 50} if rng.random() < 0.7 else {}
            cands.append({"model": m, "text": text, "decoding_method": "top_p_sampling", "scores": scores})
        verdicts = {f"{a},{b}": rng.choice(["A is better", "B is better", "Same good", "Same bad"])
                    for a in MIX_MODELS for b in MIX_MODELS if a < b}
        verdicts["gpt-4,vicuna-13b-1.1"] = "A is better"  # a model that is not among the candidates
        records.append({"id": f"unified_chip2/{k}", "instruction": "", "input": "what is the capital of france " * 3,
                        "output": "paris is the capital" if k % 2 else None, "candidates": cands,
                        "cmp_results": json.dumps(verdicts) if k % 2 else verdicts})
    records.append({"id": "lone", "instruction": "Say hi", "input": "", "candidates": [
        {"model": "koala-7B-HF", "text": "hi", "scores": {"bartscore": -1.0}}]})
    records.append({"id": "empty", "instruction": "Say hi", "input": "", "candidates": []})
    path = tmp_path / "mix.json"
    write_records(path, records)
    results = run_eval(EvalSetup(data=str(path), out=str(tmp_path / "e"), ranker=str(pairrm_original), progress=False))
    methods = results["methods"]
    assert results["data"]["records"] == 5 and results["data"]["with_cmp_results"] == 3
    assert set(MIX_MODELS) <= set(methods) and "oracle-bartscore" in methods and "oracle-gpt_rank" in methods
    assert results["primary"] == "gpt_rank"
    assert methods["oracle-gpt_rank"]["gpt_rank"] == pytest.approx(1.0)
    for m in MIX_MODELS:  # the oracle on a metric is never below a single model on it
        assert methods["oracle-bartscore"]["bartscore"] >= methods[m]["bartscore"] - 1e-9
        assert 1.0 <= methods[m]["gpt_rank"] <= 12.0
    assert methods["ranker-max_logits"]["n"] == 4  # every record with a candidate; the lone one is its own pick
    assert (tmp_path / "e" / "wins.png").is_file()
