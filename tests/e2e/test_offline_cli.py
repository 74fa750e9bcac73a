"""The offline loop as a user types it: `blender-serve data`, `collect`, `train-ranker`, `eval`, in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from blender_serve.data import read_records, write_records

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args, timeout=600):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, "-m", "deployments.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)
    return proc


@pytest.fixture(scope="module")
def ensemble_file(tmp_path_factory, pairrm_original):
    """A bare ensemble: three scripted models of different quality on exact-answer tasks."""
    path = tmp_path_factory.mktemp("cfg") / "ensemble.yaml"
    path.write_text(json.dumps({
        "generators": [
            {"name": "right", "backend": "scripted", "options": {"template": "42"}},
            {"name": "wrong", "backend": "scripted", "options": {"template": "17"}},
            {"name": "chatty", "backend": "scripted", "options": {"template": "I think the answer might be 42"}},
        ],
        "ranker": {"path": str(pairrm_original), "device": "cpu"},
    }))
    return path


def test_collect_train_eval_from_the_command_line(tmp_path, ensemble_file, pairrm_original):
    tasks = tmp_path / "tasks.jsonl"
    write_records(tasks, [{"id": f"q{k}", "instruction": f"What is {k} + {42 - k}? Answer with the number only.",
                           "output": "42", "verifiers": [{"kind": "exact_answer", "answers": ["42"], "mode": "number"},
                                                         {"kind": "max_words", "n": 2}]} for k in range(8)])
    cands = tmp_path / "cands.jsonl"
    proc = _cli("collect", "--config", str(ensemble_file), "--tasks", str(tasks), "--out", str(cands), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["written"] == 8
    records = read_records(cands)
    assert all(r.candidate("right").scores["verify_all"] == 1.0 for r in records)
    assert all(r.candidate("chatty").scores["verify"] == 0.5 for r in records)

    check = _cli("data", "check", str(cands))
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["models"] == {"right": 8, "wrong": 8, "chatty": 8}

    run = tmp_path / "run"
    proc = _cli("train-ranker", "--train", str(cands), "--val", str(cands), "--init", str(pairrm_original),
                "--signal", "verify", "--out", str(run), "--epochs", "1", "--batch-size", "4", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "8 training examples" in proc.stderr
    assert (run / "model.safetensors").is_file() and json.loads((run / "config.json").read_text())["ranker_type"] == "pairranker"

    out = tmp_path / "eval"
    proc = _cli("eval", "--data", str(cands), "--ranker", str(run), "--out", str(out), "--strategies", "max_logits,bubble",
                "--no-progress")
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    methods = results["methods"]
    assert results["primary"] == "verify_all"
    assert methods["right"]["verify_all"] == 1.0 and methods["wrong"]["verify_all"] == 0.0
    assert methods["oracle-verify_all"]["verify_all"] == 1.0
    assert {"ranker-max_logits", "ranker-bubble", "random"} <= set(methods)
    assert "| ranker-bubble |" in proc.stdout  # the table is printed too


def test_data_convert_and_a_malformed_file(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([{"instruction": "Say hi", "input": "", "candidates": [
        {"model": "a", "text": "hi"}, {"model": "b", "text": "hello there"}]}]))
    mix = tmp_path / "mix.jsonl"
    proc = _cli("data", "convert", str(plain), str(mix), "--from", "plain", "--to", "mixinstruct")
    assert proc.returncode == 0, proc.stderr
    (record,) = read_records(mix)
    assert record.id == "plain/0" and record.models == ["a", "b"]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "ok", "candidates": []}) + "\n" +
                   json.dumps({"id": "broken", "candidates": [{"model": "a"}]}) + "\n")
    proc = _cli("data", "check", str(bad))
    assert proc.returncode != 0
    assert "bad.jsonl" in proc.stderr and "record 2" in proc.stderr and "candidates[0].text" in proc.stderr
    proc = _cli("data", "check", str(bad), "--skip-bad")
    assert proc.returncode == 0 and json.loads(proc.stdout)["skipped_bad"] == 1


def test_collect_scores_bertscore_with_a_local_encoder(tmp_path, ensemble_file):
    tasks = tmp_path / "tasks.jsonl"
    write_records(tasks, [{"id": "q", "instruction": "What is 40 + 2?", "output": "42"}])
    out = tmp_path / "cands.jsonl"
    proc = _cli("collect", "--config", str(ensemble_file), "--tasks", str(tasks), "--out", str(out), "--no-progress",
                "--metrics", "rougeL", "--bertscore-model", "local:minilm-l6-v2")
    assert proc.returncode == 0, proc.stderr
    (record,) = read_records(out)
    right, chatty = record.candidate("right").scores, record.candidate("chatty").scores
    assert set(right) == {"rougeL", "bertscore"} and right["bertscore"] == pytest.approx(100.0, abs=0.01)
    assert chatty["bertscore"] < right["bertscore"]
