"""Where a ranker training run starts: the model (an existing PairRM checkpoint, or a bare encoder
that gets the ranker's prefix tokens and a new head) and the accelerator. Imported by the training
path only."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Optional

from blender_serve.errors import CheckpointError, InvalidInputError
from blender_serve.loading import resolve_checkpoint_dir
from blender_serve.ranker.checkpoint import read_config_json

__all__ = ["StartingPoint", "BARE_ENCODER_MAXLENGTH", "is_pairrm_checkpoint", "load_starting_point", "make_accelerator"]

# Token budgets (specials included) of a ranker built on a bare encoder when none are configured:
# small enough for any absolute-position encoder (128 + 2 x 128 < 512).
BARE_ENCODER_MAXLENGTH = 128

# Keys only a PairRM checkpoint's config.json has: the original layout's ranker config, or the
# transformers-style layout's head and prefix-token extras.
_PAIRRM_KEYS = ("ranker_type", "n_tasks", "source_prefix_id", "cand_prefix_id")


@dataclasses.dataclass
class StartingPoint:
    """A PairRankerModel (float32, on CPU) with its tokenizer and what to write into its checkpoints."""

    model: Any  # PairRankerModel
    tokenizer: Any
    kind: str  # "pairrm-original" | "pairrm-hf" | "encoder"
    directory: Path
    backbone_name: str
    source_max_length: int
    candidate_max_length: int
    drop_out: float
    extra: dict[str, Any]  # the init checkpoint's own ranker-config keys, carried on


def is_pairrm_checkpoint(directory: Path) -> Optional[str]:
    """'original' or 'hf' for a PairRM checkpoint of that layout, None for anything else."""
    cfg = read_config_json(directory, "pass a PairRM checkpoint or an encoder directory")
    if "ranker_type" in cfg:
        return "original"
    return "hf" if any(k in cfg for k in _PAIRRM_KEYS) else None


def load_starting_point(path: str, *, seed: int, source_max_length: Optional[int] = None,
                        candidate_max_length: Optional[int] = None) -> StartingPoint:
    """Load ``path`` (``local:<name>``, a directory or a hub id) as the model to train.

    A PairRM checkpoint of either layout is loaded whole (its budgets unless overridden); any other
    directory is read as an encoder (``AutoModel``): the four prefix tokens are added to its
    tokenizer, embeddings resized (new rows randomly initialised), and a new head
    initialised, all under ``torch.manual_seed(seed)``.
    """
    directory = resolve_checkpoint_dir(path)
    layout = is_pairrm_checkpoint(directory)
    if layout is not None:
        return _load_pairrm(directory, layout, source_max_length, candidate_max_length)
    return _load_encoder(directory, seed, source_max_length, candidate_max_length)


def _load_pairrm(directory: Path, layout: str, source_max_length, candidate_max_length) -> StartingPoint:
    from blender_serve.ranker.ranker import PairRanker

    ranker = PairRanker.from_pretrained(directory, device="cpu", dtype="float32", source_max_length=source_max_length,
                                        candidate_max_length=candidate_max_length)
    ckpt = ranker._checkpoint  # noqa: SLF001 (same package: the checkpoint's recorded names and keys)
    return StartingPoint(
        model=ranker.model.float(), tokenizer=ranker.tokenizer, kind=f"pairrm-{layout}", directory=directory,
        backbone_name=ckpt.backbone_name, source_max_length=ranker.encoder.source_max_length,
        candidate_max_length=ranker.encoder.candidate_max_length, drop_out=float(ckpt.ranker_config["drop_out"]),
        extra=dict(ckpt.ranker_config.get("original") or {}),
    )


def _load_encoder(directory: Path, seed: int, source_max_length, candidate_max_length) -> StartingPoint:
    import torch

    from blender_serve.loading import load_pretrained
    from blender_serve.ranker.layout import PREFIX_TOKENS
    from blender_serve.ranker.model import PairRankerModel
    from blender_serve.ranker.ranker import _check_position_budget

    backbone, tokenizer, _ = load_pretrained("AutoModel", str(directory), device="cpu", dtype="float32")
    if getattr(backbone.config, "is_encoder_decoder", False):
        raise CheckpointError(f"{directory} holds an encoder-decoder model; a PairRanker needs an encoder (AutoModel, "
                              "e.g. DeBERTa, RoBERTa, BERT)")
    vocab = tokenizer.get_vocab()
    present = [t for t in PREFIX_TOKENS if t in vocab]
    if present and len(present) != len(PREFIX_TOKENS):
        raise CheckpointError(f"the tokenizer of {directory} has only some of the ranker's prefix tokens ({present})")
    if not present:
        tokenizer.add_tokens(list(PREFIX_TOKENS))
    torch.manual_seed(seed)
    if backbone.get_input_embeddings().weight.shape[0] != len(tokenizer):
        # New rows get the model's own random init, as in the reference. transformers' default
        # mean_resizing draws them within 1e-9 x the vocabulary's spread of its mean, so the four
        # prefix tokens would start as one vector and <|candidate1|> could not be told from
        # <|candidate2|>: measured on a tiny DeBERTa, training then barely moved the loss.
        backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PairRankerModel(backbone).float()
    src = int(source_max_length or BARE_ENCODER_MAXLENGTH)
    cand = int(candidate_max_length or BARE_ENCODER_MAXLENGTH)
    _check_position_budget(backbone.config, src, cand)
    return StartingPoint(model=model, tokenizer=tokenizer, kind="encoder", directory=directory,
                         backbone_name=str(directory), source_max_length=src, candidate_max_length=cand,
                         drop_out=0.05, extra={})


def _reset_accelerate_state() -> None:
    """accelerate keeps one state per process: a second run in this process with another device or
    precision must clear it. Only safe outside a distributed launch."""
    import torch.distributed as dist
    from accelerate.state import AcceleratorState, GradientState

    if dist.is_available() and dist.is_initialized():
        raise InvalidInputError("this process already runs accelerate with another device or mixed precision in a "
                                "distributed launch; train in a fresh process")
    AcceleratorState._reset_state(reset_partial_state=True)  # noqa: SLF001
    GradientState._reset_state()  # noqa: SLF001


def make_accelerator(device: str, mixed_precision: str, grad_accum: int):
    """An Accelerator on ``device`` ('cpu', 'cuda', 'mps'), clearing an earlier run's process-wide state if it differs."""
    from accelerate import Accelerator

    def make():
        return Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision, gradient_accumulation_steps=grad_accum)

    try:
        accelerator = make()
    except ValueError:  # "AcceleratorState has already been initialized and cannot be changed"
        _reset_accelerate_state()
        accelerator = make()
    if accelerator.device.type != device.split(":")[0]:  # an earlier CPU state silently wins over cuda
        _reset_accelerate_state()
        accelerator = make()
    return accelerator
