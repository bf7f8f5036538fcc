#!/usr/bin/env bash
# One run that tells whether taggant's GPU training path works (bench/gpu_check.py: gpt-125m and
# gpt-350m in bf16 on one GPU, overlay, checkpoint save + resume, probe pass; with 2+ GPUs a DP=2
# NCCL + distributed-optimizer run resumed at TP=2; no Ray). `--tiny` runs the same code on CPU
# with the tiny-2m preset (add `--data-parallel` to run the two-rank phase on CPU/gloo too).
#
#   bash bench/gpu_check.sh [--tiny] [--data-parallel] [--out DIR]   # $OUT/gpu_check.json
#   bash bench/gpu_check.sh --fetch-wheels   # where PyPI is reachable: fill .whl/ for a GPU box
#
# Starts on a bare machine that has Python (3.12 on the GPU images; $PYTHON picks it), pip and a
# torch build: bench/gpu_check_deps.py lists every other import the check needs, what this Python
# lacks is installed into a temporary folder (from the wheels in $TAGGANT_WHEELS if that folder
# holds any, else from the package index), and the check starts only once every import works and,
# on CUDA, a C compiler and Python.h are present (Triton compiles megatron's fusions); otherwise
# it names each missing piece and exits 2. The JSON report is rewritten after every phase, so a
# time-out ($GPU_CHECK_TIMEOUT_S, default 470 s) keeps the figures so far.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${TAGGANT_WHEELS:-.whl}
DEPS_PY=bench/gpu_check_deps.py

if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "gpu_check: $PY has no pip; install it (apt-get install python3-pip, or get-pip.py)." >&2
    exit 2
fi
if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mapfile -t PINS < <("$PY" "$DEPS_PY" pins)
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${PINS[@]}"
    du -sh "$WHEELS"
    exit 0
fi
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "gpu_check: $PY has no torch; it checks the machine's own (CUDA) torch build." >&2
    exit 2
fi

SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
mapfile -t MISSING < <("$PY" "$DEPS_PY" missing)
if ((${#MISSING[@]})); then
    echo "gpu_check: installing ${MISSING[*]}"
    SOURCE=()
    if compgen -G "$WHEELS/*.whl" >/dev/null; then SOURCE=(--no-index --find-links "$WHEELS"); fi
    "$PY" -m pip install -q --no-deps --no-compile --target "$SITE/deps" "${SOURCE[@]}" \
        "${MISSING[@]}" || true  # what failed is named by `verify` below
    export PYTHONPATH="$SITE/deps${PYTHONPATH:+:$PYTHONPATH}"
fi
# taggant without installing it: its root folders under a `taggant` namespace folder.
if ! "$PY" -c "import taggant.pipeline" 2>/dev/null; then
    mkdir -p "$SITE/src/taggant"
    for pkg in sketches pipeline jobs; do ln -s "$PWD/$pkg" "$SITE/src/taggant/$pkg"; done
    export PYTHONPATH="$SITE/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" "$DEPS_PY" verify; then
    echo "gpu_check: not started (above: what is missing). Offline, carry wheels in $WHEELS/" \
         "(\`bash bench/gpu_check.sh --fetch-wheels\` where an index is reachable)." >&2
    exit 2
fi
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1 TOKENIZERS_PARALLELISM=true
timeout "${GPU_CHECK_TIMEOUT_S:-470}" "$PY" bench/gpu_check.py "$@"
