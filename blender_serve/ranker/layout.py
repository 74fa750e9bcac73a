"""What a PairRanker checkpoint directory holds, and writing one (the original PairRM layout).

The original layout (llm-blender/PairRM) is a *ranker* ``config.json`` (``ranker_type``,
``model_name`` of the backbone, token budgets, head size, training keys the reference reads)
beside ``model.safetensors`` holding the backbone under ``pretrained_model.`` and the head as
``head_layer.{1,4}``. Reading both layouts lives in ``checkpoint.py``; this module knows the format
only, so the checkpoint builders of the demo and the tests write the very same ``config.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

__all__ = [
    "PREFIX_TOKENS", "DEFAULT_SOURCE_MAXLENGTH", "DEFAULT_CANDIDATE_MAXLENGTH", "BACKBONE_CONFIG_FILE",
    "original_config", "write_original_config", "write_original_layout",
]

# Added to the backbone's tokenizer in this order (ids 128001..128004 for DeBERTa-v3).
PREFIX_TOKENS = ("<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>")

# Published defaults of PairRM (tokens, specials included).
DEFAULT_SOURCE_MAXLENGTH = 1224
DEFAULT_CANDIDATE_MAXLENGTH = 412

# Written beside the weights so that a saved original-layout ranker loads with no network.
BACKBONE_CONFIG_FILE = "backbone_config.json"

# The training keys of the published config.json, which the reference reads back.
_TRAINING_DEFAULTS = {
    "cache_dir": None, "load_checkpoint": None, "num_pos": 5, "num_neg": 5, "sub_sampling_mode": "all_pair",
    "sub_sampling_ratio": 0.4, "loss_type": "instructgpt", "reduce_type": "linear", "inference_mode": "bubble",
    "fp16": True, "device": None,
}


def _reference_model_type(model_type: str) -> str:
    """The reference picks its backbone class by the prefix of this string ('deberta', 'roberta'...)."""
    for prefix in ("deberta", "xlm-roberta", "roberta", "bert"):
        if model_type.startswith(prefix):
            return prefix
    return model_type


_EXPLICIT = {"ranker_type", "model_name", "source_maxlength", "candidate_maxlength", "n_tasks", "drop_out"}


def original_config(*, model_type: str, model_name: str, source_maxlength: int = DEFAULT_SOURCE_MAXLENGTH,
                    candidate_maxlength: int = DEFAULT_CANDIDATE_MAXLENGTH, n_tasks: int = 1, drop_out: float = 0.05,
                    extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The ranker ``config.json`` of the original layout, as llm-blender/PairRM publishes it.

    Args:
        model_type: the backbone's transformers ``model_type`` (e.g. 'deberta-v2'); written as the
            reference's backbone family ('deberta').
        model_name: the backbone's hub id or directory (where the reference takes the tokenizer from).
        extra: further keys kept as they are (a loaded checkpoint's own training keys, notes).
    """
    config = {"ranker_type": "pairranker", "model_type": _reference_model_type(model_type), "model_name": model_name,
              **_TRAINING_DEFAULTS, "source_maxlength": int(source_maxlength),
              "candidate_maxlength": int(candidate_maxlength), "n_tasks": int(n_tasks), "drop_out": float(drop_out)}
    config.update({k: v for k, v in (extra or {}).items() if k not in _EXPLICIT})
    return config


def write_original_config(directory: str | Path, **fields) -> Path:
    """Write ``config.json`` (see :func:`original_config` for the fields); returns its path."""
    path = Path(directory) / "config.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(original_config(**fields), indent=2))
    return path


def write_original_layout(directory: str | Path, state_dict: dict, backbone_config, tokenizer, *,
                          backbone_name: Optional[str], **fields) -> None:
    """Write a whole original-layout checkpoint: ``config.json``, ``model.safetensors``, and the
    tokenizer and backbone config beside them so the directory loads with no network. The reference
    reads the same directory (it ignores the extra files and takes the tokenizer from model_name).

    Args:
        state_dict: ``pretrained_model.*`` and ``head_layer.*`` tensors.
        backbone_config: the backbone's transformers config.
        tokenizer: the backbone tokenizer, prefix tokens included.
        backbone_name: ``model_name`` to record (default: the directory itself).
        **fields: as for :func:`original_config` (token budgets, n_tasks, drop_out, extra).
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    backbone_config.to_json_file(str(directory / BACKBONE_CONFIG_FILE))
    write_original_config(directory, model_type=getattr(backbone_config, "model_type", "") or "",
                          model_name=backbone_name or str(directory), **fields)
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(directory / "model.safetensors"))
