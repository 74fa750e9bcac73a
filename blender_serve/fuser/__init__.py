"""Fusers: write one answer from the top-K candidates.

``GenFuser`` runs LLM-Blender's seq2seq gen_fuser checkpoints; ``PromptedFuser`` prompts any
instruction-tuned causal LM to fuse; ``GeneratorFuser`` sends the same prompt to one of the
ensemble's own base models (no model of its own); ``ScriptedFuser`` stands in with a fixed latency
(benchmarks). ``build_fuser(config)`` picks one by ``FuserConfig.kind``.
Importing this package does not import torch or transformers; loading a model does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Optional

from blender_serve.errors import UnknownModelError
from blender_serve.fuser.base import Fuser, FuseItem, check_item
from blender_serve.fuser.chat_prompt import DEFAULT_CANDIDATE_TEMPLATE, DEFAULT_TEMPLATE, FusionPrompt
from blender_serve.fuser.prompted import PromptedFuser
from blender_serve.fuser.scripted import ScriptedFuser
from blender_serve.fuser.seq2seq import FUSE_SUFFIX, GenFuser, format_fuse_input
from blender_serve.fuser.via_generator import GeneratorFuser

if TYPE_CHECKING:
    from blender_serve.config import FuserConfig
    from blender_serve.interfaces import GeneratorProtocol

__all__ = [
    "Fuser", "FuseItem", "GenFuser", "PromptedFuser", "GeneratorFuser", "ScriptedFuser", "FUSERS", "build_fuser",
    "check_item", "format_fuse_input", "FUSE_SUFFIX", "FusionPrompt", "DEFAULT_TEMPLATE", "DEFAULT_CANDIDATE_TEMPLATE",
]

#: FuserConfig.kind -> the class that serves it.
FUSERS: dict[str, type[Fuser]] = {GenFuser.kind: GenFuser, PromptedFuser.kind: PromptedFuser,
                                  GeneratorFuser.kind: GeneratorFuser, ScriptedFuser.kind: ScriptedFuser}


def build_fuser(config: "FuserConfig", generators: Optional[Mapping[str, "GeneratorProtocol"]] = None) -> Fuser:
    """Load the fuser a FuserConfig describes.

    Args:
        config: a FuserConfig (``kind`` picks the class from ``FUSERS``).
        generators: the ensemble's base models by name; kind 'generator' fuses through
            ``generators[config.generator]`` (the other kinds ignore them).

    Returns:
        a loaded Fuser.

    Example:
        >>> build_fuser(FuserConfig(kind="causal", path="Qwen/Qwen2.5-1.5B-Instruct"))
        >>> build_fuser(FuserConfig(kind="generator", generator="smol"), blender.generators)
    """
    try:
        cls = FUSERS[config.kind]
    except KeyError:
        raise UnknownModelError(f"unknown fuser kind {config.kind!r}; use one of {sorted(FUSERS)}") from None
    if cls is GeneratorFuser:  # the one kind that runs on a model it does not own
        return GeneratorFuser.from_config(config, generators)
    return cls.from_config(config)
