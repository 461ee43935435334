"""Speed of the real training (or evaluation) step: images/s, FLOPs, MFU, memory.

  python -m vit_jax.benchmark --model ViT-B/16 --res 224 --batch 8 \\
      [--dtype float32|bfloat16|bf16_matmul] [--mode train|infer] [--steps 10] \\
      [--warmup 2] [--json out.json] [--sweep res=224,384,448] \\
      [--override attention_impl=xla] [--remat dots_saveable] [--optimizer adam] \\
      [--xla_option xla_cpu_experimental_ynn_fusion_type=] \\
      [--cpu_devices 2 --sweep devices=1,2] [--cpu_malloc]

What is timed is what the training loop runs: configs/common.py's config with the
model, resolution, batch and dtype set from the flags; model, optimiser
(`optim.make_optimizer`: clipping, momentum or Adam, weight decay, schedule), state,
mesh and shardings built by train.py's own functions, and the train step compiled
ahead of time by `train.compile_steps` (state donated). `--mode infer` times the
evaluation step (`steps.jit_eval_step`) instead.

Method. Each `--sweep key=v1,v2` value is one configuration (several --sweep flags
combine as a product). Every configuration is created and checked first (a bad value
fails in seconds), then compiled, then called until a call compiles nothing (at least
--warmup calls), then timed in interleaved rounds: one step of each configuration per
round, so drift in machine speed hits all of them alike. Reported: median / min / max
seconds per step over --steps rounds. On CPU each round also times one 1024^2 float32
and one bf16 (float32-accumulating) matmul; the best of them is the peak that MFU is
measured against (`cost.measure_cpu_peak_flops`). On accelerators the peak is the
vendor figure in `cost.DEVICE_SPECS`.

`--cpu_devices N` makes the CPU backend N devices (vit_jax/cpu_devices.py) and
`devices` (a flag or sweep key) is the size of each configuration's mesh, the first
`devices` devices (default: all), so one process compares a one-device step with a
data-parallel one. Rates per core always count the host's cores once. `--cpu_malloc`
restarts the command with vit_jax/host_malloc.py's glibc settings (JSON `host_malloc`).

Output: one JSON line per configuration on stdout, also appended to --json.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import datetime
import functools
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import types
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from configs import common
from vit_jax import cost
from vit_jax import cpu_devices
from vit_jax import host_malloc
from vit_jax import optim
from vit_jax import sharding
from vit_jax import steps
from vit_jax import train
from vit_jax.models import attention_chunks
from vit_jax.models import registry
from vit_jax.models import remat as remat_lib

try:
  import resource  # POSIX only: page faults per step, peak RSS.
except ImportError:  # Windows.
  resource = None

MODES = ('train', 'infer')
REMAT_OFF = 'off'
# Sweep keys that are benchmark options; any other key is a model override field,
# except `xla.<option>`, an XLA compiler option of the step's compilation.
OPTION_KEYS = ('model', 'res', 'batch', 'dtype', 'mode', 'optimizer', 'remat', 'devices')
INT_KEYS = ('res', 'batch', 'devices')
COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'
XLA_DEFAULT = 'default'  # `--sweep xla.<option>=default,...`: the option left unset.
MAX_EXTRA_WARMUP = 10  # calls after --warmup that may still compile before we give up.


@dataclasses.dataclass(frozen=True)
class Options:
  """One configuration to measure."""
  model: str = 'ViT-B/16'
  res: int = 224
  batch: int = 8
  dtype: str = 'float32'  # a train.COMPUTE_DTYPES value.
  mode: str = 'train'
  optimizer: str = 'sgd'  # an optim.OPTIMIZERS value.
  remat: str = REMAT_OFF  # 'off' or a models/remat.py policy name.
  overrides: tuple[tuple[str, Any], ...] = ()  # model fields, e.g. (('fused_qkv', False),)
  xla_options: tuple[tuple[str, str], ...] = ()  # compiler options of this compile.
  num_classes: int = 1000
  devices: int | None = None  # mesh size: the first `devices` devices; None = all.


def check_options(opts: Options) -> None:
  """Raises ValueError naming the bad value and the fix; nothing compiled yet."""
  if opts.model not in registry.names():
    raise ValueError(f'--model {opts.model!r} is not registered; use one of '
                     f'{", ".join(registry.names())}')
  if opts.mode not in MODES:
    raise ValueError(f'--mode {opts.mode!r}; use one of {MODES}')
  if opts.dtype not in train.COMPUTE_DTYPES:
    raise ValueError(f'--dtype {opts.dtype!r}; use one of {train.COMPUTE_DTYPES}')
  if opts.optimizer not in optim.OPTIMIZERS:
    raise ValueError(f'--optimizer {opts.optimizer!r}; use one of {optim.OPTIMIZERS}')
  if opts.remat != REMAT_OFF and opts.remat not in remat_lib.POLICIES:
    raise ValueError(f'--remat {opts.remat!r}; use {REMAT_OFF!r} or one of '
                     f'{sorted(remat_lib.POLICIES)}')
  sizes = [('res', opts.res), ('batch', opts.batch)]
  if opts.devices is not None:
    sizes.append(('devices', opts.devices))
  for name, value in sizes:
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'--{name} {value!r} must be a positive int, e.g. --{name} 8')
  clash = {'remat', 'remat_policy', 'dtype', 'matmul_dtype', 'image_size'} & {
      k for k, _ in opts.overrides}
  if clash:
    raise ValueError(f'override(s) {sorted(clash)}: set remat with --remat, the '
                     'dtype with --dtype and the image size with --res')


def make_config(opts: Options) -> ml_collections.ConfigDict:
  """configs/common.py with this configuration's model, batch, dtype and optimiser."""
  config = common.get_config()
  config.model = opts.model
  config.image_size = opts.res
  config.batch_size = config.eval_batch_size = opts.batch
  config.dtype = opts.dtype
  config.optimizer = opts.optimizer
  overrides = dict(opts.overrides)
  if opts.remat != REMAT_OFF:
    overrides.update(remat=True, remat_policy=opts.remat)
  config.model_overrides = ml_collections.ConfigDict(overrides)
  return config


