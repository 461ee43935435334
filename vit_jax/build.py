"""Assembles a run, in the order train.py and the benchmark both follow:

  check_config -> setup (model, optimiser, abstract state, shardings on a mesh)
  -> restore or initialise the state -> compile_steps (AOT train step, eval step, FLOPs)
  -> measure_hardware (device kinds, peak FLOP/s).

`build` adds what only training needs (preflight, the orbax manager, the metric writer)
and returns a frozen `Run`; `python -m vit_jax.benchmark` calls `setup`, `initialize`
and `compile_steps` itself, with no workdir. Nothing here is filled in later: each step
returns a frozen dataclass of what it made.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
import orbax.checkpoint as ocp
from clu import metric_writers
from etils import epath

from vit_jax import optim
from vit_jax import resume
from vit_jax import run_config
from vit_jax import sharding
from vit_jax import steps
from vit_jax.checkpoints import fit
from vit_jax.checkpoints import training
from vit_jax.cost import accounting
from vit_jax.cost import flops
from vit_jax.cost import peaks
from vit_jax.data import preflight
from vit_jax.models import matmul
from vit_jax.platform import cpu_devices

XlaOptions = Mapping[str, str | bool | int]  # XLA compiler option -> value.


@dataclasses.dataclass(frozen=True)
class Setup:
  """A model and optimiser placed on a mesh; nothing allocated or compiled yet."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  model: nn.Module
  tx: optax.GradientTransformation
  num_classes: int
  abstract_state: steps.TrainState  # jax.ShapeDtypeStruct leaves (free for ViT-H).
  state_sharding: steps.TrainState  # NamedSharding leaves (replicated, or FSDP splits).

  @property
  def batch_sharding(self) -> jax.sharding.NamedSharding:
    return sharding.batch_sharding(self.mesh)

  @property
  def image_size(self) -> tuple[int, int]:
    return run_config.image_size(self.config)


@dataclasses.dataclass(frozen=True)
class Compiled:
  """The steps the loop calls, and what compiling the train step measured."""
  train_step: jax.stages.Compiled  # (state, batch) -> (state, metrics); state donated.
  eval_step: jax.stages.Wrapped  # (params, batch) -> sums; compiled at the first eval.
  flops_per_step: float  # global FLOPs of one update.
  flops_source: str
  compile_seconds: float
  compiler_options: dict[str, str | bool | int]  # what the train step was compiled with.


@dataclasses.dataclass(frozen=True)
class Hardware:
  """Every device of the run, for the cost accounting and MFU."""
  kinds: dict[str, tuple[int, float]]  # device_kind -> (devices, cores per device).
  peak_total: float | None  # FLOP/s of every device together; None when unknown.

  @property
  def cores(self) -> float:
    return sum(count * cores for count, cores in self.kinds.values())


@dataclasses.dataclass(frozen=True)
class Run:
  """Everything the training loop and its reports use."""
  setup: Setup
  compiled: Compiled
  hardware: Hardware
  info: preflight.DatasetInfo
  workdir: str
  manager: ocp.CheckpointManager
  writer: metric_writers.MetricWriter  # TensorBoard on process 0; no-op elsewhere.


def build(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, Start]:
  """(run, where it starts): resumed from the newest checkpoint of `workdir` that this
  config may resume and that reads, else freshly initialised."""
  check_config(config)
  info = preflight.preflight(config)  # data and batch sizes: fails in seconds, not hours.
  run_setup = setup(config, info.num_classes, sharding.make_mesh())
  manager = training.create_manager(workdir, config.keep_checkpoints)
  start = restore_or_initialize(run_setup, manager, workdir, stream=info.stream)
  writer = make_writer(workdir)  # after the resume checks: a refused resume writes nothing.
  run = Run(setup=run_setup, compiled=compile_steps(run_setup, start.state),
            hardware=measure_hardware(config.dtype), info=info, workdir=workdir,
            manager=manager, writer=writer)
  return run, start


def check_config(config: ml_collections.ConfigDict) -> None:
  """Cheap checks of values no later stage checks, before anything is built."""
  if config.loss not in steps.LOSSES:
    raise ValueError(f'loss={config.loss!r} is not one of {steps.LOSSES}')
  if config.loss == 'softmax_xent' and config.data.multi_label:
    raise ValueError("data.multi_label=True needs loss='sigmoid_xent' (multi-hot targets)")
  run_config.check_dtype(config.dtype)
  for name in ('total_steps', 'log_every_steps', 'keep_checkpoints'):
    if config[name] < 1:
      raise ValueError(f'{name}={config[name]} must be >= 1')
  if config.init and not epath.Path(config.init).exists():
    raise FileNotFoundError(
        f'config.init={config.init!r} does not exist; give a pretraining workdir '
        f'checkpoint or a published .npz, or unset it to train from scratch')
  optim.check_config(config)


