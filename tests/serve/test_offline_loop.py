"""The loop around serving, on a real local Ray: `collect` against the served ensemble over HTTP, and a
ranker trained by `train_ranker` served unchanged by the ranker deployment."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from blender_serve.collect import collect
from blender_serve.config import BlenderConfig
from blender_serve.data import read_records, write_records


def test_collect_against_the_served_ensemble(blender_app, tmp_path):
    tasks = tmp_path / "tasks.jsonl"
    write_records(tasks, [{"id": "q1", "instruction": "What is 2 + 2?", "output": "4"},
                          {"id": "q2", "instruction": "Name a colour.", "input": "One word."}])
    # The served ensemble's own model names; sampling and system prompts stay on the server.
    config = BlenderConfig(generators=[{"name": "alpha", "backend": "scripted"}, {"name": "beta", "backend": "scripted"}],
                           ranker={"path": "/unused"})
    out = tmp_path / "cands.jsonl"
    report = asyncio.run(collect(config, tasks, out, endpoint=f"{blender_app}/v1", progress=False))
    assert report.written == 2 and report.failed_generations == {"alpha": 0, "beta": 0}
    records = {r.id: r for r in read_records(out)}
    assert records["q1"].candidate("alpha").text == "alpha says: What is 2 + 2?"
    assert records["q2"].candidate("beta").text == "beta gives a longer answer about Name a colour.\n\nOne word."
    assert "bleu" in records["q1"].candidate("alpha").scores and "bleu" not in records["q2"].candidate("alpha").scores


def test_a_trained_ranker_is_served_unchanged(deploy, tmp_path, pairrm_original, gen_fuser_dir):
    from blender_serve.ranker import PairRanker
    from blender_serve.ranker.pairs import TrainExample
    from blender_serve.ranker.training import TrainConfig, train_ranker
    from blender_serve.testing.apps import scripted_app_args

    examples = [TrainExample(id=f"e{k}", source=f"question {k}", candidates=[f"good answer {k}", f"bad answer {k}", "meh"],
                             scores=[1.0, 0.0, 0.5]) for k in range(6)]
    trained = tmp_path / "trained"
    train_ranker(TrainConfig(init=str(pairrm_original), output_dir=str(trained), epochs=1, batch_size=4, device="cpu",
                             learning_rate=1e-3), examples)
    url = deploy(scripted_app_args(trained, gen_fuser_dir), "trained")
    cands = ["good answer 9", "meh", "bad answer 9"]
    r = httpx.post(f"{url}/v1/rank", json={"source": "question 9", "candidates": cands}, timeout=60)
    assert r.status_code == 200, r.text
    local = PairRanker.from_pretrained(trained, device="cpu").rank("question 9", cands)
    assert r.json()["order"] == local.order
    assert r.json()["scores"] == pytest.approx(local.scores, abs=1e-5)
    before = PairRanker.from_pretrained(pairrm_original, device="cpu").rank("question 9", cands)
    assert local.scores != pytest.approx(before.scores, abs=1e-6)  # the served weights are the trained ones