@dataclasses.dataclass
class Prepared:
  """A compiled step with its inputs, ready to be called again and again."""
  opts: Options
  run: Any  # train.Run
  call: Callable[[], Any]  # one step; returns what to block on.
  compile_seconds: float
  flops_per_step: float | None
  flops_source: str
  xla_memory: dict[str, int]
  compiled: Any = None  # the jax.stages.Compiled step (HLO, cost and memory analyses).
  compiler_options: dict = dataclasses.field(default_factory=dict)  # what it was compiled with.
  warmup_calls: int = 0
  page_faults: list[int] = dataclasses.field(default_factory=list)  # per timed call.


def build_run(opts: Options) -> train.Run:
  """Config, mesh, model and optimiser as train.train_and_evaluate builds them."""
  config = make_config(opts)
  train.check_config(config)
  mesh = sharding.make_mesh(mesh_devices(opts))
  sharding.check_batch_sizes(config.batch_size, config.eval_batch_size, 1, mesh)
  model = train.create_model(config, opts.num_classes, mesh)  # checks overrides, sizes.
  info = types.SimpleNamespace(num_classes=opts.num_classes)
  return train.Run(config=config, workdir='', mesh=mesh, model=model,
                   tx=optim.make_optimizer(config), info=info)


def mesh_devices(opts: Options) -> list[jax.Device] | None:
  """The first `opts.devices` devices (None: all, make_mesh's topology order)."""
  if opts.devices is None:
    return None
  if opts.devices > jax.device_count():
    raise ValueError(f'devices={opts.devices} but this process has '
                     f'{jax.device_count()}; on CPU add --cpu_devices {opts.devices}')
  return jax.devices()[:opts.devices]


def _random_batch(run: train.Run, with_mask: bool) -> dict[str, jax.Array]:
  """Normal images and one-hot labels (timing does not depend on their values)."""
  rng = np.random.default_rng(0)
  h, w = train.image_size(run.config)
  b = run.config.batch_size
  batch = {'image': rng.normal(size=(b, h, w, 3)).astype(np.float32),
           'label': np.eye(run.info.num_classes, dtype=np.float32)[
               rng.integers(0, run.info.num_classes, b)]}
  if with_mask:
    batch['mask'] = np.ones((b,), np.float32)
  return jax.device_put(batch, sharding.batch_sharding(run.mesh))


