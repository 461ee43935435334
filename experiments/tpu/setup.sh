#!/usr/bin/env bash
# Copies this working tree (tracked and untracked files, .gitignore respected) to every
# worker of the TPU VM and installs it there (worker_setup.sh: a Python 3.11 venv with
# `pip install -c constraints.txt -e '.[tpu]'`). Re-run it after changing the code.
#
#   experiments/tpu/setup.sh --name=NAME --zone=ZONE --accelerator=v4-8 [--dry-run]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
tpu_setup
