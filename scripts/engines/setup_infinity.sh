#!/usr/bin/env bash
# Create a virtualenv that can serve a local cross-encoder with Infinity (infinity-emb).
#
#   scripts/engines/setup_infinity.sh VENV_DIR
#
# Infinity pins numpy<2 and sentence-transformers<4, so it gets its own virtualenv, never
# the project's. torch is installed first and pinned (TORCH_SPEC, default torch==2.13.0, a
# CPU wheel): letting pip resolve torch on its own pulls a multi-GB CUDA build.
# Afterwards: CE_RERANK_INFINITY_PYTHON=VENV_DIR/bin/python enables tests/test_remote_engines.py.
set -euo pipefail
VENV_DIR=${1:?usage: setup_infinity.sh VENV_DIR}
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
INFINITY_SPEC=${INFINITY_SPEC:-infinity-emb[server,torch]==0.0.78}

"$PYTHON" -m venv "$VENV_DIR"
PIP=("$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "$TORCH_SPEC"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "$TORCH_SPEC" > "$CONSTRAINTS"
"${PIP[@]}" -c "$CONSTRAINTS" "$INFINITY_SPEC"
# Smoke check: the server module imports.
DO_NOT_TRACK=1 "$VENV_DIR/bin/python" -c "import infinity_emb, infinity_emb.infinity_server; print('infinity-emb', infinity_emb.__version__)"
