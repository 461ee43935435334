"""Compute accounting: multiply-accumulates of a forward pass (this file, top), and the
training run's core-hours / TPU-core-days / MFU (added by the training loop).

MACs are counted *analytically from the traced program*: we trace `model.apply` with
abstract shapes (no memory, so ViT-H is free) and sum the MACs of every `dot_general`
and `conv_general_dilated` in the jaxpr, descending into nested jaxprs (jit, remat,
custom_vjp). Elementwise ops (softmax, GELU, LayerNorm) are not counted, which is the
convention of the published GMAC figures (fvcore / the ViT and Swin papers). XLA's
cost analysis instead reports FLOPs of the compiled program including elementwise ops
and fusions, which is what the training loop uses for MFU.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from typing import Any

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np


def _dot_general_macs(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, _), (lhs_batch, _) = eqn.params['dimension_numbers']
  out_size = math.prod(eqn.outvars[0].aval.shape)
  contract = math.prod(lhs[d] for d in lhs_contract)
  del rhs, lhs_batch  # output size x contraction length covers batch dims too.
  return out_size * contract


def _conv_macs(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  dn = eqn.params['dimension_numbers']
  # rhs_spec = (out_feature_dim, in_feature_dim, *spatial_dims) as indices into rhs.
  out_dim, in_dim, *spatial = dn.rhs_spec
  kernel_spatial = math.prod(rhs[d] for d in spatial)
  in_per_group = rhs[in_dim]
  out_size = math.prod(eqn.outvars[0].aval.shape)
  return out_size * in_per_group * kernel_spatial


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in (value if isinstance(value, (list, tuple)) else [value]):
      if isinstance(item, jax_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax_core.Jaxpr):
        yield item


def jaxpr_macs(jaxpr) -> int:
  """Sum of matmul/conv MACs in a jaxpr and all jaxprs nested in it."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      total += _dot_general_macs(eqn)
    elif eqn.primitive.name == 'conv_general_dilated':
      total += _conv_macs(eqn)
    for sub in _sub_jaxprs(eqn):
      total += jaxpr_macs(sub)
  return total


def abstract_params(model, image_size: tuple[int, int] | None = None) -> Any:
  """Parameter shapes of `model` (ShapeDtypeStructs), computed without allocating."""
  h, w = image_size or model.image_size
  images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.PRNGKey(0), x, train=False), images)
  return variables['params']


def count_params(model) -> int:
  """Number of parameters of `model` at its configured image size."""
  leaves = jax.tree_util.tree_leaves(abstract_params(model))
  return int(sum(np.prod(x.shape) for x in leaves))


def forward_macs(model, image_size: tuple[int, int] | None = None) -> int:
  """Multiply-accumulates of one image's inference forward pass (analytic, see top)."""
  h, w = image_size or model.image_size
  params = abstract_params(model, (h, w))
  images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  jaxpr = jax.make_jaxpr(
      lambda p, x: model.apply({'params': p}, x, train=False))(params, images)
  return jaxpr_macs(jaxpr.jaxpr)


# ----------------------------------------------------------------------------------------
# Training-run compute accounting: core-hours, TPU-core-days, achieved FLOP/s, MFU.
#
#   core_seconds   = sum over train segments of (devices x cores_per_device x seconds);
#                    compile time, eval time and checkpoint waits are excluded.
#   core_days      = core_seconds / 86400, also per device kind: core_days/<kind>.
#   flops          = steps x flops_per_step (XLA cost analysis of the compiled step).
#   achieved FLOP/s = flops / train_seconds;  MFU = achieved / (peak per device x devices).
#   TPUv3-core-day equivalent = flops / (TPU_V3_CORE_PEAK x MFU) / 86400: the TPUv3 core
#                    days the same work needs at the utilisation this run achieved.
# ----------------------------------------------------------------------------------------
SECONDS_PER_DAY = 86_400.0


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
  """Peak dense FLOP/s of one JAX device and how many cores the paper would count."""
  cores: int  # TPU v2/v3: a JAX device is one TensorCore; v4/v5p devices hold two.
  peak_bf16: float  # FLOP/s, dense, bfloat16 inputs.
  peak_fp32: float  # FLOP/s of a float32 matmul at JAX's default precision:
  #                   one bf16 pass on TPU, TF32 tensor cores on A100/H100/H200.


