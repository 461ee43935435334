#!/usr/bin/env bash
# Runs on every TPU VM worker (setup.sh calls it after unpacking the repository into
# ~/vit_jax): a Python venv in ~/vit_venv with the project and jax[tpu] (jax plus the
# libtpu wheel it pins), at the versions of constraints.txt. Idempotent: re-run it after
# changing the code. PYTHON_VERSION (default 3.11, the version CI ran) picks the Python.
set -euo pipefail

PYTHON_VERSION=${PYTHON_VERSION:-3.11}
VENV=$HOME/vit_venv
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [[ ! -x $VENV/bin/python ]]; then
  # The runtime images ship Ubuntu's Python (3.10 on 22.04) and the project needs 3.11+:
  # uv fetches a standalone CPython, the same on every runtime image.
  python3 -m pip install --user --quiet --upgrade uv
  "$HOME/.local/bin/uv" venv --seed --python "$PYTHON_VERSION" "$VENV"
fi
"$VENV/bin/pip" install --quiet -c constraints.txt -e '.[tpu]'
# Imports only: touching the TPU here would wait for the other hosts of a slice.
"$VENV/bin/python" -c 'import socket, jax, vit_jax
print(socket.gethostname(), "jax", jax.__version__, "ready")'
