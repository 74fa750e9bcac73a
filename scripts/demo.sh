#!/usr/bin/env bash
# The main job: set up (once), deploy configs/cpu.yaml on an embedded local Ray (Serve), ask it one
# question over HTTP and print the
# candidates, their ranking and the final answer. Extra arguments go to `blender-serve up`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" demo
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$ROOT/.venv/bin/blender-serve" up "$@"
