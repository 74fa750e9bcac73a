"""Fine-tuning a PairRanker on scored candidates (the reference's "instructgpt" pairwise loss).

Per record and epoch, up to ``pairs_per_example`` candidate pairs with different scores are drawn,
the better one put first or second with probability 1/2 (``pairs.py``); the model's logit
l = mean_tasks(left - right) is trained with ``-log sigmoid(l * sign(score1 - score2))``. Pairs are
encoded by the very ``PairEncoder`` the ranker serves with, so training and inference read a pair
identically. One accelerate loop runs on CPU and GPU (``trainer.py``); checkpoints are written in the
original PairRM layout, so ``PairRanker.from_pretrained`` and the reference both load them.

Importing this module stays light (torch, transformers and accelerate load when training starts).

Example:
    >>> from blender_serve.ranker.training import TrainConfig, TrainExample, train_ranker
    >>> config = TrainConfig(init="/models/PairRM", output_dir="/runs/pairrm-ft", epochs=2)
    >>> report = train_ranker(config, train_examples, val_examples)
    >>> ranker = PairRanker.from_pretrained(report.final_checkpoint)
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

from blender_serve.ranker.pairs import TrainExample
from blender_serve.ranker.train_config import REPORT_FILE, EpochReport, TrainConfig, TrainReport
from blender_serve.ranker.trainer import RankerTrainer
from blender_serve.ranker.validation import ValMetrics, evaluate_ranker

__all__ = [
    "TrainConfig", "TrainExample", "TrainReport", "EpochReport", "ValMetrics", "RankerTrainer", "train_ranker",
    "evaluate_ranker", "REPORT_FILE",
]


def train_ranker(config: TrainConfig | dict, train: Sequence[TrainExample], val: Sequence[TrainExample] = (),
                 log: Optional[Callable[[str], None]] = None, progress: Optional[bool] = None) -> TrainReport:
    """Fine-tune a PairRanker and write it to ``config.output_dir`` (original PairRM layout).

    Args:
        config: a TrainConfig (or a dict of its fields).
        train: scored records to train on; records without two differently scored candidates are skipped.
        val: scored records to validate on (pairwise accuracy; top-1 score next to oracle and random).
        log: called with one line per epoch (default: this package's logger, at INFO).
        progress: show progress on stderr (a tqdm bar on a terminal, else a plain line every 10 s:
            ``blender_serve.progress``); None: only when stderr is a terminal.
    Returns:
        a TrainReport (also in ``output_dir/train_report.json``); its ``final_checkpoint`` loads with
        ``PairRanker.from_pretrained``.
    Raises:
        InvalidInputError: a malformed record (named by its id), no trainable pair at all, a
            precision the device cannot run (fp16/bf16 on CPU), or a CUDA device that is not there.
        CheckpointError: ``init`` is neither a PairRM checkpoint nor an encoder.
    """
    return RankerTrainer(config, train, val, log=log, progress=progress).fit()