def make_writer(workdir: str) -> metric_writers.MetricWriter:
  """TensorBoard events in `workdir`, written by process 0 only.

  Not clu's create_default_writer: its LoggingWriter prints every scalar of every
  interval as one raw line; report.py logs a progress line and an eval line instead.
  """
  if not sharding.is_main_process():
    return metric_writers.MultiWriter([])
  summary = metric_writers.SummaryWriter(os.fspath(epath.Path(workdir)))
  return metric_writers.AsyncMultiWriter([summary])


# ----------------------------------------------------------------------------------------
# Model, optimiser, state.
# ----------------------------------------------------------------------------------------
def setup(config: ml_collections.ConfigDict, num_classes: int,
          mesh: jax.sharding.Mesh) -> Setup:
  """The configured model and optimiser with the state's shapes and shardings."""
  model = run_config.create_model(config, num_classes, mesh=mesh)
  tx = optim.make_optimizer(config)
  init_params, make_state = _init_fns(config, model, tx)

  def build_state():  # traced only: the key too, so nothing is compiled yet.
    init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
    return make_state(init_params(init_rng), step_rng)

  abstract = jax.eval_shape(build_state)
  return Setup(config=config, mesh=mesh, model=model, tx=tx, num_classes=num_classes,
               abstract_state=abstract,
               state_sharding=sharding.state_shardings(abstract, mesh, fsdp=config.fsdp))


def _init_fns(config, model: nn.Module, tx: optax.GradientTransformation):
  """(init_params(rng) -> params, make_state(params, rng) -> TrainState), both pure."""
  h, w = run_config.image_size(config)

  def init_params(rng):
    return model.init(rng, jnp.zeros((1, h, w, 3), jnp.float32), train=False)['params']

  def make_state(params, rng):
    return steps.init_state(params, tx, rng, config.ema_decay)

  return init_params, make_state


def initialize(setup: Setup) -> steps.TrainState:
  """A fresh state, built directly sharded (FSDP never holds a replicated copy)."""
  config = setup.config
  init_params, make_state = _init_fns(config, setup.model, setup.tx)
  init_rng, step_rng = jax.random.split(jax.random.PRNGKey(config.seed))
  params = jax.jit(init_params, out_shardings=setup.state_sharding.params)(init_rng)
  if config.init:
    # Fine-tuning (issue 6): the pretrained weights with the new head, position
    # embeddings resampled to this image size; runs once, outside any jit.
    # Published files do not record their resolution: config.init_image_size says it
    # when set, else load_pretrained reads it from the position-embedding grid
    # (vit_posemb.source_grid). Our own run directories record theirs, and that wins.
    is_file = not epath.Path(config.init).is_dir()
    params = fit.load_pretrained(
        config.init, model=setup.model, init_params=params,
        source_image_size=config.init_image_size if is_file else None,
        posemb_method=config.posemb_resample)
    params = jax.device_put(params, setup.state_sharding.params)
  return jax.jit(make_state, out_shardings=setup.state_sharding)(params, step_rng)


@dataclasses.dataclass(frozen=True)
class Start:
  """Where training starts: the state, its step, the cost so far, and whether the
  evaluation due at that step is still owed (a preemption interrupted it)."""
  state: steps.TrainState
  step: int
  totals: accounting.CostTotals
  evaluate_first: bool = False


def restore_or_initialize(setup: Setup, manager: ocp.CheckpointManager, workdir: str,
                          stream: dict | None = None) -> Start:
  """The newest checkpoint of `workdir` this config may resume and that reads
  (resume.py), else a fresh state. `stream` (pipeline.description) must equal the
  checkpoint's; every check runs before any array is read."""
  restored = resume.restore_newest_readable(
      manager, workdir, config=setup.config, abstract_state=setup.abstract_state,
      state_sharding=setup.state_sharding, num_classes=setup.num_classes, stream=stream)
  if restored is None:
    return Start(state=initialize(setup), step=0, totals=accounting.CostTotals())
  meta = restored.meta
  return Start(state=restored.state, step=meta['data']['start_step'],
               totals=accounting.CostTotals.from_json(meta['cost']),
               evaluate_first=bool(meta.get('eval_pending')))


