#!/usr/bin/env bash
# Set up a development environment in .venv: PyTorch (CPU or CUDA wheel), auxol and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
python -m pip install --quiet -e ".[dev]"
python -c "import auxol, torch; print(f'auxol {auxol.__version__} with torch {torch.__version__} installed in .venv')"
