"""The JSON line of one measured configuration, and the machine fields shared by a run."""
from __future__ import annotations

import datetime
import os
import statistics
import subprocess
from typing import TYPE_CHECKING

import jax

from vit_jax.cost import peaks
from vit_jax.models import attention_chunks
from vit_jax.platform import host_malloc
from vit_jax.speed import options

if TYPE_CHECKING:
  from vit_jax import benchmark

try:
  import resource  # POSIX only: peak RSS.
except ImportError:  # Windows.
  resource = None


def xla_memory(compiled) -> dict[str, int]:
  """XLA's buffer sizes of the compiled step per device, bytes ({} if unavailable)."""
  try:
    stats = compiled.memory_analysis()
  except Exception:  # pylint: disable=broad-except  # some backends lack it.
    return {}
  fields = {'argument': 'argument_size_in_bytes', 'output': 'output_size_in_bytes',
            'alias': 'alias_size_in_bytes', 'temp': 'temp_size_in_bytes',
            'generated_code': 'generated_code_size_in_bytes'}
  return {k: int(getattr(stats, v)) for k, v in fields.items() if hasattr(stats, v)}


def peak_memory() -> tuple[int | None, str]:
  """Peak bytes in use and what they measure: device stats, else process peak RSS."""
  device = jax.devices()[0]
  if device.platform != 'cpu':
    stats = device.memory_stats() or {}
    if 'peak_bytes_in_use' in stats:
      return int(stats['peak_bytes_in_use']), f'{device.platform} memory_stats peak, device 0'
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024, 'process peak RSS (VmHWM)'
  except OSError:
    pass
  if resource is None:
    return None, 'unavailable'
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, 'process peak RSS'


def git_commit() -> str | None:
  """Short commit of the checkout, '+dirty' when the code (vit_jax/, configs/,
  tracked or not) differs from it."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # vit_jax/

  def git(*args):
    return subprocess.run(['git', *args], capture_output=True, text=True, timeout=10,
                          cwd=package).stdout.strip()
  try:
    commit = git('rev-parse', '--short', 'HEAD')
    dirty = git('status', '--porcelain', '--', '../vit_jax', '../configs')
  except (OSError, subprocess.SubprocessError):
    return None
  return (commit + ('+dirty' if dirty else '')) or None


def peak_flops(opts: options.Options,
               cpu_peaks: dict[str, float]) -> tuple[float | None, str]:
  """Peak FLOP/s of the whole mesh for this configuration's matmul dtype."""
  devices = jax.devices()
  bf16 = peaks.uses_bf16_matmuls(opts.dtype)
  cpu_peak = cpu_peaks.get('bf16_matmul' if bf16 else 'float32')
  total = peaks.peak_flops_total(devices, opts.dtype, cpu_peak)
  if devices[0].platform == 'cpu':
    what = 'bf16 x bf16 -> f32' if bf16 else 'float32'
    return total, f'measured {what} 1024^2 matmul, best over the rounds'
  return total, f'cost/devices.py {devices[0].device_kind} {"bf16" if bf16 else "fp32"}'


def record(p: benchmark.Prepared, seconds: list[float], cpu_peaks: dict[str, float],
           context: dict) -> dict:
  """The JSON line of one configuration (rates from the median step time)."""
  opts, median = p.opts, statistics.median(seconds)
  kinds = peaks.device_kinds(jax.devices())
  cores = sum(count * c for count, c in kinds.values())
  images_per_second = opts.batch / median
  achieved = p.flops_per_step / median if p.flops_per_step else None
  peak, peak_source = peak_flops(opts, cpu_peaks)
  mesh_devices = p.setup.mesh.size
  line = {
      'model': opts.model, 'res': opts.res, 'batch': opts.batch, 'dtype': opts.dtype,
      'mode': opts.mode, 'optimizer': opts.optimizer, 'remat': opts.remat,
      'overrides': dict(opts.overrides), 'xla_options': dict(opts.xla_options),
      'mesh_devices': mesh_devices,
      'step_compiler_options': p.compiler_options,
      'attention_chunks': attention_chunks.resolve(  # per device, as the model traced it.
          getattr(p.setup.model, 'attention_chunks', 1), opts.batch // mesh_devices),
      'steps': len(seconds), 'warmup_calls': p.warmup_calls,
      'compile_seconds': p.compile_seconds,
      'ms_per_step': 1e3 * median, 'ms_per_step_min': 1e3 * min(seconds),
      'ms_per_step_max': 1e3 * max(seconds),
      'images_per_second': images_per_second,
      'images_per_second_per_core': images_per_second / cores,
      'flops_per_step': p.flops_per_step,
      # With remat the count includes the recomputed forward (hardware, not model, FLOPs).
      'flops_source': p.flops_source + (' (incl. remat recomputation)'
                                        if opts.remat != options.REMAT_OFF else ''),
      'achieved_flops_per_second': achieved,
      'peak_flops_per_second': peak, 'peak_source': peak_source,
      'mfu': achieved / peak if achieved and peak else None,
      'xla_memory_bytes': p.xla_memory,
      'step_seconds': seconds,  # per round, in round order (paired comparisons).
      'minor_page_faults_per_step': (statistics.median(p.page_faults)
                                     if p.page_faults else None),
  }
  for dtype, value in cpu_peaks.items():
    name = 'bf16' if peaks.uses_bf16_matmuls(dtype) else dtype
    line[f'cpu_matmul_peak_{name}'] = value
    line[f'mfu_vs_{name}_peak'] = achieved / value if achieved else None
  return dict(line, **context)


def run_context(devices_line: dict, load_start: tuple, configurations: int) -> dict:
  """Machine, software and load fields shared by the lines of one run."""
  memory, memory_source = peak_memory()
  if configurations > 1:
    memory_source += f', {configurations} configurations resident together'
  return dict(devices_line, peak_memory_bytes=memory, peak_memory_source=memory_source,
              load_average_start=load_start[0], load_average_end=os.getloadavg()[0],
              jax=jax.__version__, commit=git_commit(),
              host_malloc=host_malloc.describe(),
              date=datetime.datetime.now(datetime.timezone.utc).isoformat(
                  timespec='seconds'))


def devices_fields() -> dict:
  devices = jax.devices()
  kinds = peaks.device_kinds(devices)
  return {'backend': devices[0].platform, 'device_kind': devices[0].device_kind,
          'devices': len(devices),
          'cores': sum(count * c for count, c in kinds.values())}
