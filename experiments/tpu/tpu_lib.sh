# shellcheck shell=bash
# Shared by the TPU VM scripts in this folder (sourced, not run): flags, checks before
# anything is created, the dry-run wrapper, and one function per step.
#
# Every flag can also come from the environment (TPU_NAME, ZONE, ACCELERATOR, PROJECT,
# RUNTIME_VERSION, CONFIG, WORKDIR, DATA_DIR, SPOT=1, DRY_RUN=1), so a shell session can
# export the slice once and call create.sh / setup.sh / train.sh / logs.sh / delete.sh.

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# On every worker, relative to the home directory; worker_*.sh use the same names.
REMOTE_REPO=vit_jax
REMOTE_TARBALL=vit_jax.tar.gz
REMOTE_LOG=vit_train.log
GENERATIONS='v2 v3 v4 v5p v5litepod v6e'

TPU_NAME=${TPU_NAME:-vit-jax}
ZONE=${ZONE:-}
ACCELERATOR=${ACCELERATOR:-}
PROJECT=${PROJECT:-}
RUNTIME_VERSION=${RUNTIME_VERSION:-}
CONFIG=${CONFIG:-}
WORKDIR=${WORKDIR:-}
DATA_DIR=${DATA_DIR:-}
SPOT=${SPOT:-0}
DRY_RUN=${DRY_RUN:-0}
# shellcheck disable=SC2034  # read by train.sh / launch.sh, which source this file.
FOLLOW=1 DELETE_ON_EXIT=0 DELETE_ON_FAILURE=0
MAIN_ARGS=()  # after `--`: passed to vit_jax.main as they are.

die() {
  echo "error: $*" >&2
  exit 2
}

usage() {
  # The calling script's header comment, without the leading '# '.
  sed -n '2,/^$/{/^#/s/^# \{0,1\}//p}' "$0"
}

takes_value() {
  case $1 in
    --name | --zone | --accelerator | --accelerator-type | --project | --version | \
      --config | --workdir | --data-dir) return 0 ;;
  esac
  return 1
}

parse_flags() {
  local flag value
  while (($#)); do
    flag=$1 value=''
    shift
    if [[ $flag == -- ]]; then
      MAIN_ARGS=("$@")
      break
    elif [[ $flag == --*=* ]]; then
      value=${flag#*=} flag=${flag%%=*}
    elif takes_value "$flag"; then
      (($#)) || die "$flag needs a value, e.g. $flag=..."
      value=$1
      shift
    fi
    set_flag "$flag" "$value"
  done
}

# shellcheck disable=SC2034  # FOLLOW, DELETE_ON_*: read by train.sh / launch.sh.
set_flag() {
  case $1 in
    --name) TPU_NAME=$2 ;;
    --zone) ZONE=$2 ;;
    --accelerator | --accelerator-type) ACCELERATOR=$2 ;;
    --project) PROJECT=$2 ;;
    --version) RUNTIME_VERSION=$2 ;;
    --config) CONFIG=$2 ;;
    --workdir) WORKDIR=$2 ;;
    --data-dir) DATA_DIR=$2 ;;
    --spot) SPOT=1 ;;
    --dry-run) DRY_RUN=1 ;;
    --no-follow) FOLLOW=0 ;;
    --delete-on-exit) DELETE_ON_EXIT=1 ;;
    --delete-on-failure) DELETE_ON_FAILURE=1 ;;
    -h | --help) usage && exit 0 ;;
    *) die "unknown flag '$1'; see $(basename "$0") --help" ;;
  esac
}

# ---------------------------------------------------------------------------------------
# Checks: everything that can be wrong locally fails here, before a TPU is created.
# ---------------------------------------------------------------------------------------
check_slice() {
  [[ -n $TPU_NAME ]] || die "--name is empty; give the TPU VM a name, e.g. --name=vit-b16"
  [[ -n $ZONE ]] || die "--zone is required (or ZONE=...); TPU types exist only in" \
    "some zones, e.g. --zone=us-central2-b for v4 or --zone=europe-west4-a for v3"
  check_accelerator
}

