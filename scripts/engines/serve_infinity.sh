#!/usr/bin/env bash
# Serve a local cross-encoder directory with Infinity on 127.0.0.1 (CPU, float32).
#
#   scripts/engines/serve_infinity.sh PYTHON MODEL_DIR PORT [SERVED_NAME] [API_KEY]
#
# PYTHON is the interpreter of a virtualenv made by setup_infinity.sh. Rerank endpoint:
# POST http://127.0.0.1:PORT/rerank; health: GET /health. Runs in the foreground.
# DO_NOT_TRACK=1: infinity-emb sends usage statistics otherwise. Model code shipped with
# a model is not run (--no-trust-remote-code; Infinity's own default is to trust it).
set -euo pipefail
PY=${1:?usage: serve_infinity.sh PYTHON MODEL_DIR PORT [SERVED_NAME] [API_KEY]}
MODEL_DIR=${2:?model directory}
PORT=${3:?port}
NAME=${4:-$(basename "$MODEL_DIR")}
API_KEY=${5:-}
ARGS=(v2 --model-id "$MODEL_DIR" --served-model-name "$NAME" --host 127.0.0.1 --port "$PORT"
      --engine torch --device cpu --dtype float32 --batch-size 32
      --no-model-warmup --no-trust-remote-code --no-bettertransformer --no-vector-disk-cache
      --log-level warning)
if [[ -n "$API_KEY" ]]; then ARGS+=(--api-key "$API_KEY"); fi
export DO_NOT_TRACK=1 INFINITY_ANONYMOUS_USAGE_STATS=0 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PY" -m infinity_emb.cli "${ARGS[@]}"
