"""Reading and writing PairRanker checkpoints in both published layouts.

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
from typing import Any, Optional

from blender_serve.errors import CheckpointError

__all__ = ["RankerCheckpoint", "PREFIX_TOKENS", "resolve_checkpoint_dir", "read_checkpoint", "write_original_layout"]

logger = logging.getLogger(__name__)

# Added to the backbone's tokenizer in this order (ids 128001..128004 for DeBERTa-v3).
PREFIX_TOKENS = ("<|source|>", "<|candidate1|>", "<|candidate2|>", "<|candidate|>")

# Published defaults of PairRM (tokens, specials included).
DEFAULT_SOURCE_MAXLENGTH = 1224
DEFAULT_CANDIDATE_MAXLENGTH = 412

# Written by save_pretrained so that a saved original-layout ranker is self-contained.
BACKBONE_CONFIG_FILE = "backbone_config.json"


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


def resolve_checkpoint_dir(path_or_id: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a hub id, downloaded once through huggingface_hub.

    (The hub path is for real deployments; nothing here is tested against the hub, which these
    machines cannot reach.)
    """
    from blender_serve.local_models import resolve_model_path

    path_or_id = resolve_model_path(str(path_or_id))
    path = Path(path_or_id).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path} is a file; pass the checkpoint *directory* that holds config.json")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(path_or_id)))
    except Exception as exc:  # offline, unknown repo, no permission...
        raise CheckpointError(
            f"{path_or_id!r} is not a local directory and could not be fetched from the hub ({exc}); "
            "pass the path of a downloaded PairRM checkpoint"
        ) from exc


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
    ranker_config = {
        "source_maxlength": int(cfg.get("source_maxlength") or DEFAULT_SOURCE_MAXLENGTH),
        "candidate_maxlength": int(cfg.get("candidate_maxlength") or DEFAULT_CANDIDATE_MAXLENGTH),
        "n_tasks": int(cfg.get("n_tasks", 1)),
        "drop_out": float(cfg.get("drop_out", 0.05)),
    }
    extra = {k: v for k, v in cfg.items() if k not in ranker_config}
    ranker_config["original"] = extra
    return RankerCheckpoint("original", directory, backbone_config, tokenizer, _load_state_dict(directory),
                            ranker_config, str(backbone_name))


def _read_hf(directory: Path, cfg: dict) -> RankerCheckpoint:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(directory))
    tokenizer = _load_tokenizer(directory)
    ranker_config = {
        "source_maxlength": int(cfg.get("source_maxlength") or DEFAULT_SOURCE_MAXLENGTH),
        "candidate_maxlength": int(cfg.get("candidate_maxlength") or DEFAULT_CANDIDATE_MAXLENGTH),
        "n_tasks": int(cfg.get("n_tasks", 1)),
        "drop_out": float(cfg.get("drop_out", 0.05)),
    }
    return RankerCheckpoint("hf", directory, config, tokenizer, _load_state_dict(directory), ranker_config,
                            str(cfg.get("_name_or_path") or directory))


def read_checkpoint(path_or_id: str | os.PathLike) -> RankerCheckpoint:
    """Read a PairRM checkpoint of either layout; the tokenizer gets the four prefix tokens."""
    directory = resolve_checkpoint_dir(path_or_id)
    config_file = directory / "config.json"
    if not config_file.exists():
        raise CheckpointError(f"{directory} has no config.json; is it a PairRM checkpoint directory?")
    try:
        cfg = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_file} is not valid JSON: {exc}") from exc
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


def write_original_layout(directory: Path, state_dict: dict, backbone_config, tokenizer, ranker_config: dict,
                          backbone_name: Optional[str]) -> None:
    """Write the original PairRM layout (ranker config.json + model.safetensors), plus the tokenizer
    and backbone config beside it so the directory loads with no network. The reference library
    reads the same directory (it ignores the extra files and takes the tokenizer from model_name)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    backbone_config.to_json_file(str(directory / BACKBONE_CONFIG_FILE))
    config = {
        "ranker_type": "pairranker",
        "model_type": _reference_model_type(backbone_config),
        "model_name": backbone_name or str(directory),
        "cache_dir": None,
        "load_checkpoint": None,
        "source_maxlength": ranker_config["source_maxlength"],
        "candidate_maxlength": ranker_config["candidate_maxlength"],
        "n_tasks": ranker_config["n_tasks"],
        "drop_out": ranker_config["drop_out"],
        "num_pos": 5, "num_neg": 5, "sub_sampling_mode": "all_pair", "sub_sampling_ratio": 0.4,
        "loss_type": "instructgpt", "reduce_type": "linear", "inference_mode": "bubble",
        "fp16": True, "device": None,
    }
    config.update({k: v for k, v in ranker_config.get("original", {}).items() if k not in ("model_name",)})
    config["ranker_type"] = "pairranker"
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    save_file({k: v.detach().contiguous().cpu() for k, v in state_dict.items()}, str(directory / "model.safetensors"))


def _reference_model_type(backbone_config) -> str:
    # The reference picks its backbone class by prefix of this string.
    mt = getattr(backbone_config, "model_type", "") or ""
    if mt.startswith("deberta"):
        return "deberta"
    if mt.startswith("xlm-roberta"):
        return "xlm-roberta"
    if mt.startswith("roberta"):
        return "roberta"
    if mt.startswith("bert"):
        return "bert"
    return mt
