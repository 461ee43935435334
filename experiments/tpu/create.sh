#!/usr/bin/env bash
# Creates a TPU VM (one host or a multi-host slice) with the runtime image for its
# generation (tpu-ubuntu2204-base for v2-v4, v2-alpha-tpuv5-lite / -tpuv5 / -tpuv6e).
#
#   experiments/tpu/create.sh --name=NAME --zone=ZONE --accelerator=v4-8 [--spot]
#       [--version=RUNTIME] [--project=PROJECT] [--dry-run]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
tpu_create
