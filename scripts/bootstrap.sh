#!/usr/bin/env bash
# Create .venv and install this project with its test tools, idempotently.
# On a machine without an NVIDIA GPU, CPU torch 2.13.0 is installed first so that nothing later
# resolves a multi-GB CUDA build. A second run with pyproject.toml unchanged does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"

stamp="$VENV/.blender-serve-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ -f "$stamp" ] && [ -x "$VENV/bin/python" ]; then
    exit 0
fi
start=$(date +%s)
# shellcheck source=venv_lib.sh
source "$ROOT/scripts/venv_lib.sh"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "torch==2.13.0"
fi
pip_install -e "$ROOT[dev]"
rm -f "$VENV"/.blender-serve-*
touch "$stamp"
echo "bootstrap: $VENV ready in $(( $(date +%s) - start )) s" >&2
