#!/usr/bin/env bash
# Copies the config to every worker, starts the same `python -m vit_jax.main` on all of
# them in the background (nohup; the run survives a dropped connection), then streams
# worker 0's log until the run ends (--no-follow: return at once; logs.sh re-attaches).
#
#   experiments/tpu/train.sh --name=NAME --zone=ZONE --accelerator=v4-8 \
#       --config=configs/FILE.py[:ARGS] --workdir=gs://BUCKET/RUN \
#       [--data-dir=gs://BUCKET/tensorflow_datasets] [--no-follow] [--dry-run] \
#       [-- --config.FIELD=VALUE ...]
set -euo pipefail
# shellcheck source=tpu_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/tpu_lib.sh"

parse_flags "$@"
check_slice
check_run
tpu_train
if ((FOLLOW)); then
  tpu_follow
fi
