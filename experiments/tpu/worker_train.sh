#!/usr/bin/env bash
# Runs on every TPU VM worker (train.sh starts it under nohup): `python -m vit_jax.main`
# with the flags given, from ~/vit_jax in ~/vit_venv. The Python process id goes to
# ~/vit_train.pid (for logs.sh and stop.sh), its exit code to ~/vit_train.rc.
set -uo pipefail

PID_FILE=$HOME/vit_train.pid
RC_FILE=$HOME/vit_train.rc
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

if [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
  echo "error: a training run is still going on this worker (pid $(cat "$PID_FILE"));" \
    "follow it with logs.sh or stop it with stop.sh first" >&2
  exit 1
fi
rm -f "$RC_FILE"
"$HOME/vit_venv/bin/python" -m vit_jax.main "$@" &
echo $! >"$PID_FILE"
wait $!
rc=$?
echo "$rc" >"$RC_FILE"
exit "$rc"
