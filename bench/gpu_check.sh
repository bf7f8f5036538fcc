#!/usr/bin/env bash
# One run that tells whether taggant's GPU training path works (bench/gpu_check.py: gpt-125m and
# gpt-350m in bf16 on one GPU, overlay, checkpoint save + resume, probe pass; no Ray), under
# 8 minutes on an H100/H200. `--tiny` runs the same code on CPU with the tiny-2m preset.
#
#   bash bench/gpu_check.sh [--tiny]        # figures on stdout and in $OUT/gpu_check.json
#   bash bench/gpu_check.sh --fetch-wheels  # where PyPI is reachable: fill .whl/ for a GPU box
#
# Needs python3 (or $PYTHON) with torch, numpy, pyarrow, fsspec, pyyaml, tokenizers, xxhash,
# scipy and psutil. megatron-core 0.16.1 and pydantic 2 are often missing on GPU images: they are
# installed from the wheels in $TAGGANT_WHEELS (default .whl/, 5.4 MB in all; `--fetch-wheels`
# downloads them for Python 3.12 / x86-64), or the script stops and names what it needs. A GPU
# machine without PyPI gets .whl/ carried beside the working tree (it is git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${TAGGANT_WHEELS:-.whl}
# Pinned to what the CPU virtualenv holds; pydantic-core must match pydantic exactly. The last
# two are floors of megatron-core and pydantic that an older image may not meet.
PINS=(megatron-core==0.16.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
      typing-inspection==0.4.5 typing-extensions==4.16.0 packaging==26.4)

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" "${PINS[@]}"
    du -sh "$WHEELS"
    exit 0
fi

SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT
if ! "$PY" -c "import megatron.core, pydantic" 2>/dev/null; then
    if ! ls "$WHEELS"/megatron_core-*.whl >/dev/null 2>&1; then
        echo "gpu_check: $PY lacks megatron-core and/or pydantic, and $WHEELS/ holds no wheels." >&2
        echo "Needs: ${PINS[*]} (run \`bash bench/gpu_check.sh --fetch-wheels\` where PyPI" \
             "is reachable and carry $WHEELS/)." >&2
        exit 2
    fi
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE/deps" \
        "$WHEELS"/*.whl
    export PYTHONPATH="$SITE/deps${PYTHONPATH:+:$PYTHONPATH}"
fi
# taggant without installing it: its root folders under a `taggant` namespace folder.
if ! "$PY" -c "import taggant.pipeline" 2>/dev/null; then
    mkdir -p "$SITE/src/taggant"
    for pkg in sketches pipeline jobs; do ln -s "$PWD/$pkg" "$SITE/src/taggant/$pkg"; done
    export PYTHONPATH="$SITE/src:$PYTHONPATH"
fi
export PYTHONUNBUFFERED=1 CUDA_DEVICE_MAX_CONNECTIONS=1 TOKENIZERS_PARALLELISM=true
timeout 470 "$PY" bench/gpu_check.py "$@"
