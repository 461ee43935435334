"""CPU cores as JAX devices: data parallelism over the cores of one host.

By default JAX gives a host one CPU device and XLA splits each op over the cores
(intra-op threads). `--cpu_devices=N` (or 'auto' = the cores this process may use)
makes N CPU devices instead; the training loop's mesh then spans them like TPU cores,
each taking batch/N examples, and the train step is compiled with one thread per
device (`xla_cpu_multi_thread_eigen=False`) so the devices do not fight over cores.

Why: on the 2-core Zen 4 VM XLA keeps ~1.7 of 2 cores busy in a ViT-Ti/16 float32
step (small ops run on one thread while the other waits); two single-threaded devices
keep ~1.9 busy: 1.19x the step rate there (ViT-B/16 float32 1.05x, but bf16_matmul
on B/16 0.78x: measure with `python -m vit_jax.benchmark --cpu_devices 2 --sweep
devices=1,2`; experiments/benchmarks/README.md). Results agree with one device up to
float summation order (the gradient mean is taken over the mesh).

Must run before anything touches a JAX backend (jax.devices(), the first array).
"""
from __future__ import annotations

import jax

from vit_jax.cost import peaks

AUTO = 'auto'
# XLA options of the train step when one process has several CPU devices.
ONE_THREAD_PER_DEVICE = {'xla_cpu_multi_thread_eigen': False}


def resolve(value: str | int) -> int:
  """'auto' -> peaks.host_cpu_cores(); '4' or 4 -> 4; anything else a ValueError naming it."""
  if isinstance(value, str) and value.strip().lower() == AUTO:
    return peaks.host_cpu_cores()
  try:
    count = int(value)
  except (TypeError, ValueError):
    count = 0
  if count < 1 or (isinstance(value, float) and value != count):
    raise ValueError(f'cpu_devices={value!r}: expected {AUTO!r} or a positive int, '
                     f'e.g. --cpu_devices={peaks.host_cpu_cores()} (this host has '
                     f'{peaks.host_cpu_cores()} cores)')
  return count


def configure(value: str | int) -> int:
  """Makes JAX's CPU backend expose `value` devices; returns the count."""
  count = resolve(value)
  try:
    jax.config.update('jax_num_cpu_devices', count)
  except RuntimeError as e:  # a backend already exists: too late in this process.
    raise RuntimeError(
        f'cpu_devices={value!r} must be set before JAX creates its CPU backend (before '
        'jax.devices() or the first array); set it at process start, e.g. '
        f'python -m vit_jax.main --cpu_devices={value} ...') from e
  return count


def step_compiler_options(mesh: jax.sharding.Mesh) -> dict[str, bool]:
  """ONE_THREAD_PER_DEVICE when `mesh` has several CPU devices in this process."""
  local_cpu = [d for d in mesh.devices.flat
               if d.platform == 'cpu' and d.process_index == jax.process_index()]
  return dict(ONE_THREAD_PER_DEVICE) if len(local_cpu) > 1 else {}
