"""Fusers: write one answer from the top-K candidates.

``GenFuser`` runs LLM-Blender's seq2seq gen_fuser checkpoints; ``PromptedFuser`` prompts any
instruction-tuned causal LM to fuse; ``ScriptedFuser`` stands in with a fixed latency (benchmarks).
``build_fuser(config)`` picks one by ``FuserConfig.kind``.
Importing this package does not import torch or transformers; loading a model does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from blender_serve.errors import UnknownModelError
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.fuser.prompted import DEFAULT_CANDIDATE_TEMPLATE, DEFAULT_TEMPLATE, PromptedFuser
from blender_serve.fuser.scripted import ScriptedFuser
from blender_serve.fuser.seq2seq import FUSE_SUFFIX, GenFuser, format_fuse_input

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig

__all__ = [
    "Fuser", "FuseItem", "GenFuser", "PromptedFuser", "ScriptedFuser", "FUSERS", "build_fuser", "check_item",
    "format_fuse_input", "FUSE_SUFFIX", "DEFAULT_TEMPLATE", "DEFAULT_CANDIDATE_TEMPLATE",
]

#: FuserConfig.kind -> the class that serves it.
FUSERS: dict[str, type[Fuser]] = {GenFuser.kind: GenFuser, PromptedFuser.kind: PromptedFuser, ScriptedFuser.kind: ScriptedFuser}


def build_fuser(config: "FuserConfig") -> Fuser:
    """Load the fuser a FuserConfig describes.

    Args:
        config: a FuserConfig (``kind`` picks the class from ``FUSERS``).

    Returns:
        a loaded Fuser.

    Example:
        >>> build_fuser(FuserConfig(kind="causal", path="Qwen/Qwen2.5-1.5B-Instruct"))
    """
    try:
        cls = FUSERS[config.kind]
    except KeyError:
        raise UnknownModelError(f"unknown fuser kind {config.kind!r}; use one of {sorted(FUSERS)}") from None
    return cls.from_config(config)
