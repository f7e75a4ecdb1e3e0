#!/usr/bin/env bash
# Install Label Studio 1.23.2 into .venv-ls, its own virtual environment (its dependencies clash with auxol's),
# for the end-to-end test tests/test_serve_label_studio_e2e.py. About 3 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-ls
.venv-ls/bin/python -m pip install --quiet --upgrade pip
.venv-ls/bin/python -m pip install --quiet label-studio==1.23.2
.venv-ls/bin/python -c "import label_studio; print('label-studio', label_studio.__version__, 'installed in .venv-ls')"
