#!/usr/bin/env bash
# Streams worker 0's training log from the start until the run ends; exits with the
# run's exit code. Ctrl-C stops only the streaming, never the run.
#
#   experiments/tpu/logs.sh --name=NAME --zone=ZONE --accelerator=v4-8 [--dry-run]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
tpu_follow
