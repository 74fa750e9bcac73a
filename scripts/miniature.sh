#!/usr/bin/env bash
# The miniature reproduction of LLM-Blender, rebuilt from scratch (README "Does blending help?").
#
#   1. tasks     seeded verifiable prompts (blender_serve.miniature.tasks), split train/val/test
#   2. collect   candidates from SmolLM2-135M-Instruct asked five ways (configs/miniature.yaml)
#   3. train     a PairRanker on the MiniLM encoder, supervised by the verifiers (build-local pairrm-minilm-mini)
#   4. eval      every single configuration, random, oracle, each ranker strategy, and the blender
#
# Usage: scripts/miniature.sh [--engine vllm|transformers] [--n 1000] [--out results/miniature]
#   --engine vllm (default): one vLLM server (the CPU build, in .venv-vllm) hosts SmolLM2 and every
#       "model" of the ensemble is a way of asking it (--endpoint-model); continuous batching makes
#       collection ~5x faster than in-process transformers on 2 cores.
#   --engine transformers: the ensemble in-process, exactly as configs/miniature.yaml serves it.
# Collection resumes from $OUT/collected/ (delete it to collect afresh); the shipped copies are the gzipped
# files in blender_serve/miniature/data. Each step's time goes to $OUT/timings.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENGINE=vllm N=1000 OUT="$ROOT/results/miniature"
while [ $# -gt 0 ]; do
    case "$1" in
        --engine) ENGINE="$2"; shift 2 ;;
        --n) N="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
DATA="$ROOT/blender_serve/miniature/data"
CONFIG="$ROOT/configs/miniature.yaml"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
bash "$ROOT/scripts/bootstrap.sh"
BS="$ROOT/.venv/bin/blender-serve"
PY="$ROOT/.venv/bin/python"
COLLECTED="$OUT/collected"
mkdir -p "$OUT" "$DATA" "$COLLECTED"
declare -A T
step() { local name="$1"; shift; local t0; t0=$(date +%s); "$@"; T[$name]=$(( $(date +%s) - t0 )); echo "[$name] ${T[$name]} s" >&2; }

step tasks "$PY" -m blender_serve.miniature.tasks --n "$N" --seed 0 --out "$DATA"

SERVER_PID=""
cleanup() { [ -n "$SERVER_PID" ] && kill -- -"$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT
COLLECT_ARGS=()
if [ "$ENGINE" = vllm ]; then
    bash "$ROOT/scripts/setup_vllm_env.sh"
    SMOL="$("$PY" -c 'from blender_serve.local_models import smollm2_checkpoint; print(smollm2_checkpoint())')"
    PORT="$("$PY" -c 'from blender_serve.testing.apps import free_port; print(free_port())')"
    set -m  # the server gets its own process group, so cleanup stops its engine workers too
    "$ROOT/.venv-vllm/bin/python" -m vllm.entrypoints.launchers.api_server.entry --model "$SMOL" \
        --served-model-name smollm2 --host 127.0.0.1 --port "$PORT" --disable-log-stats --dtype bfloat16 \
        --max-model-len 2048 --kv-cache-memory-bytes 2147483648 --enforce-eager >"$OUT/vllm.log" 2>&1 &
    SERVER_PID=$!
    set +m
    for _ in $(seq 240); do
        curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$OUT/vllm.log" >&2; exit 1; }
        sleep 1
    done
    COLLECT_ARGS=(--endpoint "http://127.0.0.1:$PORT/v1" --endpoint-model smollm2 --concurrency 16)
else
    COLLECT_ARGS=(--concurrency 5)
fi
collect_all() {
    for split in train val test; do
        "$BS" collect --config "$CONFIG" --tasks "$DATA/tasks_$split.jsonl" --out "$COLLECTED/candidates_$split.jsonl" \
            "${COLLECT_ARGS[@]}"
    done
}
step collect collect_all
cleanup; SERVER_PID=""
# Shipped compressed: JSON lines gzip to about a fifth.
for split in train val test; do gzip -9 -n -c "$COLLECTED/candidates_$split.jsonl" >"$DATA/candidates_$split.jsonl.gz"; done

step train "$BS" build-local pairrm-minilm-mini
RANKER="$("$PY" -c 'from blender_serve.local_models import pairrm_minilm_mini; print(pairrm_minilm_mini())')"

step eval "$BS" eval --data "$DATA/candidates_test.jsonl.gz" --ranker "$RANKER" --fuser "$CONFIG" --top-k 2 \
    --out "$OUT" --no-progress
{
    echo "{"
    echo "  \"engine\": \"$ENGINE\", \"n\": $N,"
    echo "  \"tasks_s\": ${T[tasks]}, \"collect_s\": ${T[collect]}, \"train_s\": ${T[train]}, \"eval_s\": ${T[eval]}"
    echo "}"
} >"$OUT/timings.json"
cat "$OUT/timings.json"
