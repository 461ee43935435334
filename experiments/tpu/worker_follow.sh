#!/usr/bin/env bash
# Runs on one TPU VM worker (logs.sh): prints ~/vit_train.log from the start and follows
# it until that worker's training process exits, then exits with the training's code.
set -uo pipefail

PID_FILE=$HOME/vit_train.pid
RC_FILE=$HOME/vit_train.rc
LOG=$HOME/vit_train.log

if [[ ! -f $PID_FILE ]]; then
  echo "error: no training was started on $(hostname) ($PID_FILE is missing);" \
    "start one with train.sh" >&2
  exit 1
fi
tail -n +1 -F --pid="$(cat "$PID_FILE")" "$LOG"
# The wrapper writes the exit code just after the process ends.
for _ in $(seq 30); do
  [[ -f $RC_FILE ]] && break
  sleep 1
done
rc=$(cat "$RC_FILE" 2>/dev/null || echo 1)
echo "training on $(hostname) exited with code $rc"
exit "$rc"
