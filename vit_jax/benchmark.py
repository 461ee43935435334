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
mesh and shardings built by the training run's own steps (`build.setup`,
`build.initialize`), and the train step compiled ahead of time by `build.compile_steps`
(state donated). `--mode infer` times the evaluation step (`build.jit_eval_step`)
instead. The pieces live in vit_jax/speed/: options.py (configurations and the sweep
syntax), timing.py (warm-up, interleaved rounds), records.py (the JSON line).

Method. Each `--sweep key=v1,v2` value is one configuration (several --sweep flags
combine as a product). Every configuration is created and checked first (a bad value
fails in seconds), then compiled, then called until a call compiles nothing (at least
--warmup calls), then timed in interleaved rounds: one step of each configuration per
round, so drift in machine speed hits all of them alike. Reported: median / min / max
seconds per step over --steps rounds. On CPU each round also times one 1024^2 float32
and one bf16 (float32-accumulating) matmul; the best of them is the peak that MFU is
measured against (`peaks.measure_cpu_peak_flops`). On accelerators the peak is the
vendor figure in `cost/devices.py`.

`--cpu_devices N` makes the CPU backend N devices (vit_jax/platform/cpu_devices.py) and
`devices` (a flag or sweep key) is the size of each configuration's mesh, the first
`devices` devices (default: all), so one process compares a one-device step with a
data-parallel one. Rates per core always count the host's cores once. `--cpu_malloc`
restarts the command with vit_jax/platform/host_malloc.py's glibc settings (JSON `host_malloc`).

Output: one JSON line per configuration on stdout, also appended to --json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
from typing import Any, Callable

import jax
import numpy as np

from vit_jax import build
from vit_jax import optim
from vit_jax import run_config
from vit_jax import sharding
from vit_jax.cost import flops
from vit_jax.models import remat as remat_lib
from vit_jax.platform import cpu_devices
from vit_jax.platform import host_malloc
from vit_jax.speed import options
from vit_jax.speed import records
from vit_jax.speed import timing