def prepare(opts: Options, run: train.Run | None = None) -> Prepared:
  """Initialises the state and compiles the step of one configuration."""
  run = run or build_run(opts)
  rng = jax.random.PRNGKey(run.config.seed)
  run.state_sharding = sharding.state_shardings(
      train.abstract_state(run, rng), run.mesh, fsdp=run.config.fsdp)
  state = train.initialize(run, rng)
  options = dict(opts.xla_options) or None
  if opts.mode == 'train':
    train.compile_steps(run, state, compiler_options=options)
    compiled, flops, source = run.train_step, run.flops_per_step, run.flops_source
    holder = {'state': state}
    batch = _random_batch(run, with_mask=False)

    def call():
      holder['state'], metrics = compiled(holder['state'], batch)  # state donated.
      return holder['state'], metrics
    seconds, options = run.compile_seconds, run.compiler_options
  else:  # the loop jits its eval step without options; only --xla_option ones here.
    batch = _random_batch(run, with_mask=True)
    params = state.params
    start = time.perf_counter()
    compiled = run_eval_compile(run, params, batch, options)
    seconds = time.perf_counter() - start
    per_device = cost.compiled_flops_per_device(compiled)
    flops = per_device * run.mesh.size if per_device else None
    source = 'XLA cost analysis of the compiled step' if flops else 'unavailable'

    def call():
      return compiled(params, batch)
  return Prepared(opts, run, call, seconds, flops, source, xla_memory(compiled),
                  compiled, dict(options or {}))


def run_eval_compile(run: train.Run, params, batch, compiler_options):
  """The evaluation step of the training loop, compiled ahead of time."""
  jitted = steps.jit_eval_step(
      model=run.model, config=run.config, params_sharding=run.state_sharding.params,
      batch_sharding=sharding.batch_sharding(run.mesh),
      replicated=sharding.replicated(run.mesh))
  compiled = jitted.lower(params, batch).compile(compiler_options)
  train.check_cpu_bf16_dots(compiled, run.config, run.mesh)
  return compiled


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


# ----------------------------------------------------------------------------------------
# Warm-up and interleaved timing.
# ----------------------------------------------------------------------------------------
class CompileCounter:
  """Counts XLA backend compilations (jax.monitoring events) while active."""

  def __init__(self):
    self.count = 0

  def _listener(self, event: str, duration: float, **kwargs) -> None:
    del duration, kwargs
    if event == COMPILE_EVENT:
      self.count += 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listener)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listener)


def warm_up(prepared: Prepared, min_calls: int) -> int:
  """Calls the step until a call compiles nothing (at least `min_calls` calls)."""
  for calls in range(1, min_calls + MAX_EXTRA_WARMUP + 1):
    with CompileCounter() as counter:
      jax.block_until_ready(prepared.call())
    if calls >= min_calls and counter.count == 0:
      prepared.warmup_calls = calls
      return calls
  raise RuntimeError(
      f'{describe(prepared.opts)} still compiled on warm-up call {calls}; the step is '
      'not stable (run with JAX_LOG_COMPILES=1 to see what recompiles)')


def time_call(prepared: Prepared) -> float:
  """Seconds of one step; also notes the process's minor page faults during it
  (vit_jax/host_malloc.py: XLA:CPU's temp buffer faulted in afresh every step)."""
  before = _minor_page_faults()
  start = time.perf_counter()
  jax.block_until_ready(prepared.call())
  seconds = time.perf_counter() - start
  if resource is not None:  # Windows: time only.
    prepared.page_faults.append(_minor_page_faults() - before)
  return seconds


def _minor_page_faults() -> int:
  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def interleaved_times(timers: list[Callable[[], float]], rounds: int,
                      on_cpu: bool) -> tuple[list[list[float]], dict[str, float]]:
  """Per timer (one step -> seconds), `rounds` times, one of each per round; plus the
  best CPU matmul peaks seen over the rounds (FLOP/s; empty off CPU)."""
  times = [[] for _ in timers]
  peaks: dict[str, float] = {}
  for _ in range(rounds):
    for i, timer in enumerate(timers):
      times[i].append(timer())
    if on_cpu:
      for dtype in ('float32', 'bf16_matmul'):
        peak = cost.measure_cpu_peak_flops(dtype, repeats=1)
        peaks[dtype] = max(peaks.get(dtype, 0.0), peak)
  return times, peaks


