"""The training loop of ``blender_serve.ranker.training``: one accelerate loop for CPU and GPU.

Imported by the training path only; torch, transformers and accelerate load inside functions.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from blender_serve.devices import resolve_device
from blender_serve.errors import InvalidInputError
from blender_serve.progress import progress_bar
from blender_serve.ranker.encoding import PairEncoder
from blender_serve.ranker.pairs import TrainExample, TrainPair, check_examples, sample_epoch_pairs, signal_pairs
from blender_serve.ranker.train_config import (
    REPORT_FILE,
    EpochReport,
    TrainConfig,
    TrainReport,
    epoch_report_from_dict,
    linear_schedule,
)
from blender_serve.ranker import train_state
from blender_serve.ranker.train_init import StartingPoint, load_starting_point, make_accelerator
from blender_serve.ranker.validation import ValMetrics, evaluate_ranker

__all__ = ["RankerTrainer", "pair_loss"]

logger = logging.getLogger("blender_serve.ranker.training")


def pair_loss(logits, signs):
    """The "instructgpt" loss: mean of -log sigmoid(l * sign(score1 - score2)).

    logits: [B] model logits (> 0: candidate1 better); signs: [B] in {-1, +1} -> scalar.
    """
    import torch.nn.functional as F

    assert logits.shape == signs.shape, f"logits {tuple(logits.shape)} vs signs {tuple(signs.shape)}"
    return -F.logsigmoid(logits.float() * signs.float()).mean()


def _param_groups(model, lr: float, head_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """Encoder and head at their own rates; matrices decay, biases and norm weights never do.
    Always the same four groups, so a resumed run's optimizer state fits whatever the settings."""
    groups: dict[tuple[bool, bool], list] = {(h, d): [] for h in (False, True) for d in (False, True)}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups[(name.startswith("head_layer."), p.ndim >= 2)].append(p)
    return [{"params": ps, "lr": head_lr if head else lr, "weight_decay": weight_decay if decay else 0.0}
            for (head, decay), ps in sorted(groups.items())]