check_accelerator() {
  local example="e.g. --accelerator=v3-8, v4-8 or v4-32"
  [[ -n $ACCELERATOR ]] || die "--accelerator is required (or ACCELERATOR=...), $example"
  local generation=${ACCELERATOR%-*} size=${ACCELERATOR##*-}
  if [[ $ACCELERATOR != *-* || " $GENERATIONS " != *" $generation "* ]]; then
    die "unknown accelerator type '$ACCELERATOR'; use <generation>-<size> with" \
      "generation one of: $GENERATIONS ($example)"
  fi
  if [[ ! $size =~ ^[0-9]+$ ]] || ((size == 0)); then
    die "accelerator type '$ACCELERATOR': size '$size' is not a positive number; e.g. $generation-8"
  fi
  # v2-v5p sizes count TensorCores, 8 per host; v5litepod / v6e count chips.
  if [[ $generation =~ ^(v2|v3|v4|v5p)$ ]] && ((size % 8)); then
    die "accelerator type '$ACCELERATOR': $generation slices come in multiples of 8" \
      "cores; use $generation-8 (one host) or e.g. $generation-32"
  fi
}

# A single host holds 8 cores (v2-v5p) or up to 8 chips (v5litepod, v6e).
is_multi_host() {
  ((${ACCELERATOR##*-} > 8))
}

runtime_version() {
  if [[ -n $RUNTIME_VERSION ]]; then
    echo "$RUNTIME_VERSION"
    return
  fi
  case ${ACCELERATOR%-*} in
    v2 | v3 | v4) echo tpu-ubuntu2204-base ;;
    v5litepod) echo v2-alpha-tpuv5-lite ;;
    v5p) echo v2-alpha-tpuv5 ;;
    v6e) echo v2-alpha-tpuv6e ;;
  esac
}

