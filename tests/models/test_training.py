"""Fine-tuning a PairRanker on tiny real checkpoints: the loss falls, checkpoints round-trip in the
original layout, both PairRM layouts fine-tune, runs resume exactly, bad input fails clearly."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from blender_serve.errors import InvalidInputError
from blender_serve.ranker import PairRanker
from blender_serve.ranker.checkpoint import read_checkpoint
from blender_serve.ranker.pairs import TrainExample, sample_epoch_pairs, signal_pairs
from blender_serve.ranker.train_state import STATE_JSON, latest_epoch_checkpoint
from blender_serve.ranker.training import REPORT_FILE, RankerTrainer, TrainConfig, train_ranker

# Good answers draw their words from one set, bad ones from another: learnable from the text alone.
GOOD = "Paris Rome Python sea wind poem".split()
BAD = "1 2 3 4 5 6 7 8".split()
FILLER = "capital France Italy sky blue light hello world".split()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_examples(n: int, seed: int) -> list[TrainExample]:
    rng = random.Random(seed)
    out = []
    for k in range(n):
        items = [(" ".join(rng.sample(GOOD, 3)), 1.0), (" ".join(rng.sample(BAD, 3)), 0.0),
                 (" ".join(rng.sample(GOOD, 3)), 1.0), (" ".join(rng.sample(BAD, 3)), 0.0)]
        rng.shuffle(items)  # the best is not always first: ties in a collapsed ranker must not look like skill
        out.append(TrainExample(f"ex{seed}-{k}", "question " + " ".join(rng.sample(FILLER, 3)),
                                [c for c, _ in items], [s for _, s in items]))
    return out




@pytest.fixture(scope="module")
def quiet_backbone(tmp_path_factory) -> Path:
    """The tiny DeBERTa with dropout off: with states this small, dropout noise swamps the signal
    between the two candidates (the library itself trains in train mode, head dropout included)."""
    import torch
    from transformers import DebertaV2Model

    from blender_serve.testing import tiny_models

    out = tmp_path_factory.mktemp("train") / "deberta-quiet"
    tokenizer = tiny_models.deberta_tokenizer()
    config = tiny_models.deberta_config(len(tokenizer))
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    DebertaV2Model(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def small_config(init, output_dir, **overrides) -> TrainConfig:
    fields = dict(init=str(init), output_dir=str(output_dir), epochs=1, learning_rate=3e-3, batch_size=8,
                  pairs_per_example=4, device="cpu", source_maxlength=32, candidate_maxlength=32, resume=False)
    return TrainConfig(**{**fields, **overrides})


@pytest.fixture(scope="module")
def trained(quiet_backbone, tmp_path_factory):
    """One real training run (about 160 steps) shared by the tests that read its results."""
    out = tmp_path_factory.mktemp("train") / "run"
    lines = []
    config = small_config(quiet_backbone, out, epochs=10, seed=1, signal="synthetic", keep_checkpoints=2)
    trainer = RankerTrainer(config, make_examples(32, 0), make_examples(8, 1), log=lines.append, progress=False)
    report = trainer.fit()
    return trainer, report, out, lines


# ---------------------------------------------------------------------------------- pure parts

def test_pair_sampling_draws_signal_pairs_per_seed_and_epoch():
    ex = TrainExample("a", "s", ["x", "y", "z", "x", "w"], [1.0, 1.0, 0.0, 0.5, 0.0])
    # equal scores (x/y, z/w) and equal texts (x/x) carry no signal
    assert signal_pairs(ex) == [(0, 2), (0, 4), (1, 2), (1, 3), (1, 4), (2, 3), (3, 4)]
    examples = [ex] * 200
    one = sample_epoch_pairs(examples, 3, seed=0, epoch=1)
    assert one == sample_epoch_pairs(examples, 3, seed=0, epoch=1)
    assert one != sample_epoch_pairs(examples, 3, seed=0, epoch=2)
    assert len(one) == 600 and len({(p.example, p.first, p.second) for p in one if p.example == 0}) == 3
    allowed = set(signal_pairs(ex)) | {(j, i) for i, j in signal_pairs(ex)}
    assert all((p.first, p.second) in allowed for p in one)
    assert all(p.sign == np.sign(ex.scores[p.first] - ex.scores[p.second]) for p in one)
    better_first = np.mean([p.sign > 0 for p in one])
    assert 0.4 < better_first < 0.6  # order shuffled 50/50


def test_pair_loss_is_minus_log_sigmoid_of_the_signed_logit():
    import torch

    from blender_serve.ranker.trainer import pair_loss

    logits, signs = torch.tensor([2.0, -1.0, 0.5]), torch.tensor([1.0, 1.0, -1.0])
    expected = -np.mean(np.log(1 / (1 + np.exp(-np.array([2.0, -1.0, -0.5])))))
    assert float(pair_loss(logits, signs)) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------------- training

def test_training_lowers_the_loss_and_learns_the_ranking(trained):
    _, report, out, lines = trained
    losses = [e.train_loss for e in report.epochs]
    assert losses[-1] < 0.5 * losses[0], losses
    assert report.final_val.pairwise_accuracy > 0.9
    assert report.final_val.pairwise_accuracy > report.initial_val.pairwise_accuracy
    assert report.final_val.top1_score > report.final_val.random_score
    assert report.final_val.oracle_score == 1.0 and report.final_val.random_score == 0.5
    assert report.global_step == 10 * 16 and report.pairs_per_epoch == 32 * 4 and not report.stopped_at_max_steps
    assert len(lines) == 11 and lines[0].startswith("before training") and lines[-1].startswith("epoch 10/10")
    on_disk = json.loads((out / REPORT_FILE).read_text())
    assert on_disk["epochs"][-1]["val"]["pairwise_accuracy"] == report.final_val.pairwise_accuracy
    # keep_checkpoints=2: only the two newest epoch checkpoints are left
    assert sorted(p.name for p in out.glob("checkpoint-epoch-*")) == ["checkpoint-epoch-10", "checkpoint-epoch-9"]


def test_the_final_checkpoint_round_trips_in_the_original_layout(trained):
    trainer, report, out, _ = trained
    assert Path(report.final_checkpoint) == out
    ckpt = read_checkpoint(out)
    assert ckpt.layout == "original"
    config = json.loads((out / "config.json").read_text())
    assert config["ranker_type"] == "pairranker" and config["model_type"] == "deberta"
    assert (config["loss_type"], config["num_pos"], config["num_neg"]) == ("instructgpt", 4, 4)
    assert (config["sub_sampling_mode"], config["signal"], config["epochs"]) == ("all_pair", "synthetic", 10)
    assert config["learning_rate"] == 3e-3 and "fine-tuned" in config["note"]
    assert (config["source_maxlength"], config["candidate_maxlength"]) == (32, 32)

    live = trainer.as_ranker()
    loaded = PairRanker.from_pretrained(out, device="cpu")
    val = make_examples(4, 1)
    for ex in val:
        np.testing.assert_allclose(loaded.rank(ex.source, ex.candidates).scores,
                                   live.rank(ex.source, ex.candidates).scores, atol=1e-5)
    # the reported pairwise accuracy is compare()'s both-orders sign against the target sign
    pairs = [(ex, i, j) for ex in make_examples(8, 1) for i, j in signal_pairs(ex)]
    logits = live.compare_batch([ex.source for ex, _, _ in pairs], [ex.candidates[i] for ex, i, _ in pairs],
                                [ex.candidates[j] for ex, _, j in pairs])
    agree = [np.sign(v) == np.sign(ex.scores[i] - ex.scores[j]) for v, (ex, i, j) in zip(logits, pairs)]
    assert report.final_val.pairwise_accuracy == pytest.approx(np.mean(agree)) and len(agree) == report.final_val.pairs
    a = live.compare(val[0].source, val[0].candidates[0], val[0].candidates[1])
    assert abs(a) > 0.1  # a trained ranker, not float noise
    assert loaded.compare(val[0].source, val[0].candidates[0], val[0].candidates[1]) == pytest.approx(a, abs=1e-5)


@pytest.mark.parametrize("layout", ["original", "hf"])
def test_fine_tuning_an_existing_pairrm_checkpoint_writes_the_original_layout(layout, pairrm_original, pairrm_hf,
                                                                             tmp_path):
    init = pairrm_original if layout == "original" else pairrm_hf
    before = PairRanker.from_pretrained(init, device="cpu")
    config = small_config(init, tmp_path / "ft", learning_rate=1e-4, max_steps=2, val_every_epoch=False,
                          source_maxlength=None, candidate_maxlength=None)
    report = train_ranker(config, make_examples(6, 0), make_examples(2, 1), log=lambda line: None)
    assert report.init_kind == f"pairrm-{layout}" and report.global_step == 2 and report.stopped_at_max_steps
    assert report.epochs[0].complete is False and report.final_val is not None
    assert read_checkpoint(tmp_path / "ft").layout == "original"
    after = PairRanker.from_pretrained(tmp_path / "ft", device="cpu")
    # budgets come from the checkpoint: 128/64 in the original fixture, PairRM's defaults in the -hf one
    expected = (128, 64) if layout == "original" else (1224, 412)
    assert (after.encoder.source_max_length, after.encoder.candidate_max_length) == expected
    w0 = before.model.head_layer[4].weight.detach()
    assert not np.allclose(w0.numpy(), after.model.head_layer[4].weight.detach().numpy())
    # a max_steps stop mid-epoch writes the final model but no epoch checkpoint
    assert latest_epoch_checkpoint(tmp_path / "ft") is None


def test_resume_continues_at_the_next_epoch_and_reproduces_an_uninterrupted_run(quiet_backbone, tmp_path):
    train = make_examples(6, 0)  # 24 pairs: 3 micro-batches of 8, 2 optimizer steps per epoch
    common = dict(epochs=2, grad_accum=2, val_every_epoch=False)
    straight = train_ranker(small_config(quiet_backbone, tmp_path / "straight", **common), train, log=lambda line: None)

    # a run killed during epoch 2: epoch 1's checkpoint complete, a half-written one beside it
    out = tmp_path / "killed"
    shutil.copytree(tmp_path / "straight", out)
    shutil.rmtree(out / "checkpoint-epoch-2")
    (out / ".tmp-checkpoint-epoch-2-x").mkdir()
    (out / "checkpoint-epoch-3").mkdir()  # incomplete: no trainer_state.json, ignored
    lines = []
    resumed = train_ranker(small_config(quiet_backbone, out, resume=True, **common), train, log=lines.append)
    assert resumed.resumed_from_epoch == 1 and [e.epoch for e in resumed.epochs] == [1, 2]
    assert lines[0].startswith("resuming from epoch 1")
    assert resumed.global_step == straight.global_step == 4
    assert resumed.epochs[1].train_loss == pytest.approx(straight.epochs[1].train_loss, abs=1e-6)
    assert not (out / ".tmp-checkpoint-epoch-2-x").exists()
    a, b = PairRanker.from_pretrained(out, device="cpu"), PairRanker.from_pretrained(tmp_path / "straight", device="cpu")
    ex = make_examples(1, 5)[0]
    np.testing.assert_allclose(a.rank(ex.source, ex.candidates).scores, b.rank(ex.source, ex.candidates).scores, atol=1e-5)

    # more epochs on a finished run: starts at epoch 3
    more = train_ranker(small_config(quiet_backbone, out, resume=True, **{**common, "epochs": 3}), train,
                        log=lambda line: None)
    assert more.resumed_from_epoch == 2 and [e.epoch for e in more.epochs] == [1, 2, 3] and more.global_step == 6
    assert json.loads((out / "checkpoint-epoch-3" / STATE_JSON).read_text())["epoch"] == 3
    assert json.loads((out / "config.json").read_text())["epochs"] == 3

    # another init in the same output_dir is refused, not silently mixed
    with pytest.raises(InvalidInputError, match="resume=False"):
        train_ranker(small_config(tmp_path, out, resume=True, epochs=4), train)


# ---------------------------------------------------------------------------------- bad input

def test_bad_settings_and_records_fail_clearly(quiet_backbone, tmp_path):
    good = make_examples(2, 0)
    with pytest.raises(InvalidInputError, match="mixed_precision 'fp16' needs a GPU"):
        train_ranker(small_config(quiet_backbone, tmp_path, mixed_precision="fp16"), good)
    with pytest.raises(InvalidInputError, match="'lonely'.*1 candidate"):
        train_ranker(small_config(quiet_backbone, tmp_path), good + [TrainExample("lonely", "s", ["only"], [1.0])])
    with pytest.raises(InvalidInputError, match="'short'.*2 candidates but 1 scores"):
        train_ranker(small_config(quiet_backbone, tmp_path), good + [TrainExample("short", "s", ["a", "b"], [1.0])])
    with pytest.raises(InvalidInputError, match="val example 'v'"):
        train_ranker(small_config(quiet_backbone, tmp_path), good, [TrainExample("v", "s", ["a", "b"], [1.0, float("nan")])])
    with pytest.raises(InvalidInputError, match="no training pair"):
        train_ranker(small_config(quiet_backbone, tmp_path), [TrainExample("tie", "s", ["a", "b"], [0.5, 0.5])])
    with pytest.raises(ValueError, match="epoch"):  # unknown keys are rejected (pydantic)
        TrainConfig(init="x", output_dir="y", epoch=3)
    assert not any(tmp_path.iterdir())  # nothing was written before the input was checked


def test_every_train_config_field_has_a_description():
    missing = [name for name, field in TrainConfig.model_fields.items() if not (field.description or "").strip()]
    assert missing == []


def test_a_run_after_other_accelerate_settings_in_this_process_still_trains(quiet_backbone, tmp_path):
    from accelerate import Accelerator

    from blender_serve.ranker.train_init import _reset_accelerate_state

    _reset_accelerate_state()  # earlier tests set accelerate's process-wide state; set it differently
    Accelerator(cpu=True, mixed_precision="bf16")
    report = train_ranker(small_config(quiet_backbone, tmp_path / "again", max_steps=1, val_every_epoch=False),
                          make_examples(4, 0), log=lambda line: None)
    assert report.global_step == 1 and (tmp_path / "again" / "model.safetensors").is_file()
