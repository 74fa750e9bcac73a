"""Settings and reports of a ranker training run: pydantic and dataclasses only, no torch."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from blender_serve.ranker.validation import ValMetrics

__all__ = ["TrainConfig", "EpochReport", "TrainReport", "REPORT_FILE", "epoch_report_from_dict", "linear_schedule"]

REPORT_FILE = "train_report.json"


class TrainConfig(BaseModel):
    """Settings of one ranker training run (``blender-serve train-ranker``)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    init: str = Field(description="Where to start: a PairRM checkpoint directory (either layout; fine-tuned) or a bare "
                                  "encoder directory (AutoModel: prefix tokens and a new head are added); 'local:<name>' works.")
    output_dir: str = Field(description="Run directory: epoch checkpoints, the final model (original PairRM layout) and train_report.json.")
    epochs: int = Field(3, ge=1, description="Passes over the training records (each with freshly drawn pairs).")
    learning_rate: float = Field(2e-5, gt=0, description="Peak AdamW learning rate of the encoder.")
    head_learning_rate: Optional[float] = Field(None, gt=0, description="Peak learning rate of the head; None: learning_rate "
                                                "(as the reference trains, also for a new head).")
    batch_size: int = Field(8, ge=1, description="Pairs per forward/backward micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    pairs_per_example: int = Field(5, ge=1, description="Most pairs drawn per record and epoch (min(num_pos, num_neg) of the reference).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay of matrices (biases and norms never decay).")
    warmup_ratio: float = Field(0.05, ge=0, le=1, description="Share of optimizer steps with linear warmup; linear decay to 0 after.")
    max_grad_norm: Optional[float] = Field(1.0, gt=0, description="Gradient clipping norm; None: no clipping.")
    source_maxlength: Optional[int] = Field(None, ge=8, description="Source token budget (specials included); None: the "
                                            "checkpoint's, or 128 for a bare encoder.")
    candidate_maxlength: Optional[int] = Field(None, ge=8, description="Candidate token budget; None: the checkpoint's, or 128 for a bare encoder.")
    seed: int = Field(0, description="Seeds torch (head init, dropout) and the pair draw of every epoch.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="'auto': cuda when available, else cpu.")
    mixed_precision: Literal["no", "fp16", "bf16"] = Field("no", description="Autocast precision on GPU ('fp16' adds loss "
                                                           "scaling); CPU trains in float32 and accepts only 'no'.")
    val_every_epoch: bool = Field(True, description="Validate before training and after every epoch (when validation records are given).")
    max_steps: Optional[int] = Field(None, ge=1, description="Stop after this many optimizer steps in all (smoke runs); the "
                                     "schedule is planned for min(all steps, max_steps).")
    resume: bool = Field(True, description="Continue from output_dir's newest complete epoch checkpoint; False starts "
                                           "afresh and removes older epoch checkpoints.")
    keep_checkpoints: Optional[int] = Field(None, ge=1, description="Keep only this many newest epoch checkpoints; None: all.")
    signal: Optional[str] = Field(None, description="Name of the target scores (e.g. 'bartscore', 'gpt4'); recorded in the checkpoint.")


@dataclasses.dataclass
class EpochReport:
    """One finished epoch: mean training loss over its pairs, optimizer steps, and validation."""

    epoch: int  # 1-based
    train_loss: float
    pairs: int
    steps: int
    global_step: int
    seconds: float
    val: Optional[ValMetrics] = None
    checkpoint: Optional[str] = None  # checkpoint-epoch-{k} directory (None for an epoch cut short)
    complete: bool = True  # False: stopped at max_steps mid-epoch (not checkpointed)


@dataclasses.dataclass
class TrainReport:
    """What a run did; JSON-serialisable (``to_dict``), also written to ``output_dir/train_report.json``."""

    epochs: list[EpochReport]
    initial_val: Optional[ValMetrics]  # before the first epoch
    final_val: Optional[ValMetrics]  # of the final model
    global_step: int
    seconds: float
    final_checkpoint: str
    resumed_from_epoch: Optional[int]
    stopped_at_max_steps: bool
    train_examples: int
    skipped_examples: int  # records without a single pair of different scores
    pairs_per_epoch: int
    init_kind: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only."""
        return dataclasses.asdict(self)


def epoch_report_from_dict(d: dict) -> EpochReport:
    """The inverse of ``dataclasses.asdict`` for an EpochReport (read back from trainer_state.json)."""
    val = d.get("val")
    return EpochReport(**{**d, "val": ValMetrics(**val) if val else None})


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor at optimizer step ``step`` (0-based): linear warmup, then linear decay; never 0 on a step taken."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor
