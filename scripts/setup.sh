#!/usr/bin/env bash
# Create .venv with the pinned stack (requirements.lock) and nasflow itself, editable.
# Idempotent; `make` reruns it only when requirements.lock or pyproject.toml change.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
# torch first: the largest download, and the pin the rest resolves against
"$VENV/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install -q -r requirements.lock
"$VENV/bin/python" -m pip install -q --no-deps -e .
# Optional real dataset from Debian (Fashion-MNIST): used when present, never required.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
        || (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) \
        || echo "setup: dataset-fashion-mnist not installed (optional)" >&2
fi
echo "setup: $("$VENV/bin/python" -c 'import torch, nasflow; print("torch", torch.__version__, "nasflow", nasflow.__version__)')"