# ----------------------------------------------------------------------------------------
# Compilation and hardware.
# ----------------------------------------------------------------------------------------
def compile_steps(setup: Setup, state: steps.TrainState,
                  compiler_options: XlaOptions | None = None, *,
                  check_cpu_dots: bool = True) -> Compiled:
  """Compiles the train step ahead of time; measures its FLOPs and the compile time.

  compiler_options: XLA options for this compilation only (the benchmark compares
  XLA:CPU flags in one process with them), on top of cpu_devices' defaults (several CPU
  devices in this process: one thread each, vit_jax/platform/cpu_devices.py).
  state: arrays, or ShapeDtypeStructs with the state's shardings (the planner compiles
  for a mesh it never allocates on). check_cpu_dots=False: the planner, compiling on CPU
  a step meant for an accelerator, skips the XLA:CPU bf16 dot check.
  """
  config = setup.config
  h, w = setup.image_size
  batch = {
      'image': jax.ShapeDtypeStruct((config.batch_size, h, w, 3), jnp.float32,
                                    sharding=setup.batch_sharding),
      'label': jax.ShapeDtypeStruct((config.batch_size, setup.num_classes), jnp.float32,
                                    sharding=setup.batch_sharding),
      'weight': jax.ShapeDtypeStruct((config.batch_size,), jnp.float32,
                                     sharding=setup.batch_sharding)}
  jitted = steps.jit_train_step(
      model=setup.model, tx=setup.tx, config=config, state_sharding=setup.state_sharding,
      batch_sharding=setup.batch_sharding, replicated=sharding.replicated(setup.mesh))
  options = {**cpu_devices.step_compiler_options(setup.mesh), **(compiler_options or {})}
  train_step, seconds = compile_checked(setup, jitted, (state, batch), options,
                                        check_cpu_dots=check_cpu_dots)
  flops_per_step, source = step_flops(setup, train_step, state, batch)
  return Compiled(train_step=train_step, eval_step=jit_eval_step(setup),
                  flops_per_step=flops_per_step, flops_source=source,
                  compile_seconds=seconds, compiler_options=options)


def jit_eval_step(setup: Setup) -> jax.stages.Wrapped:
  return steps.jit_eval_step(
      model=setup.model, config=setup.config, params_sharding=setup.state_sharding.params,
      batch_sharding=setup.batch_sharding, replicated=sharding.replicated(setup.mesh))


def compile_checked(setup: Setup, jitted: jax.stages.Wrapped, args: tuple,
                    compiler_options: XlaOptions | None, *, check_cpu_dots: bool = True
                    ) -> tuple[jax.stages.Compiled, float]:
  """(jitted compiled for `args`, seconds it took), with the bf16_matmul dot check."""
  start = time.perf_counter()
  compiled = jitted.lower(*args).compile(dict(compiler_options or {}) or None)
  seconds = time.perf_counter() - start
  if check_cpu_dots:
    check_cpu_bf16_dots(compiled, setup.config, setup.mesh)
  return compiled, seconds


def check_cpu_bf16_dots(compiled: jax.stages.Compiled, config, mesh) -> None:
  """dtype 'bf16_matmul' on CPU: fails at compile time, not at the first step, if XLA
  left a bf16 dot outside YNNPACK (its only runtime for them; models/matmul.py)."""
  if config.dtype != 'bf16_matmul' or mesh.devices.flat[0].platform != 'cpu':
    return
  bad = matmul.unsupported_cpu_dots(compiled.as_text())
  if bad:
    raise RuntimeError(
        f"dtype='bf16_matmul': XLA:CPU compiled {len(bad)} bf16 dot(s) it cannot run "
        f"for model {config.model} (first: {bad[0][:160]}); use dtype='float32' for "
        'this model, or report the shapes')


def step_flops(setup: Setup, train_step: jax.stages.Compiled, state: steps.TrainState,
               batch: dict) -> tuple[float, str]:
  """Global FLOPs per update from XLA's cost analysis; analytic 6 x MACs as fallback."""
  config = setup.config
  per_device = flops.compiled_flops_per_device(train_step)
  micro = None
  if per_device and config.accum_steps > 1:
    micro_batch = config.batch_size // config.accum_steps
    micro_fn = jax.value_and_grad(lambda p, x: jnp.sum(setup.model.apply(
        {'params': p}, x, train=True, rngs={'dropout': jax.random.PRNGKey(0)})))
    x = jax.ShapeDtypeStruct((micro_batch,) + batch['image'].shape[1:], jnp.float32)
    micro = flops.lowered_flops(jax.jit(micro_fn).lower(state.params, x))
  if per_device:
    total = flops.train_step_flops(per_device, setup.mesh.size, config.accum_steps, micro)
    return total, 'XLA cost analysis of the compiled step'
  # forward + backward = 3 forward passes; 2 FLOPs per multiply-accumulate.
  macs = flops.forward_macs(setup.model, setup.image_size)
  return 6.0 * macs * config.batch_size, 'analytic: 6 x forward MACs x batch'


def measure_hardware(dtype: str) -> Hardware:
  """Device kinds, cores per device and the peak FLOP/s of every device (for MFU)."""
  devices = jax.devices()
  cpu_peak = (peaks.measure_cpu_peak_flops(dtype)
              if any(d.platform == 'cpu' for d in devices) else None)
  return Hardware(kinds=peaks.device_kinds(devices),
                  peak_total=peaks.peak_flops_total(devices, dtype, cpu_peak))
