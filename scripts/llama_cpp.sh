#!/usr/bin/env bash
# Install llama-cpp-python (the `llama_cpp` generator backend, and `python -m llama_cpp.server`) into
# a venv (default .venv), idempotently. It has no wheels on PyPI and compiles llama.cpp from source;
# only what this project uses is built (no llava/mtmd, tools, tests or examples; the CPU's own
# instruction set): about 3-5 minutes on 2 cores. The server's few pure-Python dependencies come too.
# Usage: scripts/llama_cpp.sh [VENV_DIR]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv}"
SPEC="llama-cpp-python[server]==0.3.36"
if "$VENV/bin/python" -c "import llama_cpp, llama_cpp.server.app" 2>/dev/null; then
    exit 0
fi
start=$(date +%s)
export CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=OFF -DGGML_OPENMP=OFF}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
if [ -x "$VENV/bin/uv" ]; then
    "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" "$SPEC"
else
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$SPEC"
fi
echo "llama_cpp.sh: llama-cpp-python built and installed in $(( $(date +%s) - start )) s" >&2
