"""Peak FLOP/s and core counts of the devices a run uses (the MFU denominator)."""
from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp

# The table itself (peaks, memory, cores per device kind) is cost/devices.py.
from vit_jax.cost.devices import device_spec


def host_cpu_cores() -> int:
  """CPU cores this process may run on (respects taskset / container limits)."""
  return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()


def cores_per_device(device) -> float:
  """Cores one JAX device stands for.

  TPU: from the table (the ViT paper counted TPUv3 cores). GPU: 1. CPU: the host's cores
  shared by its CPU devices (8 simulated devices on 2 cores count 0.25 each), so a CPU
  run's core-hours are physical cores x seconds.
  """
  if device.platform == 'cpu':
    local_cpus = sum(d.platform == 'cpu' for d in jax.local_devices())
    return host_cpu_cores() / max(local_cpus, 1)
  spec = device_spec(device.device_kind)
  return float(spec.cores) if spec else 1.0


def uses_bf16_matmuls(dtype: str) -> bool:
  """Whether config dtype `dtype` runs its matmuls on bfloat16 inputs."""
  return dtype in ('bfloat16', 'bf16_matmul')


def measure_cpu_peak_flops(dtype: str = 'float32', size: int = 1024,
                           repeats: int = 5) -> float:
  """Best-of-`repeats` FLOP/s of a (size x size) @ (size x size) matmul on one CPU device.

  float32: float32 in and out. 'bfloat16' / 'bf16_matmul': bfloat16 inputs with
  float32 accumulation and output, the fastest bf16 GEMM XLA:CPU has (bf16-output
  matmuls are slower), so it is the peak of the hardware's bf16 units.
  XLA:CPU runs one matmul on all the host's cores, so this is the peak of the host, not
  of one simulated device. ~0.1 s at 1024 on a 2-core laptop.
  """
  matmul, x = _cpu_matmul_probe(uses_bf16_matmuls(dtype), size)
  best = math.inf
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size**3 / best


@functools.lru_cache(maxsize=None)
def _cpu_matmul_probe(bf16_inputs: bool, size: int):
  """(compiled x @ x, x) on the first CPU device; cached, so repeated measurements
  (the benchmark takes one per timing round) compile nothing."""
  cpu = jax.devices('cpu')[0]
  dtype = jnp.bfloat16 if bf16_inputs else jnp.float32
  x = jax.device_put(jnp.ones((size, size), dtype), cpu)
  matmul = jax.jit(lambda a: jnp.matmul(a, a, preferred_element_type=jnp.float32))
  matmul = matmul.lower(x).compile()
  matmul(x).block_until_ready()  # first-run allocations, outside any timing.
  return matmul, x


def peak_flops_total(devices, dtype: str, cpu_host_peak: float | None = None) -> float | None:
  """Sum of peak FLOP/s over `devices` for compute `dtype`; None when unknown.

  CPU devices of one host share its cores: each process's CPU peak counts once.
  """
  total = 0.0
  cpu_hosts = {d.process_index for d in devices if d.platform == 'cpu'}
  if cpu_hosts:
    if cpu_host_peak is None:
      return None
    total += cpu_host_peak * len(cpu_hosts)
  for d in devices:
    if d.platform == 'cpu':
      continue
    spec = device_spec(d.device_kind)
    if spec is None:
      return None
    total += spec.peak_bf16 if uses_bf16_matmuls(dtype) else spec.peak_fp32
  return total


def device_kinds(devices) -> dict[str, tuple[int, float]]:
  """device_kind -> (number of devices, cores per device) over `devices`."""
  kinds: dict[str, tuple[int, float]] = {}
  for d in devices:
    count, _ = kinds.get(d.device_kind, (0, 0.0))
    kinds[d.device_kind] = (count + 1, cores_per_device(d))
  return kinds
