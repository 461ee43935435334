#!/usr/bin/env bash
# The headline table of issue 8, for a quiet machine. About 18 minutes on the 2-core
# Zen 4 VM (measured budget: compiles ~5 min, timed rounds ~12 min).
#
#   bash experiments/benchmarks/run_final.sh [OUT.jsonl]
#
# Env: PYTHON (the project's venv python, default `python`), TORCH_PYTHON (the torch
# venv of compare_timm.py, default /work/torchvenv/bin/python), STEPS (timed rounds,
# default 8), CORES (CPU devices of the per-core entries, default nproc). Writes
# JSON lines to OUT (default experiments/benchmarks/final.jsonl, appended) and
# prints the README tables (summarize.py) at the end. Check `uptime` before and
# after: on a shared machine the numbers measure the other jobs too.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-experiments/benchmarks/final.jsonl}
PYTHON=${PYTHON:-python}
TORCH_PYTHON=${TORCH_PYTHON:-/work/torchvenv/bin/python}
STEPS=${STEPS:-8}
CORES=${CORES:-$(nproc)}
export PYTHONPATH=.
echo "start: $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"

# vit_jax float32 and bf16_matmul vs timm float32 and bf16 autocast, interleaved per
# group: ViT-Ti/16 batch 16, ViT-B/16 batch 8, Swin-T batch 8 (training steps).
# Our process runs with vit_jax/platform/host_malloc.py's settings (--cpu_malloc; the timm
# workers with glibc's defaults). The *_per_core entries run our step data-parallel
# over one CPU device per core (--cpu_devices, vit_jax/platform/cpu_devices.py).
"$PYTHON" experiments/benchmarks/compare.py --group Ti --group B --group Swin \
    --steps "$STEPS" --torch_python "$TORCH_PYTHON" --json "$OUT" \
    --cpu_malloc --cpu_devices "$CORES" --ours float32: --ours bf16_matmul:dtype=bf16_matmul \
    --ours "float32_per_core:devices=$CORES" \
    --ours "bf16_matmul_per_core:dtype=bf16_matmul;devices=$CORES" > /dev/null

# Swin-T time per image at 224 vs 448 px (forward), interleaved: batch 1 (as in
# experiments/swin_vs_vit_scaling) and batch 8 (where 448 px activations leave cache).
"$PYTHON" -m vit_jax.benchmark --cpu_malloc --model Swin-T --mode infer --sweep res=224,448 \
    --sweep batch=1,8 --steps "$STEPS" --json "$OUT" > /dev/null

echo "end: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PYTHON" experiments/benchmarks/summarize.py "$OUT"
