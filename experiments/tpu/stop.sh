#!/usr/bin/env bash
# Stops the run on every worker with SIGTERM, the preemption notice: the loop saves a
# checkpoint and exits cleanly; train.sh with the same flags resumes from it.
#
#   experiments/tpu/stop.sh --name=NAME --zone=ZONE --accelerator=v4-8 [--dry-run]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
tpu_stop