# Keyed by a substring of `jax.Device.device_kind`, most specific first. Vendor figures:
# TPU per-chip peaks (v2 45T / 2 cores, v3 123T / 2 cores, v4 275T, v5e 197T, v5p 459T,
# v6e 918T) and NVIDIA SXM dense figures (no sparsity).
DEVICE_SPECS: dict[str, DeviceSpec] = {
    'TPU v2': DeviceSpec(1, 22.5e12, 22.5e12),
    'TPU v3': DeviceSpec(1, 61.5e12, 61.5e12),
    'TPU v4': DeviceSpec(2, 275e12, 275e12),
    'TPU v5 lite': DeviceSpec(1, 197e12, 197e12),  # v5e
    'TPU v5e': DeviceSpec(1, 197e12, 197e12),
    'TPU v5p': DeviceSpec(2, 459e12, 459e12),
    'TPU v5': DeviceSpec(2, 459e12, 459e12),  # v5p reports 'TPU v5'
    'TPU v6 lite': DeviceSpec(1, 918e12, 918e12),  # v6e (Trillium)
    'TPU v6e': DeviceSpec(1, 918e12, 918e12),
    'A100': DeviceSpec(1, 312e12, 156e12),
    'H100': DeviceSpec(1, 989.4e12, 494.7e12),
    'H200': DeviceSpec(1, 989.4e12, 494.7e12),
}
TPU_V3_CORE_PEAK = DEVICE_SPECS['TPU v3'].peak_bf16


def device_spec(device_kind: str) -> DeviceSpec | None:
  """The table entry whose key occurs in `device_kind` (None: unknown, e.g. CPU)."""
  for key, spec in DEVICE_SPECS.items():
    if key in device_kind:
      return spec
  return None


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


def compiled_flops_per_device(compiled) -> float | None:
  """FLOPs XLA's cost analysis reports for one device's partition of `compiled`.

  XLA counts a while loop's body once, whatever its trip count: callers add the missing
  iterations (see train_step_flops).
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def train_step_flops(step_flops_per_device: float, num_devices: int, accum_steps: int,
                     micro_batch_flops: float | None) -> float:
  """Global FLOPs of one update: the compiled step on every device, plus the
  (accum_steps - 1) micro-batch forward+backward passes XLA's loop accounting leaves out.
  """
  total = step_flops_per_device * num_devices
  if accum_steps > 1 and micro_batch_flops:
    total += (accum_steps - 1) * micro_batch_flops
  return total


def lowered_flops(lowered) -> float | None:
  """Global (unpartitioned) FLOPs of a lowered, not compiled, computation."""
  try:
    flops = (lowered.cost_analysis() or {}).get('flops')
  except Exception:  # pylint: disable=broad-except
    return None
  return float(flops) if flops else None


@dataclasses.dataclass
class CostTotals:
  """Accumulators saved in every checkpoint, so totals survive restarts."""
  train_seconds: float = 0.0  # wall time of training segments (no compile / eval).
  steps: int = 0  # optimiser updates timed.
  flops: float = 0.0  # executed FLOPs (global).
  peak_flop_seconds: float = 0.0  # sum of peak FLOP/s x seconds (MFU denominator).
  core_seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # per kind.
  device_seconds: dict[str, float] = dataclasses.field(default_factory=dict)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, data: dict) -> 'CostTotals':
    return cls(**data)


def device_kinds(devices) -> dict[str, tuple[int, float]]:
  """device_kind -> (number of devices, cores per device) over `devices`."""
  kinds: dict[str, tuple[int, float]] = {}
  for d in devices:
    count, _ = kinds.get(d.device_kind, (0, 0.0))
    kinds[d.device_kind] = (count + 1, cores_per_device(d))
  return kinds


def add_segment(totals: CostTotals, *, seconds: float, steps: int, flops_per_step: float,
                kinds: dict[str, tuple[int, float]], peak_total: float | None) -> CostTotals:
  """Adds one timed training segment (`steps` updates in `seconds` of wall time)."""
  core_seconds, device_seconds = dict(totals.core_seconds), dict(totals.device_seconds)
  for kind, (count, cores) in kinds.items():
    core_seconds[kind] = core_seconds.get(kind, 0.0) + count * cores * seconds
    device_seconds[kind] = device_seconds.get(kind, 0.0) + count * seconds
  return CostTotals(
      train_seconds=totals.train_seconds + seconds, steps=totals.steps + steps,
      flops=totals.flops + steps * flops_per_step,
      peak_flop_seconds=totals.peak_flop_seconds + (peak_total or 0.0) * seconds,
      core_seconds=core_seconds, device_seconds=device_seconds)


def summarize(totals: CostTotals) -> dict[str, float | None]:
  """The numbers a run reports (see the formulas at the top of this section)."""
  core_seconds = sum(totals.core_seconds.values())
  achieved = totals.flops / totals.train_seconds if totals.train_seconds else None
  mfu = (totals.flops / totals.peak_flop_seconds) if totals.peak_flop_seconds else None
  summary = {
      'train_seconds': totals.train_seconds,
      'steps_timed': totals.steps,
      'core_hours': core_seconds / 3600.0,
      'core_days': core_seconds / SECONDS_PER_DAY,
      'total_flops': totals.flops,
      'achieved_flops_per_second': achieved,
      'mfu': mfu,
      'tpu_v3_core_days_equivalent': (
          totals.flops / (TPU_V3_CORE_PEAK * mfu) / SECONDS_PER_DAY if mfu else None),
  }
  for kind, seconds in sorted(totals.core_seconds.items()):
    summary[f'core_days/{kind}'] = seconds / SECONDS_PER_DAY
  return summary
