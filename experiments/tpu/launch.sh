#!/usr/bin/env bash
# One command for a whole run: create the TPU VM, install the project on every worker,
# train with the same command on all of them while streaming worker 0's log, and delete
# the VM when asked: --delete-on-exit (whatever happens, Ctrl-C included) or
# --delete-on-failure (only when a step or the run fails). All flags are checked before
# anything is created.
#
#   experiments/tpu/launch.sh --name=NAME --zone=ZONE --accelerator=v4-8 \
#       --config=configs/FILE.py[:ARGS] --workdir=gs://BUCKET/RUN \
#       [--data-dir=gs://BUCKET/tensorflow_datasets] [--spot] [--version=RUNTIME] \
#       [--delete-on-exit | --delete-on-failure] [--dry-run] [-- --config.FIELD=VALUE ...]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((DELETE_ON_EXIT || (DELETE_ON_FAILURE && rc != 0))); then
    echo "launch.sh: exit code $rc; deleting TPU VM $TPU_NAME" >&2
    tpu_delete || echo "launch.sh: delete failed; run delete.sh with the same flags" >&2
  fi
  exit "$rc"
}

parse_flags "$@"
check_slice
check_run
trap cleanup EXIT
trap 'exit 130' INT TERM
tpu_create
tpu_setup
tpu_train
tpu_follow
