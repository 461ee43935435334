"""Topology names ('v3-256', 'v5e-64', '8xH100', 'cpu') -> devices, hosts, device facts.

TPU slice names count what Google's docs count: TensorCores for v2, v3, v4 and v5p
(v4-128 is 64 chips), chips for v5e and v6e (v5e-64 is 64 chips; 'v5litepod-64' is the
same slice). JAX devices: one per TensorCore on v2 / v3 (two per chip), one per chip
on v4 / v5p (megacore: two cores each) and on v5e / v6e. Hosts: v2 / v3 / v4 / v5p
hosts hold 4 chips; v5e / v6e slices of up to 8 chips are one host, larger ones 4 chips
per host (cloud.google.com/tpu/docs/<version>, "Configurations"). GPUs: 8 per host, the
HGX / a2 / a3 8-GPU machines. 'cpu' is this host (one device), '<N>xcpu' this host
with N devices (as --cpu_devices=N).
"""
from __future__ import annotations

import dataclasses
import re

from vit_jax.cost import devices as device_facts
from vit_jax.cost import peaks


@dataclasses.dataclass(frozen=True)
class TpuFamily:
  device: str  # devices.DEVICES name.
  counts: str  # what the slice suffix counts: 'cores' or 'chips'.
  devices_per_chip: int
  sizes: tuple[int, ...]  # accepted suffixes (v4 / v5p: the powers of two only; their
  #                        other 3-D shapes, e.g. v4-1536, are not modelled).


_POW2 = tuple(2**k for k in range(3, 14))
TPU_FAMILIES = {
    'v2': TpuFamily('TPU v2', 'cores', 2, (8, 32, 128, 256, 512)),
    'v3': TpuFamily('TPU v3', 'cores', 2, (8, 32, 64, 128, 256, 512, 1024, 2048)),
    'v4': TpuFamily('TPU v4', 'cores', 1, tuple(s for s in _POW2 if s <= 8192)),
    'v5p': TpuFamily('TPU v5p', 'cores', 1, tuple(s for s in _POW2 if s <= 16384)),
    'v5e': TpuFamily('TPU v5e', 'chips', 1, (1, 4, 8, 16, 32, 64, 128, 256)),
    'v6e': TpuFamily('TPU v6e', 'chips', 1, (1, 4, 8, 16, 32, 64, 128, 256)),
}
_TPU_ALIASES = {'v5litepod': 'v5e'}
GPUS = {'H100': 'H100 SXM', 'H100-SXM': 'H100 SXM', 'H100-PCIe': 'H100 PCIe',
        'H200': 'H200', 'A100-40GB': 'A100 40GB', 'A100-80GB': 'A100 80GB'}
GPUS_PER_HOST = 8
CHIPS_PER_TPU_HOST = 4


@dataclasses.dataclass(frozen=True)
class Topology:
  """The machines a run is planned for."""
  name: str  # as given.
  platform: str  # 'tpu', 'gpu' or 'cpu'.
  device_name: str  # 'TPU v3', 'H100 SXM', 'CPU'.
  devices: int  # JAX devices (the mesh size).
  hosts: int  # processes of the run, one per host.
  cores_per_device: float  # the ViT paper's count (cost/devices.py docstring).
  memory_per_device: int  # bytes.
  peak_bf16: float | None  # FLOP/s per device; None for CPU: measured by peak().
  peak_fp32: float | None
  memory_source: str

  @property
  def usable_memory(self) -> int:
    """Bytes XLA may use per device: GPUs give XLA 75% by default (cost/devices.py)."""
    if self.platform == 'gpu':
      return int(self.memory_per_device * device_facts.GPU_XLA_MEMORY_FRACTION)
    return self.memory_per_device

  @property
  def devices_per_host(self) -> int:
    return self.devices // self.hosts

  def peak(self, bf16: bool) -> float:
    """FLOP/s of one device for bf16 (or float32) matmuls. CPU: this host's best
    1024^3 matmul over its devices (~0.2 s; after the planner set the device count)."""
    if self.platform == 'cpu':
      return peaks.measure_cpu_peak_flops('bfloat16' if bf16 else 'float32') / self.devices
    return self.peak_bf16 if bf16 else self.peak_fp32


def known() -> str:
  """The accepted names, for error messages and --help."""
  tpus = '; '.join(f'{v}-{{{",".join(map(str, f.sizes))}}} ({f.counts})'
                   for v, f in TPU_FAMILIES.items())
  return (f'{tpus}; v5litepod-<chips> = v5e-<chips>; <N>x{{{",".join(GPUS)}}} with N <= '
          f'{GPUS_PER_HOST} or a multiple of {GPUS_PER_HOST}; cpu; <N>xcpu')


