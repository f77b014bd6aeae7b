#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with the pinned dependencies
# and the facecluster package installed in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# torch on its own first, exactly pinned (a CPU wheel here; see requirements.txt)
.venv/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
