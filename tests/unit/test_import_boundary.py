"""`import blender_serve` stays free of the serving stack and of heavy optional backends."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("ray", "fastapi", "vllm", "starlette", "uvicorn")


@pytest.mark.parametrize("module", [
    "blender_serve",
    "blender_serve.pipeline",
    "blender_serve.compat",
    "blender_serve.generators",
    "blender_serve.fuser",
    "blender_serve.ranker",
    "blender_serve.cli",
])
def test_import_loads_no_serving_stack(module):
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "", f"{module} imported {out.stdout.strip()}"


def test_building_a_vllm_generator_does_not_import_vllm():
    code = (
        "import sys\n"
        "from blender_serve.generators import build_generator\n"
        "build_generator({'name': 'v', 'backend': 'vllm', 'model': '/nowhere'})\n"
        "print('vllm' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"