def parse(name: str) -> Topology:
  """The Topology of `name`; ValueError naming the accepted forms otherwise."""
  text = name.strip()
  tpu = re.fullmatch(r'(v\d+[a-z]*|v5litepod)-(\d+)', text, flags=re.IGNORECASE)
  if tpu:
    return _tpu(name, _TPU_ALIASES.get(tpu.group(1).lower(), tpu.group(1).lower()),
                int(tpu.group(2)))
  counted = re.fullmatch(r'(?:(\d+)x)?([A-Za-z0-9-]+)', text)
  if counted and counted.group(2).lower() == 'cpu':
    return _cpu(name, int(counted.group(1) or 1))
  gpu = next((g for g in GPUS if counted and g.lower() == counted.group(2).lower()), None)
  if counted and counted.group(1) and gpu:
    return _gpu(name, GPUS[gpu], int(counted.group(1)))
  hint = ' (A100: say A100-40GB or A100-80GB)' if 'a100' in text.lower() else ''
  raise ValueError(f'--topology={name!r} is not a topology this planner knows{hint}; '
                   f'known: {known()}')


def _tpu(name: str, version: str, size: int) -> Topology:
  family = TPU_FAMILIES.get(version)
  if family is None or size not in family.sizes:
    sizes = family.sizes if family else ()
    raise ValueError(
        f'--topology={name!r}: ' + (f'{version} slices are {version}-<n> with n in '
                                    f'{list(sizes)} ({family.counts})' if family else
                                    f'no TPU {version}') + f'; known: {known()}')
  spec = device_facts.spec_named(family.device)
  chips = size // 2 if family.counts == 'cores' else size
  chips = max(chips, 1)
  single_host = family.counts == 'chips' and chips <= 8
  hosts = 1 if single_host else max(1, chips // CHIPS_PER_TPU_HOST)
  return Topology(name=name, platform='tpu', device_name=spec.name,
                  devices=chips * family.devices_per_chip, hosts=hosts,
                  cores_per_device=float(spec.cores), memory_per_device=spec.memory_bytes,
                  peak_bf16=spec.peak_bf16, peak_fp32=spec.peak_fp32,
                  memory_source=f'{spec.source} HBM per device')


def _gpu(name: str, device: str, count: int) -> Topology:
  if count < 1 or (count > GPUS_PER_HOST and count % GPUS_PER_HOST):
    good = max(GPUS_PER_HOST, round(count / GPUS_PER_HOST) * GPUS_PER_HOST)
    raise ValueError(f'--topology={name!r}: {count} GPUs do not fill hosts of '
                     f'{GPUS_PER_HOST}; use 1-{GPUS_PER_HOST} or a multiple, e.g. '
                     f'{good}x{name.split("x", 1)[1]}')
  spec = device_facts.spec_named(device)
  return Topology(name=name, platform='gpu', device_name=spec.name, devices=count,
                  hosts=max(1, count // GPUS_PER_HOST), cores_per_device=1.0,
                  memory_per_device=spec.memory_bytes, peak_bf16=spec.peak_bf16,
                  peak_fp32=spec.peak_fp32, memory_source=f'{spec.source} memory')


def _cpu(name: str, count: int) -> Topology:
  """This host: RAM and cores shared by `count` devices (peaks: Topology.peak)."""
  if count < 1:
    raise ValueError(f'--topology={name!r}: give at least 1 CPU device')
  return Topology(name=name, platform='cpu', device_name='CPU', devices=count, hosts=1,
                  cores_per_device=peaks.host_cpu_cores() / count,
                  memory_per_device=device_facts.host_memory_bytes() // count,
                  peak_bf16=None, peak_fp32=None,
                  memory_source='this host\'s RAM / devices')


def name_of(devices) -> str | None:
  """The topology name of a run's devices ('v4-128' for 64 TPU v4 chips), for the
  planner command a stopped run prints; None for kinds this module does not know."""
  count, kind = len(devices), devices[0].device_kind
  if devices[0].platform == 'cpu':
    return f'{count}xcpu'
  spec = device_facts.device_spec(kind)
  if spec is None:
    return None
  for version, family in TPU_FAMILIES.items():
    if family.device == spec.name:
      chips = count // family.devices_per_chip
      return f'{version}-{chips * 2 if family.counts == "cores" else chips}'
  gpu = next((key for key, name in GPUS.items() if name == spec.name), None)
  return f'{count}x{gpu}' if gpu else None