# ----------------------------------------------------------------------------------------
# Reporting.
# ----------------------------------------------------------------------------------------
def describe(opts: Options) -> str:
  extra = ''.join(f' {k}={v}' for k, v in opts.overrides + opts.xla_options)
  mesh = f' on {opts.devices} device(s)' if opts.devices else ''
  return (f'{opts.model} {opts.res}px batch {opts.batch} {opts.dtype} {opts.mode} '
          f'remat={opts.remat}{extra}{mesh}')


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
  def git(*args):
    return subprocess.run(['git', *args], capture_output=True, text=True, timeout=10,
                          cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
  try:
    commit = git('rev-parse', '--short', 'HEAD')
    dirty = git('status', '--porcelain', '--', '../vit_jax', '../configs')
  except (OSError, subprocess.SubprocessError):
    return None
  return (commit + ('+dirty' if dirty else '')) or None


def peak_flops(opts: Options, cpu_peaks: dict[str, float]) -> tuple[float | None, str]:
  """Peak FLOP/s of the whole mesh for this configuration's matmul dtype."""
  devices = jax.devices()
  bf16 = cost.uses_bf16_matmuls(opts.dtype)
  cpu_peak = cpu_peaks.get('bf16_matmul' if bf16 else 'float32')
  total = cost.peak_flops_total(devices, opts.dtype, cpu_peak)
  if devices[0].platform == 'cpu':
    what = 'bf16 x bf16 -> f32' if bf16 else 'float32'
    return total, f'measured {what} 1024^2 matmul, best over the rounds'
  return total, f'cost.DEVICE_SPECS {devices[0].device_kind} {"bf16" if bf16 else "fp32"}'


def record(p: Prepared, seconds: list[float], cpu_peaks: dict[str, float],
           context: dict) -> dict:
  """The JSON line of one configuration (rates from the median step time)."""
  opts, median = p.opts, statistics.median(seconds)
  kinds = cost.device_kinds(jax.devices())
  cores = sum(count * c for count, c in kinds.values())
  images_per_second = opts.batch / median
  achieved = p.flops_per_step / median if p.flops_per_step else None
  peak, peak_source = peak_flops(opts, cpu_peaks)
  line = {
      'model': opts.model, 'res': opts.res, 'batch': opts.batch, 'dtype': opts.dtype,
      'mode': opts.mode, 'optimizer': opts.optimizer, 'remat': opts.remat,
      'overrides': dict(opts.overrides), 'xla_options': dict(opts.xla_options),
      'mesh_devices': p.run.mesh.size,
      'step_compiler_options': p.compiler_options,
      'attention_chunks': attention_chunks.resolve(  # per device, as the model traced it.
          getattr(p.run.model, 'attention_chunks', 1), opts.batch // p.run.mesh.size),
      'steps': len(seconds), 'warmup_calls': p.warmup_calls,
      'compile_seconds': p.compile_seconds,
      'ms_per_step': 1e3 * median, 'ms_per_step_min': 1e3 * min(seconds),
      'ms_per_step_max': 1e3 * max(seconds),
      'images_per_second': images_per_second,
      'images_per_second_per_core': images_per_second / cores,
      'flops_per_step': p.flops_per_step,
      # With remat the count includes the recomputed forward (hardware, not model, FLOPs).
      'flops_source': p.flops_source + (' (incl. remat recomputation)'
                                        if opts.remat != REMAT_OFF else ''),
      'achieved_flops_per_second': achieved,
      'peak_flops_per_second': peak, 'peak_source': peak_source,
      'mfu': achieved / peak if achieved and peak else None,
      'xla_memory_bytes': p.xla_memory,
      'step_seconds': seconds,  # per round, in round order (paired comparisons).
      'minor_page_faults_per_step': (statistics.median(p.page_faults)
                                     if p.page_faults else None),
  }
  for dtype, value in cpu_peaks.items():
    name = 'bf16' if cost.uses_bf16_matmuls(dtype) else dtype
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
  kinds = cost.device_kinds(devices)
  return {'backend': devices[0].platform, 'device_kind': devices[0].device_kind,
          'devices': len(devices),
          'cores': sum(count * c for count, c in kinds.values())}


def prepare_all(configurations: list[Options], warmup: int,
                log: Callable[[str], None] = print) -> list[Prepared]:
  """Every configuration checked, then compiled, then warmed up."""
  for opts in configurations:
    check_options(opts)
  runs = [build_run(opts) for opts in configurations]  # bad sizes fail before compiling.
  prepared = []
  for opts, run in zip(configurations, runs):
    log(f'compiling {describe(opts)}')
    prepared.append(prepare(opts, run))
  for p in prepared:
    warm_up(p, warmup)
    log(f'warm after {p.warmup_calls} call(s): {describe(p.opts)}')
  return prepared


def measure(configurations: list[Options], steps: int, warmup: int,
            log: Callable[[str], None] = print) -> list[dict]:
  """The JSON lines of `configurations`, timed interleaved (see the module doc)."""
  load_start = os.getloadavg()
  prepared = prepare_all(configurations, warmup, log)
  on_cpu = jax.devices()[0].platform == 'cpu'
  timers = [functools.partial(time_call, p) for p in prepared]
  times, cpu_peaks = interleaved_times(timers, steps, on_cpu)
  context = run_context(devices_fields(), load_start, len(prepared))
  return [record(p, t, cpu_peaks, context) for p, t in zip(prepared, times)]


# ----------------------------------------------------------------------------------------
# Command line.
# ----------------------------------------------------------------------------------------
def parse_value(raw: str):
  """'true' -> True, '3' -> 3, '0.1' -> 0.1, 'xla' -> 'xla' (model override values)."""
  if raw.lower() in ('true', 'false'):
    return raw.lower() == 'true'
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def xla_option_value(raw: str) -> bool | int | str:
  """XLA's option parser takes bools and ints typed: 'false' -> False, '4' -> 4;
  anything else stays the string XLA parses ('DOT,ELTWISE' is not a tuple)."""
  value = parse_value(raw)
  return value if isinstance(value, int) else raw  # bool is an int.


def split_assignment(item: str, flag: str) -> tuple[str, str]:
  key, sep, value = item.partition('=')
  if not sep or not key:
    raise ValueError(f'{flag} {item!r}: expected name=value, e.g. {flag} '
                     f'{"res=224,384" if flag == "--sweep" else "fused_qkv=false"}')
  return key, value


def with_value(opts: Options, key: str, raw: str) -> Options:
  """`opts` with one option, model override or `xla.<option>` set from a string."""
  if key.startswith('xla.'):
    options = dict(opts.xla_options, **{key[4:]: xla_option_value(raw)})
    if raw == XLA_DEFAULT:
      del options[key[4:]]
    return dataclasses.replace(opts, xla_options=tuple(sorted(options.items())))
  if key in INT_KEYS:
    try:
      return dataclasses.replace(opts, **{key: int(raw)})
    except ValueError:
      raise ValueError(f'{key}={raw!r} is not an int; e.g. {key}=224') from None
  if key in OPTION_KEYS:
    return dataclasses.replace(opts, **{key: raw})
  overrides = dict(opts.overrides, **{key: parse_value(raw)})
  return dataclasses.replace(opts, overrides=tuple(sorted(overrides.items())))


def configurations(base: Options, sweeps: list[str]) -> list[Options]:
  """The product of every --sweep key's values applied to `base`."""
  axes = []
  for item in sweeps:
    key, values = split_assignment(item, '--sweep')
    # '|' separates values that contain commas (XLA list options).
    values = values.split('|' if '|' in values else ',')
    if not all(values) and not key.startswith('xla.'):
      raise ValueError(f'--sweep {item!r} has an empty value; e.g. --sweep res=224,384')
    axes.append([(key, v) for v in values])
  result = []
  for combination in itertools.product(*axes):
    opts = base
    for key, value in combination:
      opts = with_value(opts, key, value)
    result.append(opts)
  return result


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m vit_jax.benchmark',
                              description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ViT-B/16', help='a registered model name')
  p.add_argument('--res', type=int, default=224, help='image side in pixels')
  p.add_argument('--batch', type=int, default=8, help='global batch size')
  p.add_argument('--dtype', default='float32', help=f'one of {train.COMPUTE_DTYPES}')
  p.add_argument('--mode', default='train', help=f'one of {MODES}')
  p.add_argument('--optimizer', default='sgd', help=f'one of {optim.OPTIMIZERS}')
  p.add_argument('--remat', default=REMAT_OFF,
                 help=f'{REMAT_OFF!r} or a policy: {", ".join(remat_lib.POLICIES)}')
  p.add_argument('--attention_impl', default=None, help="model override: 'einsum' | 'xla'")
  p.add_argument('--override', action='append', default=[], metavar='FIELD=VALUE',
                 help='model field override, e.g. fused_qkv=false (repeatable)')
  p.add_argument('--xla_option', action='append', default=[], metavar='NAME=VALUE',
                 help='XLA compiler option of the step compilation (repeatable)')
  p.add_argument('--sweep', action='append', default=[], metavar='KEY=V1,V2',
                 help=f'one configuration per value; keys: {", ".join(OPTION_KEYS)}, '
                      'xla.<option> or a model field; several combine as a product. '
                      "Values: comma-separated, or '|'-separated when they contain "
                      f"commas; for xla.<option>, {XLA_DEFAULT!r} leaves it unset and "
                      "'' is the empty value (e.g. xla.xla_cpu_experimental_ynn_"
                      "fusion_type=default, compares YNNPACK on and off)")
  p.add_argument('--devices', type=int, default=None,
                 help='mesh size: the first N devices (default: all)')
  p.add_argument('--cpu_devices', default=None,
                 help="CPU: expose N devices ('auto' = one per core) before JAX starts")
  p.add_argument('--cpu_malloc', action='store_true',
                 help='restart with the glibc malloc settings of vit_jax/host_malloc.py')
  p.add_argument('--steps', type=int, default=10, help='timed rounds')
  p.add_argument('--warmup', type=int, default=2, help='minimum untimed calls')
  p.add_argument('--json', default=None, help='file to append the JSON lines to')
  return p


def options_from_args(args) -> list[Options]:
  if args.steps < 1 or args.warmup < 1:
    raise ValueError(f'--steps {args.steps} and --warmup {args.warmup} must be >= 1')
  base = Options(model=args.model, res=args.res, batch=args.batch, dtype=args.dtype,
                 mode=args.mode, optimizer=args.optimizer, remat=args.remat,
                 devices=args.devices)
  for item in args.override:
    base = with_value(base, *split_assignment(item, '--override'))
  if args.attention_impl is not None:
    base = with_value(base, 'attention_impl', args.attention_impl)
  for item in args.xla_option:
    key, value = split_assignment(item, '--xla_option')
    base = with_value(base, f'xla.{key}', value)
  result = configurations(base, args.sweep)
  for opts in result:
    check_options(opts)
  return result


def check_cpu_malloc(wanted: bool, in_process: bool) -> None:
  """--cpu_malloc: restarts the command with host_malloc's settings (glibc reads them
  at process start), which a caller that passed argv in-process cannot have."""
  if not wanted or host_malloc.active():
    return
  if in_process:
    raise ValueError('--cpu_malloc needs a process of its own: run python -m '
                     'vit_jax.benchmark --cpu_malloc ..., or start Python with '
                     + ' '.join(f'{k}={v}' for k, v in host_malloc.TUNED_ENV.items()))
  host_malloc.reexec()


def main(argv: list[str] | None = None) -> list[dict]:
  cli = parser()
  args = cli.parse_args(argv)
  try:
    check_cpu_malloc(args.cpu_malloc, in_process=argv is not None)
    if args.cpu_devices is not None:
      cpu_devices.configure(args.cpu_devices)  # before anything starts a backend.
    configs = options_from_args(args)
    lines = measure(configs, args.steps, args.warmup,
                    log=lambda msg: print(msg, file=sys.stderr, flush=True))
  except ValueError as e:  # bad flag values: a usage error, not a traceback.
    cli.error(str(e))
  for line in lines:
    text = json.dumps(line)
    print(text, flush=True)
    if args.json:
      with open(args.json, 'a') as f:
        f.write(text + '\n')
  return lines


if __name__ == '__main__':
  main()