# The config file named by --config, relative to the current directory or the repository.
config_file() {
  local file=${CONFIG%%:*}
  if [[ ! -f $file && $file != /* && -f $REPO_ROOT/$file ]]; then
    file=$REPO_ROOT/$file
  fi
  echo "$file"
}

check_run() {
  [[ -n $CONFIG ]] || die "--config is required, e.g. --config=configs/vit_i21k.py:model=ViT-B/16"
  local file
  file=$(config_file)
  if [[ $file != *.py || ! -f $file ]]; then
    die "config file '${CONFIG%%:*}' not found (from --config=$CONFIG); give a .py" \
      "file such as configs/vit_i21k.py, configs/finetune.py or configs/testing.py"
  fi
  [[ -n $WORKDIR ]] || die "--workdir is required, e.g. --workdir=gs://BUCKET/vit_runs/NAME"
  if [[ $WORKDIR != gs://* ]]; then
    is_multi_host && die "--workdir=$WORKDIR is not on GCS, but $ACCELERATOR has" \
      "several hosts that write one checkpoint together; use --workdir=gs://BUCKET/PATH"
    echo "warning: --workdir=$WORKDIR is on the VM's disk: it is lost when the VM is deleted" >&2
  fi
  if [[ -n $DATA_DIR && $DATA_DIR != gs://* ]]; then
    die "--data-dir=$DATA_DIR: the workers read tfds data from GCS; prepare it with" \
      "'tfds build NAME --data_dir=gs://BUCKET/tensorflow_datasets' and pass" \
      "--data-dir=gs://BUCKET/tensorflow_datasets"
  fi
  return 0
}

# ---------------------------------------------------------------------------------------
# Running commands: printed (shell-quoted, copy-pasteable) under --dry-run / DRY_RUN=1.
# ---------------------------------------------------------------------------------------
# One word for bash: as it is when safe, else in single quotes ('--flag=' left outside).
quote() {
  local safe='^[A-Za-z0-9_./:=,@%+-]+$' flag=''
  if [[ $1 =~ $safe ]]; then
    printf '%s' "$1"
    return
  fi
  [[ $1 =~ ^--[a-z.-]+= ]] && flag=${BASH_REMATCH[0]}
  local value=${1#"$flag"}
  printf "%s'%s'" "$flag" "${value//\'/\'\\\'\'}"
}

quote_all() {
  local word sep=''
  for word in "$@"; do
    printf '%s' "$sep"
    quote "$word"
    sep=' '
  done
}

run() {
  if ((DRY_RUN)); then
    echo "+ $(quote_all "$@")"
  else
    "$@"
  fi
}

gcloud_tpu() {
  local scope=(--zone="$ZONE" --quiet)
  [[ -n $PROJECT ]] && scope+=(--project="$PROJECT")
  run gcloud compute tpus tpu-vm "$@" "${scope[@]}"
}

# $1: worker ('all' or an index); $2: the command run there by bash in the home directory.
on_workers() {
  gcloud_tpu ssh "$TPU_NAME" --worker="$1" --command="$2"
}

# ---------------------------------------------------------------------------------------
# Steps.
# ---------------------------------------------------------------------------------------
tpu_create() {
  local flags=(create "$TPU_NAME" --accelerator-type="$ACCELERATOR"
    --version="$(runtime_version)")
  ((SPOT)) && flags+=(--spot)
  gcloud_tpu "${flags[@]}"
}

tpu_delete() {
  gcloud_tpu delete "$TPU_NAME"
}

# The working tree as it is (tracked and untracked files, .gitignore respected) -> $1.
make_tarball() {
  if ((DRY_RUN)); then
    echo "+ (cd $REPO_ROOT && git ls-files -co --exclude-standard | tar -czf $1 -T -)"
    return
  fi
  (cd "$REPO_ROOT" && git ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [[ -e $f ]] && printf '%s\0' "$f"; done |
    tar --null -czf "$1" -T -)
}

tpu_setup() {
  local dir=${TMPDIR:-/tmp}/vit_jax_upload.XXXXXX
  ((DRY_RUN)) || dir=$(mktemp -d)
  make_tarball "$dir/$REMOTE_TARBALL"
  gcloud_tpu scp "$dir/$REMOTE_TARBALL" "$TPU_NAME:$REMOTE_TARBALL" --worker=all
  ((DRY_RUN)) || rm -r "$dir"
  local unpack="mkdir -p $REMOTE_REPO && tar -xzf $REMOTE_TARBALL -C $REMOTE_REPO"
  on_workers all "$unpack && bash $REMOTE_REPO/experiments/tpu/worker_setup.sh"
}

# The same `python -m vit_jax.main` on every worker, in the background (survives the ssh
# session), output in ~/vit_train.log of each worker.
tpu_train() {
  local name args command
  name=$(basename "$(config_file)")
  args=(--config="configs/$name${CONFIG#"${CONFIG%%:*}"}" --workdir="$WORKDIR")
  [[ -n $DATA_DIR ]] && args+=(--config.data.data_dir="$DATA_DIR")
  args+=("${MAIN_ARGS[@]}")
  gcloud_tpu scp "$(config_file)" "$TPU_NAME:$REMOTE_REPO/configs/$name" --worker=all
  command="nohup bash $REMOTE_REPO/experiments/tpu/worker_train.sh"
  command+=" $(quote_all "${args[@]}")"
  on_workers all "$command > $REMOTE_LOG 2>&1 < /dev/null &"
}

# Streams worker 0's log until its training exits; returns the training's exit code.
tpu_follow() {
  on_workers 0 "bash $REMOTE_REPO/experiments/tpu/worker_follow.sh"
}

# SIGTERM, as a preemption notice: every worker saves a checkpoint and exits cleanly.
tpu_stop() {
  # shellcheck disable=SC2016  # expanded on the workers, not here.
  on_workers all 'kill -TERM "$(cat vit_train.pid)"'
}
