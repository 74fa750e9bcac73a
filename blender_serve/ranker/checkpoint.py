"""Reading PairRanker checkpoints in both published layouts (the format itself: ``layout.py``).

1. Original (llm-blender/PairRM): ``config.json`` is a *ranker* config (``ranker_type``,
   ``model_name`` of the backbone, ``source_maxlength``, ``candidate_maxlength``, ``n_tasks``...);
   weights hold the backbone under ``pretrained_model.`` and the head as ``head_layer.{1,4}``. The
   tokenizer (and backbone config) come from ``model_name``, unless saved beside the weights.
2. transformers-style (llm-blender/PairRM-hf): a DebertaV2 (or other encoder) config with the extra
   keys ``n_tasks``, ``drop_out``, ``*_prefix_id``; the same weight names; the tokenizer beside it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from blender_serve.errors import CheckpointError
from blender_serve.loading import resolve_checkpoint_dir
from blender_serve.ranker.layout import (
    BACKBONE_CONFIG_FILE,
    DEFAULT_CANDIDATE_MAXLENGTH,
    DEFAULT_SOURCE_MAXLENGTH,
    PREFIX_TOKENS,
)

__all__ = ["RankerCheckpoint", "read_checkpoint", "read_config_json"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RankerCheckpoint:
    """Everything read from a checkpoint directory, before any torch module is built."""

    layout: str  # "original" | "hf"
    directory: Path
    backbone_config: Any  # a transformers PretrainedConfig
    tokenizer: Any
    state_dict: dict
    ranker_config: dict  # original-layout keys (source_maxlength, n_tasks, ...), normalised
    backbone_name: str


def _load_state_dict(directory: Path) -> dict:
    import torch
    from safetensors.torch import load_file

    single = directory / "model.safetensors"
    if single.exists():
        return load_file(str(single))
    index = directory / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict = {}
        for shard in shards:
            state.update(load_file(str(directory / shard)))
        return state
    for name in ("pytorch_model.bin", "model.bin"):
        if (directory / name).exists():
            return torch.load(directory / name, map_location="cpu", weights_only=True)
    raise CheckpointError(
        f"no weights in {directory}: expected model.safetensors (or a sharded index, or pytorch_model.bin)"
    )


def _has_tokenizer(directory: Path) -> bool:
    return any((directory / f).exists() for f in ("tokenizer.json", "tokenizer_config.json", "spm.model"))


def _load_tokenizer(source: str | Path):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source))
    except Exception as exc:
        raise CheckpointError(f"cannot load the ranker's tokenizer from {source!r}: {exc}") from exc


def _add_prefix_tokens(tokenizer) -> None:
    missing = [t for t in PREFIX_TOKENS if t not in tokenizer.get_vocab()]
    if missing and len(missing) != len(PREFIX_TOKENS):
        raise CheckpointError(f"the tokenizer has only some of the ranker's prefix tokens (missing {missing})")
    if missing:
        tokenizer.add_tokens(list(PREFIX_TOKENS))


def _ranker_fields(cfg: dict) -> dict[str, Any]:
    """The ranker's own settings from either layout's config.json (PairRM's published defaults when absent)."""
    return {
        "source_maxlength": int(cfg.get("source_maxlength") or DEFAULT_SOURCE_MAXLENGTH),
        "candidate_maxlength": int(cfg.get("candidate_maxlength") or DEFAULT_CANDIDATE_MAXLENGTH),
        "n_tasks": int(cfg.get("n_tasks", 1)),
        "drop_out": float(cfg.get("drop_out", 0.05)),
    }


def _read_original(directory: Path, cfg: dict) -> RankerCheckpoint:
    from transformers import AutoConfig

    if cfg.get("ranker_type", "pairranker") != "pairranker":
        raise CheckpointError(
            f"{directory} holds a {cfg.get('ranker_type')!r} ranker; only 'pairranker' checkpoints are supported"
        )
    backbone_name = cfg.get("model_name")
    if not backbone_name:
        raise CheckpointError(f"{directory}/config.json has no 'model_name' (the backbone to load the tokenizer from)")
    tokenizer_source = directory if _has_tokenizer(directory) else backbone_name
    tokenizer = _load_tokenizer(tokenizer_source)
    saved_backbone = directory / BACKBONE_CONFIG_FILE
    try:
        backbone_config = AutoConfig.from_pretrained(str(saved_backbone if saved_backbone.exists() else backbone_name))
    except Exception as exc:
        raise CheckpointError(f"cannot load the backbone config of {backbone_name!r}: {exc}") from exc
    ranker_config = _ranker_fields(cfg)
    ranker_config["original"] = {k: v for k, v in cfg.items() if k not in ranker_config}
    return RankerCheckpoint("original", directory, backbone_config, tokenizer, _load_state_dict(directory),
                            ranker_config, str(backbone_name))


def _read_hf(directory: Path, cfg: dict) -> RankerCheckpoint:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(directory))
    tokenizer = _load_tokenizer(directory)
    return RankerCheckpoint("hf", directory, config, tokenizer, _load_state_dict(directory), _ranker_fields(cfg),
                            str(cfg.get("_name_or_path") or directory))


def read_config_json(directory: Path, hint: str) -> dict:
    """A checkpoint directory's ``config.json`` as a dict; CheckpointError (with ``hint``) if absent or not JSON."""
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{directory} has no config.json; {hint}")
    try:
        return json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from exc


def read_checkpoint(path_or_id: str | os.PathLike) -> RankerCheckpoint:
    """Read a PairRM checkpoint of either layout; the tokenizer gets the four prefix tokens."""
    directory = resolve_checkpoint_dir(path_or_id)
    cfg = read_config_json(directory, "is it a PairRM checkpoint directory?")
    config_file = directory / "config.json"
    if "ranker_type" in cfg:
        ckpt = _read_original(directory, cfg)
    elif "model_type" in cfg:
        ckpt = _read_hf(directory, cfg)
    else:
        raise CheckpointError(
            f"{config_file} is neither a ranker config (no 'ranker_type') nor a transformers config (no 'model_type')"
        )
    _add_prefix_tokens(ckpt.tokenizer)
    return ckpt
