"""glibc malloc settings that stop XLA:CPU from page-faulting its temp buffer every step.

Why: XLA:CPU allocates a step's temporaries as one block per execution (1.0 GB for a
ViT-Ti/16 batch-16 train step). glibc serves blocks over 32 MB with mmap and gives
them back with munmap, so every step touches ~265,000 fresh 4 KiB pages: 0.5-0.6 s
of kernel time (zeroing and faults) per ~1.4 s step on the 2-core VM, a quarter of
the CPU time. With one arena, no mmap, no trimming and a 1 GiB top pad, the freed
block stays in the heap and the next step reuses it: 0 faults per step. Measured
(one process each, back to back; medians; experiments/benchmarks/README.md): ViT-Ti/16 b16
float32 1.32x, bf16_matmul 1.39x; ViT-B/16 b8 1.05x / 1.11x. PyTorch does not gain
from the same settings (its CPU allocator already caches).

Costs: memory freed by a step is not returned to the OS (RSS stays at its peak), and
one arena serialises malloc across threads, which can slow a host input pipeline
with many threads: hence opt-in (`--cpu_malloc` of vit_jax.main / vit_jax.benchmark),
meant for CPU runs. glibc reads these variables only at process start, so `reexec`
starts the same command again with them set. Other C libraries ignore them.
"""
from __future__ import annotations

import os
import sys

# glibc tunables (mallopt(3) names: M_ARENA_MAX, M_MMAP_MAX, M_TRIM_THRESHOLD, M_TOP_PAD).
TUNED_ENV = {
    'MALLOC_ARENA_MAX': '1',  # XLA's worker threads allocate from the main heap...
    'MALLOC_MMAP_MAX_': '0',  # ...which serves even GB-sized blocks (no mmap/munmap)...
    'MALLOC_TRIM_THRESHOLD_': str(1 << 40),  # ...and never shrinks (no re-faulting)...
    'MALLOC_TOP_PAD_': str(1 << 30),  # ...growing 1 GiB ahead (fewer brk calls).
}


def active() -> bool:
  """True when this process started with TUNED_ENV."""
  return all(os.environ.get(k) == v for k, v in TUNED_ENV.items())


def describe() -> dict[str, str] | str:
  """TUNED_ENV if active, else 'default' (for JSON lines and logs)."""
  return dict(TUNED_ENV) if active() else 'default'


def reexec() -> None:
  """Replaces this process by the same command line with TUNED_ENV set (no-op if set).

  Call first thing in a command's main, before threads or JAX backends exist.
  """
  if active():
    return
  env = dict(os.environ, **TUNED_ENV)
  sys.stdout.flush()
  sys.stderr.flush()
  # sys.orig_argv: the interpreter's own argv, e.g. ['python', '-m', 'vit_jax.main', ...].
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
