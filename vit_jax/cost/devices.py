"""Device facts: peak FLOP/s, memory and core count of one JAX device, per device kind.

The one table the cost accounting (MFU, core-days), the planner (memory headroom, step
time) and the OOM preflight read. Figures are per *JAX device*: on TPU v2 and v3 a JAX
device is one TensorCore (half a chip); on v4 and v5p it is a megacore chip holding two
TensorCores, which the ViT paper's "TPUv3-core-days" convention counts as two cores;
v5e and v6e chips have one TensorCore; a GPU is one device and counts as one core.

Sources (vendor pages; TPU figures are per chip there, halved here for v2/v3):
  [v2]   cloud.google.com/tpu/docs/v2: 45 TFLOPS bf16 and 16 GiB HBM per chip, 2 cores.
  [v3]   cloud.google.com/tpu/docs/v3: 123 TFLOPS bf16 and 32 GiB HBM per chip, 2 cores.
  [v4]   cloud.google.com/tpu/docs/v4: 275 TFLOPS bf16 and 32 GiB HBM per chip.
  [v5e]  cloud.google.com/tpu/docs/v5e: 197 TFLOPS bf16 and 16 GB HBM2 per chip.
  [v5p]  cloud.google.com/tpu/docs/v5p: 459 TFLOPS bf16 and 95 GB HBM2e per chip.
  [v6e]  cloud.google.com/tpu/docs/v6e: 918 TFLOPS bf16 and 32 GB HBM per chip.
  [A100] NVIDIA A100 datasheet: 312 TFLOPS bf16 and 156 TFLOPS TF32 dense; 40 or 80 GB.
  [H100] NVIDIA H100 datasheet: SXM 1,979 / PCIe 1,513 TFLOPS bf16 *with sparsity*
         (989.4 / 756 dense), TF32 989 / 756 with sparsity (494.7 / 378 dense); 80 GB.
  [H200] NVIDIA H200 datasheet: the H100 SXM's tensor cores (1,979 bf16 with sparsity),
         141 GB HBM3e.
A float32 matmul at JAX's default precision runs one bf16 pass on TPU and TF32 on NVIDIA
tensor cores, hence `peak_fp32`. CPUs have no vendor row: the run measures the host
(peaks.measure_cpu_peak_flops) and its memory is the host's RAM.
"""
from __future__ import annotations

import dataclasses
import os

GIB = 2**30
GB = 10**9
# JAX preallocates this fraction of a GPU's memory for XLA by default
# (XLA_PYTHON_CLIENT_MEM_FRACTION; jax.readthedocs.io "GPU memory allocation").
GPU_XLA_MEMORY_FRACTION = 0.75


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
  """One JAX device of a kind."""
  name: str  # what reports print: 'TPU v3', 'H100 SXM'.
  match: tuple[str, ...]  # all of these occur in jax.Device.device_kind (any case).
  cores: int  # cores the ViT paper would count for this device (module docstring).
  peak_bf16: float  # FLOP/s, dense, bfloat16 inputs.
  peak_fp32: float  # FLOP/s of a float32 matmul at JAX's default precision.
  memory_bytes: int  # HBM of this one device (vendor units: GiB or GB as published).
  source: str  # the citation key of the module docstring.


# Most specific first: 'A100 80GB' before 'A100', 'H100 PCIe' before 'H100'.
DEVICES: tuple[DeviceSpec, ...] = (
    DeviceSpec('TPU v2', ('TPU v2',), 1, 22.5e12, 22.5e12, 8 * GIB, '[v2]'),
    DeviceSpec('TPU v3', ('TPU v3',), 1, 61.5e12, 61.5e12, 16 * GIB, '[v3]'),
    DeviceSpec('TPU v4', ('TPU v4',), 2, 275e12, 275e12, 32 * GIB, '[v4]'),
    DeviceSpec('TPU v5e', ('TPU v5 lite',), 1, 197e12, 197e12, 16 * GB, '[v5e]'),
    DeviceSpec('TPU v5e', ('TPU v5e',), 1, 197e12, 197e12, 16 * GB, '[v5e]'),
    DeviceSpec('TPU v5p', ('TPU v5p',), 2, 459e12, 459e12, 95 * GB, '[v5p]'),
    DeviceSpec('TPU v5p', ('TPU v5',), 2, 459e12, 459e12, 95 * GB, '[v5p]'),  # 'TPU v5'
    DeviceSpec('TPU v6e', ('TPU v6 lite',), 1, 918e12, 918e12, 32 * GB, '[v6e]'),
    DeviceSpec('TPU v6e', ('TPU v6e',), 1, 918e12, 918e12, 32 * GB, '[v6e]'),
    DeviceSpec('A100 80GB', ('A100', '80GB'), 1, 312e12, 156e12, 80 * GB, '[A100]'),
    DeviceSpec('A100 40GB', ('A100',), 1, 312e12, 156e12, 40 * GB, '[A100]'),
    DeviceSpec('H100 PCIe', ('H100', 'PCIe'), 1, 756e12, 378e12, 80 * GB, '[H100]'),
    DeviceSpec('H100 SXM', ('H100',), 1, 989.4e12, 494.7e12, 80 * GB, '[H100]'),
    DeviceSpec('H200', ('H200',), 1, 989.4e12, 494.7e12, 141 * GB, '[H200]'),
)
TPU_V3_CORE_PEAK = DEVICES[1].peak_bf16  # the ViT paper's unit: one TPUv3 core, bf16.


def device_spec(device_kind: str) -> DeviceSpec | None:
  """The first row whose `match` strings all occur in `device_kind` (None: e.g. CPU)."""
  kind = device_kind.lower()
  for spec in DEVICES:
    if all(part.lower() in kind for part in spec.match):
      return spec
  return None


def spec_named(name: str) -> DeviceSpec:
  """The row printed as `name` ('TPU v4', 'H100 PCIe')."""
  for spec in DEVICES:
    if spec.name == name:
      return spec
  raise KeyError(f'no device named {name!r}; known: {sorted({s.name for s in DEVICES})}')


def host_memory_bytes() -> int:
  """Physical RAM of this host: the memory of a CPU run's devices together."""
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')


def usable_memory_bytes(device) -> int | None:
  """What XLA may allocate on `device`: its allocator's limit when the runtime reports
  one (GPU: 75% of the memory by default, XLA_PYTHON_CLIENT_MEM_FRACTION; TPU: HBM less
  the runtime's reserve), else the table's memory; None for CPU devices."""
  if device.platform == 'cpu':
    return None
  try:
    stats = device.memory_stats() or {}
  except Exception:  # pylint: disable=broad-except  (backends without the call)
    stats = {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  spec = device_spec(device.device_kind)
  return spec.memory_bytes if spec else None
