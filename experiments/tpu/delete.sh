#!/usr/bin/env bash
# Deletes the TPU VM (every worker and its disk; a gs:// workdir is kept).
#
#   experiments/tpu/delete.sh --name=NAME --zone=ZONE --accelerator=v4-8 [--dry-run]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
tpu_delete