# The benchmark's API, as experiments/benchmarks/*.py compose their own comparisons.
Options = options.Options
check_options = options.check_options
configurations = options.configurations
describe = options.describe
split_assignment = options.split_assignment
with_value = options.with_value
interleaved_times = timing.interleaved_times
time_call = timing.time_call
devices_fields = records.devices_fields
record = records.record
run_context = records.run_context


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A compiled step with its inputs, ready to be called again and again."""
  opts: Options
  setup: build.Setup
  call: Callable[[], Any]  # one step; returns what to block on.
  compile_seconds: float
  flops_per_step: float | None
  flops_source: str
  compiled: jax.stages.Compiled  # the step (HLO, cost and memory analyses).
  compiler_options: dict[str, str | bool | int]  # what it was compiled with.
  warmup_calls: int = 0  # set by prepare_all.
  page_faults: list[int] = dataclasses.field(default_factory=list)  # per timed call,
  #                                                        appended by timing.time_call.

  @property
  def xla_memory(self) -> dict[str, int]:
    return records.xla_memory(self.compiled)


def setup_for(opts: Options) -> build.Setup:
  """Config, mesh, model, optimiser and shardings as the training run builds them."""
  config = options.make_config(opts)
  build.check_config(config)
  mesh = sharding.make_mesh(mesh_devices(opts))
  sharding.check_batch_sizes(config, data_shards=mesh.size, process_count=1)
  return build.setup(config, opts.num_classes, mesh)  # checks overrides, sizes.


def mesh_devices(opts: Options) -> list[jax.Device] | None:
  """The first `opts.devices` devices (None: all, make_mesh's topology order)."""
  if opts.devices is None:
    return None
  if opts.devices > jax.device_count():
    raise ValueError(f'devices={opts.devices} but this process has '
                     f'{jax.device_count()}; on CPU add --cpu_devices {opts.devices}')
  return jax.devices()[:opts.devices]


def random_batch(setup: build.Setup, with_mask: bool) -> dict[str, jax.Array]:
  """Normal images and one-hot labels (timing does not depend on their values), with
  the train step's example weights (all 1) or the eval step's mask."""
  rng = np.random.default_rng(0)
  (h, w), b = setup.image_size, setup.config.batch_size
  batch = {'image': rng.normal(size=(b, h, w, 3)).astype(np.float32),
           'label': np.eye(setup.num_classes, dtype=np.float32)[
               rng.integers(0, setup.num_classes, b)]}
  batch['mask' if with_mask else 'weight'] = np.ones((b,), np.float32)
  return jax.device_put(batch, setup.batch_sharding)


def prepare(opts: Options, setup: build.Setup | None = None) -> Prepared:
  """Initialises the state and compiles the step of one configuration."""
  setup = setup or setup_for(opts)
  state = build.initialize(setup)
  xla_options = dict(opts.xla_options)
  if opts.mode == 'train':
    compiled = build.compile_steps(setup, state, compiler_options=xla_options)
    holder = {'state': state}
    batch = random_batch(setup, with_mask=False)

    def call():
      holder['state'], metrics = compiled.train_step(holder['state'], batch)  # donated.
      return holder['state'], metrics
    return Prepared(opts, setup, call, compiled.compile_seconds, compiled.flops_per_step,
                    compiled.flops_source, compiled.train_step, compiled.compiler_options)
  # The loop jits its eval step without options; only --xla_option ones here.
  batch = random_batch(setup, with_mask=True)
  step, seconds = build.compile_checked(setup, build.jit_eval_step(setup),
                                        (state.params, batch), xla_options)
  per_device = flops.compiled_flops_per_device(step)
  step_flops = per_device * setup.mesh.size if per_device else None
  source = 'XLA cost analysis of the compiled step' if step_flops else 'unavailable'
  return Prepared(opts, setup, lambda: step(state.params, batch), seconds, step_flops,
                  source, step, xla_options)


def prepare_all(configurations: list[Options], warmup: int,
                log: Callable[[str], None] = print) -> list[Prepared]:
  """Every configuration checked, then compiled, then warmed up."""
  for opts in configurations:
    check_options(opts)
  setups = [setup_for(opts) for opts in configurations]  # bad sizes fail before compiling.
  prepared = []
  for opts, setup in zip(configurations, setups):
    log(f'compiling {describe(opts)}')
    prepared.append(prepare(opts, setup))
  warm = []
  for p in prepared:
    warm.append(dataclasses.replace(p, warmup_calls=timing.warm_up(p, warmup)))
    log(f'warm after {warm[-1].warmup_calls} call(s): {describe(p.opts)}')
  return warm


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
def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m vit_jax.benchmark',
                              description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ViT-B/16', help='a registered model name')
  p.add_argument('--res', type=int, default=224, help='image side in pixels')
  p.add_argument('--batch', type=int, default=8, help='global batch size')
  p.add_argument('--dtype', default='float32', help=f'one of {run_config.COMPUTE_DTYPES}')
  p.add_argument('--mode', default='train', help=f'one of {options.MODES}')
  p.add_argument('--optimizer', default='sgd', help=f'one of {optim.OPTIMIZERS}')
  p.add_argument('--remat', default=options.REMAT_OFF, help=(
      f'{options.REMAT_OFF!r} or a policy: {", ".join(remat_lib.POLICIES)}'))
  p.add_argument('--attention_impl', default=None, help="model override: 'einsum' | 'xla'")
  p.add_argument('--override', action='append', default=[], metavar='FIELD=VALUE',
                 help='model field override, e.g. fused_qkv=false (repeatable)')
  p.add_argument('--xla_option', action='append', default=[], metavar='NAME=VALUE',
                 help='XLA compiler option of the step compilation (repeatable)')
  p.add_argument('--sweep', action='append', default=[], metavar='KEY=V1,V2',
                 help='one configuration per value; keys: '
                      f'{", ".join(options.OPTION_KEYS)}, xla.<option> or a model field; '
                      "several combine as a product. Values: comma-separated, or "
                      "'|'-separated when they contain commas; for xla.<option>, "
                      f"{options.XLA_DEFAULT!r} leaves it unset and '' is the empty value"
                      " (e.g. xla.xla_cpu_experimental_ynn_"
                      "fusion_type=default, compares YNNPACK on and off)")
  p.add_argument('--devices', type=int, default=None,
                 help='mesh size: the first N devices (default: all)')
  p.add_argument('--cpu_devices', default=None,
                 help="CPU: expose N devices ('auto' = one per core) before JAX starts")
  p.add_argument('--cpu_malloc', action='store_true',
                 help='restart with the glibc malloc settings of vit_jax/platform/host_malloc.py')
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