class RankerTrainer:
    """One training run; ``fit()`` runs it. ``train_ranker`` is the one-call form.

    After ``fit()``, ``model`` and ``tokenizer`` hold the trained ranker in memory and
    ``as_ranker()`` wraps them in a ``PairRanker`` (the same object validation uses).
    """

    def __init__(self, config: TrainConfig | dict, train: Sequence[TrainExample], val: Sequence[TrainExample] = (), *,
                 log: Optional[Callable[[str], None]] = None, progress: Optional[bool] = None):
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.model_validate(config)
        check_examples(train, "train")
        check_examples(val, "val")
        self.train, self.val = list(train), list(val)
        counts = [min(len(signal_pairs(ex)), self.config.pairs_per_example) for ex in self.train]
        self.pairs_per_epoch, self.skipped_examples = sum(counts), counts.count(0)
        if self.pairs_per_epoch == 0:
            raise InvalidInputError(
                f"no training pair: in all {len(self.train)} train examples the candidates have equal scores (or "
                "identical texts); a pairwise ranker learns only from differently scored candidates"
            )
        self.log = log or logger.info
        self.progress = progress
        self.device = self._resolve_device()
        self.model = self.tokenizer = self.encoder = self.accelerator = None
        self.start: Optional[StartingPoint] = None

    def _resolve_device(self) -> str:
        import torch

        c = self.config
        if c.device == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError("device 'cuda' was asked for but no CUDA GPU is visible; use device 'cpu' or 'auto'")
        device = resolve_device(c.device)
        if device == "cpu" and c.mixed_precision != "no":
            raise InvalidInputError(f"mixed_precision {c.mixed_precision!r} needs a GPU; on CPU the ranker trains in "
                                    "float32: use mixed_precision 'no' (or device 'cuda')")
        return device

    def _init_id(self) -> str:
        path = Path(self.config.init).expanduser()
        return str(path.resolve()) if path.exists() else self.config.init

    # ------------------------------------------------------------------ batches
    def _collate(self, pairs: list[TrainPair]) -> dict[str, Any]:
        """Encode pairs exactly as serving does, pad at the end: ids/mask [B, T], positions [B, 3], signs [B]."""
        import torch

        items = []
        for p in pairs:
            ex = self.train[p.example]
            group = self.encoder.encode_group(ex.source, [ex.candidates[p.first], ex.candidates[p.second]])
            items.append(self.encoder.pair(group, 0, 1))
        width = max(len(ids) for ids, _ in items)
        ids = torch.full((len(items), width), self.encoder.pad_id, dtype=torch.long)
        mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, (seq, _) in enumerate(items):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask,
                "prefix_positions": torch.tensor([pos for _, pos in items], dtype=torch.long),
                "signs": torch.tensor([p.sign for p in pairs], dtype=torch.float32)}

    # ------------------------------------------------------------------ model I/O
    def as_ranker(self):
        """A PairRanker around the in-memory model (puts it in eval mode)."""
        from blender_serve.ranker.ranker import PairRanker

        if self.accelerator is None:
            raise InvalidInputError("as_ranker() wraps the trained model: call fit() first")
        model = self.accelerator.unwrap_model(self.model)
        return PairRanker(model, self.tokenizer, source_max_length=self.encoder.source_max_length,
                          candidate_max_length=self.encoder.candidate_max_length, device=str(self.accelerator.device),
                          batch_size=max(8, 2 * self.config.batch_size))

    def _validate(self) -> Optional[ValMetrics]:
        if not self.val:
            return None
        ranker = self.as_ranker()
        try:
            return evaluate_ranker(ranker, self.val)
        finally:
            ranker.model.train()

    def _extra(self, epochs_done: int, global_step: int) -> dict[str, Any]:
        c, k = self.config, self.config.pairs_per_example
        extra = dict(self.start.extra)
        extra.update({
            "loss_type": "instructgpt", "num_pos": k, "num_neg": k, "sub_sampling_mode": "all_pair",
            "epochs": epochs_done, "learning_rate": c.learning_rate, "head_learning_rate": self.head_lr,
            "trained_from": self._init_id(),
            "note": (f"fine-tuned by blender-serve from {self._init_id()} ({self.init_kind}): {epochs_done} epoch(s), "
                     f"{global_step} optimizer steps, instructgpt loss on up to {k} pairs per record"
                     + (f", target {c.signal}" if c.signal else "")),
        })
        if c.signal:
            extra["signal"] = c.signal
        return extra

    def _writer(self, epochs_done: int, global_step: int) -> Callable[[Path], None]:
        from blender_serve.ranker.layout import write_original_layout

        def write(directory: Path) -> None:
            model = self.accelerator.unwrap_model(self.model)
            write_original_layout(directory, model.state_dict(), model.pretrained_model.config, self.tokenizer,
                                  backbone_name=self.start.backbone_name,
                                  source_maxlength=self.encoder.source_max_length,
                                  candidate_maxlength=self.encoder.candidate_max_length, n_tasks=model.n_tasks,
                                  drop_out=self.start.drop_out, extra=self._extra(epochs_done, global_step))
        return write

    # ------------------------------------------------------------------ the run
    def _setup(self) -> tuple[Optional[dict], Optional[dict], Optional[int]]:
        """Load the starting model (or the newest epoch checkpoint); returns (info, torch state, epoch) of a resume."""
        import torch

        c, out = self.config, Path(self.config.output_dir)
        train_state.remove_temporaries(out)
        latest = train_state.latest_epoch_checkpoint(out) if c.resume else None
        if latest is None:
            removed = train_state.remove_epoch_checkpoints(out)
            if removed:
                self.log(f"starting afresh in {out}: removed {removed} epoch checkpoint(s) of an earlier run")
        torch.manual_seed(c.seed)
        info = tstate = None
        if latest is not None:
            info, tstate = train_state.read_trainer_info(latest[1])
            if info.get("init") != self._init_id():
                raise InvalidInputError(
                    f"{out} holds a run started from {info.get('init')!r}, not {self._init_id()!r}: pass resume=False "
                    "to start afresh there (its epoch checkpoints are removed) or choose another output_dir")
            self.start = load_starting_point(str(latest[1]), seed=c.seed)
            self.init_kind, self.head_lr = info["init_kind"], info["head_learning_rate"]
        else:
            self.start = load_starting_point(c.init, seed=c.seed, source_max_length=c.source_maxlength,
                                             candidate_max_length=c.candidate_maxlength)
            self.init_kind = self.start.kind
            # One rate for all by default, as the reference trains. A 10x head rate for a new head
            # was tried on a tiny DeBERTa: it kept the loss at log 2 where one rate let it fall.
            self.head_lr = c.head_learning_rate or c.learning_rate
        self.model, self.tokenizer = self.start.model, self.start.tokenizer
        self.encoder = PairEncoder(self.tokenizer, self.start.source_max_length, self.start.candidate_max_length)
        return info, tstate, latest[0] if latest else None

    def fit(self) -> TrainReport:
        """Train, validate, checkpoint; returns the report (also written to output_dir/train_report.json)."""
        import torch
        from torch.utils.data import DataLoader

        t_run = time.perf_counter()
        c, out = self.config, Path(self.config.output_dir)
        info, tstate, resumed_from = self._setup()
        acc = self.accelerator = make_accelerator(self.device, c.mixed_precision, c.grad_accum)
        optimizer = torch.optim.AdamW(_param_groups(self.model, c.learning_rate, self.head_lr, c.weight_decay))
        steps_per_epoch = math.ceil(math.ceil(self.pairs_per_epoch / c.batch_size) / c.grad_accum)
        total = min(steps_per_epoch * c.epochs, c.max_steps or sys.maxsize)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(int(c.warmup_ratio * total), total))
        self.model, optimizer, scheduler = acc.prepare(self.model, optimizer, scheduler)
        history: list[EpochReport] = []
        initial_val: Optional[ValMetrics] = None
        global_step = 0
        if info is not None:
            train_state.restore_torch_state(tstate, optimizer, scheduler, acc.scaler)
            history = [epoch_report_from_dict(d) for d in info["history"]]
            initial_val = ValMetrics(**info["initial_val"]) if info.get("initial_val") else None
            global_step = int(info["global_step"])
            self.log(f"resuming from epoch {resumed_from} ({global_step} steps done) in {out}")
        elif c.val_every_epoch and self.val:
            initial_val = self._validate()
            self.log(f"before training: val {initial_val.line()}")
        final_val = history[-1].val if history else initial_val
        stopped = bool(c.max_steps and global_step >= c.max_steps)
        show = self.progress if self.progress is not None else sys.stderr.isatty()
        bar = progress_bar(total, "train-ranker", unit="step", initial=min(global_step, total), enabled=show)
        for epoch in range((resumed_from or 0) + 1, c.epochs + 1):
            if stopped:
                break
            t0 = time.perf_counter()
            pairs = sample_epoch_pairs(self.train, c.pairs_per_example, c.seed, epoch)
            loader = acc.prepare_data_loader(DataLoader(pairs, batch_size=c.batch_size, shuffle=False,
                                                        collate_fn=self._collate))
            self.model.train()
            loss_sum, seen, steps = 0.0, 0, 0
            for batch in loader:
                with acc.accumulate(self.model):
                    logits = self.model(batch["input_ids"], batch["attention_mask"], batch["prefix_positions"])
                    loss = pair_loss(logits, batch["signs"])
                    acc.backward(loss)
                    if acc.sync_gradients and c.max_grad_norm:
                        acc.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                loss_sum += float(loss.detach()) * len(batch["signs"])
                seen += len(batch["signs"])
                if acc.sync_gradients:
                    steps += 1
                    global_step += 1
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_sum / seen:.4f}")
                    if c.max_steps and global_step >= c.max_steps:
                        stopped = True
                        break
            complete = seen == len(pairs)
            if stopped:
                loader.end()  # a loader left mid-iteration stays registered in accelerate's gradient state
            val = self._validate() if (self.val and (c.val_every_epoch or stopped or epoch == c.epochs)) else None
            final_val = val or final_val
            report = EpochReport(epoch=epoch, train_loss=loss_sum / max(1, seen), pairs=seen, steps=steps,
                                 global_step=global_step, seconds=time.perf_counter() - t0, val=val, complete=complete)
            history.append(report)
            if complete:
                report.checkpoint = str(train_state.epoch_checkpoint_dir(out, epoch))
                self._save_epoch(epoch, global_step, history, initial_val, optimizer, scheduler)
            self.log(f"epoch {epoch}/{c.epochs}{'' if complete else ' (stopped at max_steps)'}: loss "
                     f"{report.train_loss:.4f} over {seen} pairs, {steps} steps ({global_step} in all), "
                     f"{report.seconds:.1f}s" + (f"; val {val.line()}" if val else ""))
        bar.close()
        done = sum(1 for e in history if e.complete)
        final = train_state.write_final_model(out, self._writer(done, global_step))
        result = TrainReport(
            epochs=history, initial_val=initial_val, final_val=final_val, global_step=global_step,
            seconds=time.perf_counter() - t_run, final_checkpoint=str(final), resumed_from_epoch=resumed_from,
            stopped_at_max_steps=stopped, train_examples=len(self.train), skipped_examples=self.skipped_examples,
            pairs_per_epoch=self.pairs_per_epoch, init_kind=self.init_kind)
        import json

        (out / REPORT_FILE).write_text(json.dumps(result.to_dict(), indent=2))
        return result

    def _save_epoch(self, epoch: int, global_step: int, history: list[EpochReport], initial_val,
                    optimizer, scheduler) -> Path:
        import dataclasses

        tstate = train_state.capture_torch_state(optimizer, scheduler, self.accelerator.scaler)
        info = {"epoch": epoch, "global_step": global_step, "init": self._init_id(), "init_kind": self.init_kind,
                "head_learning_rate": self.head_lr, "config": self.config.model_dump(),
                "history": [dataclasses.asdict(e) for e in history],
                "initial_val": dataclasses.asdict(initial_val) if initial_val else None}
        path = train_state.save_epoch_checkpoint(self.config.output_dir, epoch, self._writer(epoch, global_step),
                                                 tstate, info)
        train_state.keep_newest(self.config.output_dir, self.config.keep_checkpoints)
        return path
