"""The training loop. `train_and_evaluate` reads top to bottom as the table of contents:

  preflight -> mesh -> model / optimiser -> restore or init -> compile -> start table ->
  steps (log, eval, checkpoint, preemption) -> final summary.

Step numbers are update counts: "step 8" is the state after 8 updates, which is what
checkpoint 8 holds and what is logged at step 8.
"""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from etils import epath
from jax.experimental import multihost_utils

from vit_jax import cost
from vit_jax import cpu_devices
from vit_jax import input_pipeline
from vit_jax import models
from vit_jax import optim
from vit_jax import preprocess
from vit_jax import sharding
from vit_jax import steps
from vit_jax import train_checkpoint
from vit_jax.models import matmul

COST_SUMMARY_FILE = 'cost_summary.json'
COMPUTE_DTYPES = ('float32', 'bfloat16', 'bf16_matmul')  # config.dtype, see model_dtypes.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates as `config` says; returns the final summary (also logged)."""
  check_config(config)
  info = input_pipeline.preflight(config)  # datasets exist: fails in seconds, not hours.
  mesh = sharding.make_mesh()
  sharding.check_batch_sizes(config.batch_size, config.eval_batch_size,
                             config.accum_steps, mesh)
  model = create_model(config, info.num_classes, mesh)
  tx = optim.make_optimizer(config)
  run = Run(config=config, workdir=workdir, mesh=mesh, model=model, tx=tx, info=info)
  state, start_step, totals = restore_or_initialize(run)
  compile_steps(run, state)
  measure_hardware(run)
  write_start_table(run, start_step)
  state, totals, stopped_early = train_loop(run, state, start_step, totals)
  return final_summary(run, state, totals, stopped_early)


# ----------------------------------------------------------------------------------------
# Setup.
# ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
  """What the loop's helpers share; filled in by the setup functions below."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  model: Any
  tx: Any
  info: Any  # input_pipeline.DatasetInfo
  manager: Any = None  # orbax CheckpointManager
  writer: Any = None  # clu MultiWriter (logging only on processes > 0)
  state_sharding: Any = None
  train_step: Any = None  # compiled
  eval_step: Any = None  # jitted (compiled at the first eval)
  flops_per_step: float = 0.0  # global FLOPs of one update
  flops_source: str = ''
  compile_seconds: float = 0.0
  compiler_options: dict = dataclasses.field(default_factory=dict)  # of the train step.
  peak_total: float | None = None  # FLOP/s of every device together
  kinds: dict = dataclasses.field(default_factory=dict)  # device_kind -> (count, cores)
  last_eval: dict = dataclasses.field(default_factory=dict)  # newest evaluate() result


def check_config(config: ml_collections.ConfigDict) -> None:
  """Cheap checks of values no later stage checks, before anything is built."""
  if config.loss not in steps.LOSSES:
    raise ValueError(f'loss={config.loss!r} is not one of {steps.LOSSES}')
  if config.loss == 'softmax_xent' and config.data.multi_label:
    raise ValueError("data.multi_label=True needs loss='sigmoid_xent' (multi-hot targets)")
  if config.dtype not in COMPUTE_DTYPES:
    raise ValueError(f'dtype={config.dtype!r}; use one of {COMPUTE_DTYPES}')
  for name in ('total_steps', 'log_every_steps', 'keep_checkpoints'):
    if config[name] < 1:
      raise ValueError(f'{name}={config[name]} must be >= 1')
  if config.init and not epath.Path(config.init).exists():
    raise FileNotFoundError(
        f'config.init={config.init!r} does not exist; give a pretraining workdir '
        f'checkpoint or a published .npz, or unset it to train from scratch')
  optim.check_config(config)


def image_size(config) -> tuple[int, int]:
  """config.image_size: an int (square) or 'HxW' -> (H, W), parsed as the pipeline does."""
  return preprocess.parse_size(config.image_size)


def model_dtypes(dtype: str) -> dict:
  """config.dtype -> the models' dtype fields.

  'bf16_matmul': float32 compute with bf16 x bf16 -> float32 matmuls in the
  transformer blocks (fastest on CPUs with AVX512-BF16; logits move ~1% relative,
  so it is a choice, never a default). 'bfloat16': every layer computes in bfloat16.
  """
  if dtype == 'bf16_matmul':
    return dict(dtype=jnp.float32, matmul_dtype=jnp.bfloat16)
  return dict(dtype=jnp.dtype(dtype))


def create_model(config, num_classes: int, mesh: jax.sharding.Mesh | None = None):
  """The configured model; `mesh`: the one it will train on, if known."""
  overrides = dict(config.model_overrides)
  if mesh is not None and cpu_devices.step_compiler_options(mesh):
    # One XLA thread per CPU device: no idle core for attention chunks to fill
    # (models/attention_chunks.py measured them at 0.75-0.88x there).
    overrides.setdefault('attention_chunks', 1)
  return models.create(
      config.model, num_classes=num_classes, image_size=image_size(config),
      param_dtype=jnp.dtype(config.param_dtype), **model_dtypes(config.dtype),
      **overrides)


def _init_fns(run: Run):
  """(init_params(rng) -> params, make_state(params, rng) -> TrainState), both pure."""
  h, w = image_size(run.config)

  def init_params(rng):
    return run.model.init(rng, jnp.zeros((1, h, w, 3), jnp.float32), train=False)['params']

  def make_state(params, rng):
    return steps.init_state(params, run.tx, rng, run.config.ema_decay)

  return init_params, make_state


def initialize(run: Run, rng: jax.Array) -> steps.TrainState:
  """A fresh state, built directly sharded (FSDP never holds a replicated copy)."""
  init_params, make_state = _init_fns(run)
  init_rng, step_rng = jax.random.split(rng)
  params = jax.jit(init_params, out_shardings=run.state_sharding.params)(init_rng)
  if run.config.init:
    # Fine-tuning hook (issue 6): the pretrained weights with the new head, position
    # embeddings resampled to this image size. `init_params` are global jax.Arrays
    # (replicated unless config.fsdp); runs once, outside any jit, before compiling.
    from vit_jax import checkpoint  # pylint: disable=import-outside-toplevel
    # Published files do not record their resolution: config.init_image_size says it
    # when set, else load_pretrained reads it from the position-embedding grid
    # (vit_posemb.source_grid). Our own run directories record theirs, and that wins.
    published = not epath.Path(run.config.init).is_dir()
    params = checkpoint.load_pretrained(
        run.config.init, model=run.model, init_params=params,
        source_image_size=run.config.init_image_size if published else None,
        posemb_method=run.config.posemb_resample)
    params = jax.device_put(params, run.state_sharding.params)
  return jax.jit(make_state, out_shardings=run.state_sharding)(params, step_rng)


def abstract_state(run: Run, rng: jax.Array) -> steps.TrainState:
  """Shapes and dtypes of the TrainState, computed without allocating (free for ViT-H)."""
  init_params, make_state = _init_fns(run)

  def build(rng):
    init_rng, step_rng = jax.random.split(rng)
    return make_state(init_params(init_rng), step_rng)

  return jax.eval_shape(build, rng)


def restore_or_initialize(run: Run) -> tuple[steps.TrainState, int, cost.CostTotals]:
  """Latest complete checkpoint of the workdir if any, else a fresh state."""
  config = run.config
  rng = jax.random.PRNGKey(config.seed)
  abstract = abstract_state(run, rng)
  run.state_sharding = sharding.state_shardings(abstract, run.mesh, fsdp=config.fsdp)
  run.manager = train_checkpoint.create_manager(run.workdir, config.keep_checkpoints)
  run.writer = metric_writers.create_default_writer(
      run.workdir, just_logging=not sharding.is_main_process())
  step = train_checkpoint.latest_step(run.manager)
  if step is None:
    write_config(run)
    return initialize(run, rng), 0, cost.CostTotals()
  state, meta = train_checkpoint.restore(
      run.manager, step, train_checkpoint.abstract_like(abstract, run.state_sharding))
  warn_config_changes(meta.get('config', {}), config)
  logging.info('Resumed from %s at step %d.',
               train_checkpoint.checkpoint_dir(run.workdir), step)
  return state, meta['data']['start_step'], cost.CostTotals.from_json(meta['cost'])


def write_config(run: Run) -> None:
  """<workdir>/config.json, written once by process 0 (a resumed run keeps the first)."""
  path = epath.Path(run.workdir) / 'config.json'  # epath: local or gs://
  if sharding.is_main_process() and not path.exists():
    path.write_text(run.config.to_json_best_effort(indent=2))


def warn_config_changes(saved: dict, config) -> None:
  current = json.loads(config.to_json_best_effort())
  changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
  if changed:
    logging.warning('Resuming with a config that differs from the checkpoint in: %s',
                    ', '.join(changed))


def compile_steps(run: Run, state: steps.TrainState,
                  compiler_options: dict[str, str] | None = None) -> None:
  """Compiles the train step ahead of time; records its FLOPs and the compile time.

  compiler_options: XLA options for this compilation only (the benchmark compares
  XLA:CPU flags in one process with them), on top of cpu_devices' defaults.
  """
  config, mesh = run.config, run.mesh
  batch_sharding = sharding.batch_sharding(mesh)
  h, w = image_size(config)
  batch = {
      'image': jax.ShapeDtypeStruct((config.batch_size, h, w, 3), jnp.float32,
                                    sharding=batch_sharding),
      'label': jax.ShapeDtypeStruct((config.batch_size, run.info.num_classes),
                                    jnp.float32, sharding=batch_sharding)}
  jitted = steps.jit_train_step(
      model=run.model, tx=run.tx, config=config, state_sharding=run.state_sharding,
      batch_sharding=batch_sharding, replicated=sharding.replicated(mesh))
  # Several CPU devices in this process: one thread each (vit_jax/cpu_devices.py).
  run.compiler_options = {**cpu_devices.step_compiler_options(mesh),
                          **(compiler_options or {})}
  start = time.perf_counter()
  run.train_step = jitted.lower(state, batch).compile(run.compiler_options or None)
  run.compile_seconds = time.perf_counter() - start
  check_cpu_bf16_dots(run.train_step, config, mesh)
  run.flops_per_step, run.flops_source = step_flops(run, state, batch)
  run.eval_step = steps.jit_eval_step(
      model=run.model, config=config, params_sharding=run.state_sharding.params,
      batch_sharding=batch_sharding, replicated=sharding.replicated(mesh))


def check_cpu_bf16_dots(compiled, config, mesh) -> None:
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


def measure_hardware(run: Run) -> None:
  """Device kinds, cores per device and the peak FLOP/s of the whole mesh (for MFU)."""
  devices = jax.devices()
  run.kinds = cost.device_kinds(devices)
  cpu_peak = (cost.measure_cpu_peak_flops(run.config.dtype)
              if any(d.platform == 'cpu' for d in devices) else None)
  run.peak_total = cost.peak_flops_total(devices, run.config.dtype, cpu_peak)


def step_flops(run: Run, state, batch) -> tuple[float, str]:
  """Global FLOPs per update from XLA's cost analysis; analytic 6 x MACs as fallback."""
  config = run.config
  per_device = cost.compiled_flops_per_device(run.train_step)
  micro = None
  if per_device and config.accum_steps > 1:
    micro_batch = config.batch_size // config.accum_steps
    micro_fn = jax.value_and_grad(lambda p, x: jnp.sum(run.model.apply(
        {'params': p}, x, train=True, rngs={'dropout': jax.random.PRNGKey(0)})))
    x = jax.ShapeDtypeStruct((micro_batch,) + batch['image'].shape[1:], jnp.float32)
    micro = cost.lowered_flops(jax.jit(micro_fn).lower(state.params, x))
  if per_device:
    return (cost.train_step_flops(per_device, run.mesh.size, config.accum_steps, micro),
            'XLA cost analysis of the compiled step')
  # forward + backward = 3 forward passes; 2 FLOPs per multiply-accumulate.
  macs = cost.forward_macs(run.model, image_size(config))
  return 6.0 * macs * config.batch_size, 'analytic: 6 x forward MACs x batch'


# ----------------------------------------------------------------------------------------
# Logging.
# ----------------------------------------------------------------------------------------
def start_table_rows(run: Run, start_step: int) -> list[tuple[str, str]]:
  config, info = run.config, run.info
  kinds = ', '.join(f'{kind} x{count}' for kind, (count, _) in run.kinds.items())
  cores = ', '.join(f'{kind}: {c:g}' for kind, (_, c) in run.kinds.items())
  per_host = config.batch_size // jax.process_count()
  steps_per_epoch = info.num_train_examples / config.batch_size
  peak = f'{run.peak_total:.4g}' if run.peak_total else 'unknown'
  return [
      ('processes', str(jax.process_count())),
      ('devices per process', str(jax.local_device_count())),
      ('device kind', kinds),
      ('cores per device', cores),
      ('mesh', ' x '.join(f'{n}={s}' for n, s in run.mesh.shape.items())),
      ('batch per device / host / global',
       f'{config.batch_size // run.mesh.size} / {per_host} / {config.batch_size}'),
      ('accumulation', f'{config.accum_steps} micro-batches of '
                       f'{config.batch_size // config.accum_steps}'),
      ('steps per epoch', f'{steps_per_epoch:.2f} ({info.num_train_examples} examples)'),
      ('steps', f'{start_step} -> {config.total_steps} '
                f'({config.total_steps / steps_per_epoch:.2f} epochs)'),
      ('parameters', f'{count_params(run):,}'),
      ('FLOPs per step (fwd+bwd)', f'{run.flops_per_step:.4g} ({run.flops_source})'),
      ('peak FLOP/s, all devices', f'{peak} ({config.dtype})'),
      ('compile seconds', f'{run.compile_seconds:.1f}'),
      ('parameters sharded (FSDP)', str(bool(config.fsdp))),
  ]


def count_params(run: Run) -> int:
  return cost.count_params(run.model)


def write_start_table(run: Run, start_step: int) -> None:
  rows = start_table_rows(run, start_step)
  width = max(len(k) for k, _ in rows)
  table = '\n'.join(f'  {k.ljust(width)}  {v}' for k, v in rows)
  logging.info('Start of training:\n%s', table)
  if sharding.is_main_process():
    markdown = '| | |\n|---|---|\n' + '\n'.join(f'| {k} | {v} |' for k, v in rows)
    run.writer.write_texts(start_step, {'start_table': markdown})
    run.writer.write_hparams(flat_hparams(run.config))


def flat_hparams(config) -> dict:
  """{'data.dataset': ..., 'lr': ...}: the config's scalar leaves for TensorBoard."""
  def flatten(tree, prefix):
    for key, value in tree.items():
      if isinstance(value, dict):
        yield from flatten(value, f'{prefix}{key}.')
      elif isinstance(value, (int, float, str, bool)):
        yield f'{prefix}{key}', value

  return dict(flatten(json.loads(config.to_json_best_effort()), ''))


def cost_scalars(totals: cost.CostTotals) -> dict[str, float]:
  summary = cost.summarize(totals)
  scalars = {f'train_{k}': v for k, v in summary.items()
             if k.startswith('core_') or k in ('mfu', 'achieved_flops_per_second')}
  return {k: v for k, v in scalars.items() if v is not None}


# ----------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------
class SegmentTimer:
  """Wall time of training only: paused around eval and checkpoint waits."""

  def __init__(self):
    self.start, self.steps = time.perf_counter(), 0

  def take(self, state) -> tuple[float, int]:
    """(seconds, steps) since the last take; blocks until `state` is computed."""
    jax.block_until_ready(state)
    now = time.perf_counter()
    seconds, n = now - self.start, self.steps
    self.start, self.steps = now, 0
    return seconds, n

  def restart(self) -> None:
    self.start, self.steps = time.perf_counter(), 0


class Preemption:
  """SIGTERM (what a TPU VM gets before preemption) -> checkpoint and a clean exit.

  One process: a Python signal handler sets a flag (the previous handler is restored on
  exit). Several processes: JAX's preemption sync manager (started by
  jax.distributed.initialize) catches the signal on any host and makes every host agree
  on the step at which to save.
  """

  def __init__(self):
    self.flag = False
    self.multi = jax.process_count() > 1
    self.previous_handler = None

  def __enter__(self):
    if not self.multi:
      self.previous_handler = signal.signal(signal.SIGTERM, self._handler)
    return self

  def __exit__(self, *exc):
    if self.previous_handler is not None:
      signal.signal(signal.SIGTERM, self.previous_handler)

  def _handler(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint after this step, then exiting.')
    self.flag = True

  def reached(self, step: int) -> bool:
    if self.multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self.flag


class NonFiniteLoss(FloatingPointError):
  pass


def check_finite(step: int, metrics: dict, run: Run) -> None:
  """Stops the run when the loss of update `step` is NaN or infinite."""
  loss = float(metrics['loss'])
  if np.isfinite(loss):
    return
  train_checkpoint.wait(run.manager)
  last = train_checkpoint.latest_step(run.manager)
  where = (f'{train_checkpoint.checkpoint_dir(run.workdir)}/{last}' if last is not None
           else 'none (no checkpoint was written yet)')
  raise NonFiniteLoss(
      f'loss is {loss} at step {step}; stopping. The last good checkpoint is step '
      f'{last}: {where}. Nothing after it was saved. Lower config.lr or raise '
      f'config.warmup_steps (or check the data), then re-run to resume from it.')


def is_due(step: int, every: int, total: int) -> bool:
  return step == total or (every > 0 and step % every == 0)


def train_loop(run: Run, state, start_step: int, totals: cost.CostTotals):
  """Updates from `start_step` to config.total_steps; returns (state, totals, stopped)."""
  config = run.config
  if start_step >= config.total_steps:
    logging.info('Checkpoint step %d >= total_steps %d: nothing to train.', start_step,
                 config.total_steps)
    return state, totals, False
  batches = input_pipeline.train_iterator(
      config, sharding.batch_sharding(run.mesh), start_step=start_step)
  with Preemption() as preemption:
    return _steps(run, state, start_step, totals, batches, preemption)


def _steps(run: Run, state, start_step, totals, batches: Iterator, preemption):
  config = run.config
  timer, history = SegmentTimer(), []
  pending = []  # this update's (step, metrics): fetched one update late, so the host
  #               dispatches update n + 1 before waiting for update n to finish.
  for step in range(start_step + 1, config.total_steps + 1):
    state, metrics = run.train_step(state, next(batches))
    timer.steps += 1
    history += fetch_metrics(run, pending)
    pending = [(step, metrics)]
    debug_signal(config, step)
    stop = preemption.reached(step)
    log = is_due(step, config.log_every_steps, config.total_steps)
    evaluate_now = is_due(step, config.eval_every_steps, config.total_steps)
    save = stop or is_due(step, config.checkpoint_every_steps, config.total_steps)
    if log or evaluate_now or save:  # never log, evaluate or save a non-finite update.
      history += fetch_metrics(run, pending)
      pending = []
    if log:
      totals = log_train(run, step, history, timer, totals, state)
      history = []
    if evaluate_now:
      totals = pause_timer(run, timer, totals, state)
      evaluate(run, state, step)
      timer.restart()
    if save:
      totals = pause_timer(run, timer, totals, state)
      save_checkpoint(run, state, step, totals)
      timer.restart()
    if stop:
      return state, totals, True
  return state, totals, False


def fetch_metrics(run: Run, pending: list) -> list[dict]:
  """Host copies of the pending updates' metrics; stops on a non-finite loss."""
  return [host_metrics(run, step, metrics) for step, metrics in pending]


def host_metrics(run: Run, step: int, metrics: dict) -> dict:
  """Fetches one update's scalar metrics and stops on a non-finite loss."""
  values = {k: float(v) for k, v in jax.device_get(metrics).items()}
  check_finite(step, values, run)
  return values


def debug_signal(config, step: int) -> None:
  if step == config.debug.sigterm_at_step:
    os.kill(os.getpid(), signal.SIGTERM)


def pause_timer(run: Run, timer: SegmentTimer, totals, state) -> cost.CostTotals:
  """Adds the training time since the last pause to the cost totals."""
  seconds, n = timer.take(state)
  return cost.add_segment(totals, seconds=seconds, steps=n,
                          flops_per_step=run.flops_per_step, kinds=run.kinds,
                          peak_total=run.peak_total)


def log_train(run: Run, step: int, history: list[dict], timer: SegmentTimer,
              totals: cost.CostTotals, state) -> cost.CostTotals:
  """Mean metrics since the last log, throughput, ETA and cost so far."""
  config = run.config
  steps_before, seconds_before = totals.steps, totals.train_seconds
  totals = pause_timer(run, timer, totals, state)
  timer.restart()
  n, seconds = totals.steps - steps_before, totals.train_seconds - seconds_before
  scalars = {f'train_{k}': float(np.mean([h[k] for h in history])) for k in history[0]}
  scalars['train_lr'] = history[-1]['lr']
  if n and seconds > 0:
    cores = sum(count * c for count, c in run.kinds.values())
    scalars['train_images_per_sec_per_core'] = n * config.batch_size / seconds / cores
    scalars['train_eta_hours'] = (config.total_steps - step) * seconds / n / 3600
  scalars.update(cost_scalars(totals))
  run.writer.write_scalars(step, scalars)
  return totals


def evaluate(run: Run, state, step: int) -> dict:
  """Exact accuracy: correct / real examples over the whole eval split (padding masked)."""
  params = state.ema_params if run.config.ema_decay else state.params
  sums = {'correct': 0.0, 'loss': 0.0, 'count': 0.0}
  for batch in input_pipeline.eval_iterator(run.config, sharding.batch_sharding(run.mesh)):
    out = jax.device_get(run.eval_step(params, batch))
    sums = {k: sums[k] + float(out[k]) for k in sums}
  if sums['count'] != run.info.num_eval_examples:  # e.g. undecodable files in a folder
    logging.warning('evaluation saw %d examples; the eval split has %d', sums['count'],
                    run.info.num_eval_examples)
  results = {'eval_accuracy': sums['correct'] / sums['count'],
             'eval_loss': sums['loss'] / sums['count'],
             'eval_examples': sums['count']}
  run.writer.write_scalars(step, results)
  run.last_eval = dict(results, eval_step=step)
  return results


def save_checkpoint(run: Run, state, step: int, totals: cost.CostTotals) -> None:
  meta = {
      'step': step,
      'data': {'start_step': step},  # the pipeline is deterministic given (seed, step).
      'cost': totals.to_json(),
      'config': json.loads(run.config.to_json_best_effort()),
  }
  train_checkpoint.save(run.manager, step, state, meta)
  if step == run.config.debug.sigkill_after_save_at_step:
    os.kill(os.getpid(), signal.SIGKILL)  # test of resuming; the save may be in flight.


# ----------------------------------------------------------------------------------------
# The end.
# ----------------------------------------------------------------------------------------
def final_summary(run: Run, state, totals: cost.CostTotals, stopped_early: bool) -> dict:
  """Waits for the last checkpoint, writes <workdir>/cost_summary.json, logs one line."""
  train_checkpoint.wait(run.manager)
  final_step = int(jax.device_get(state.step))
  if not run.last_eval and final_step >= run.config.total_steps:
    evaluate(run, state, final_step)  # a finished run re-launched still reports accuracy.
  summary = dict(cost.summarize(totals), **run.last_eval, final_step=final_step,
                 total_steps=run.config.total_steps, preempted=stopped_early,
                 flops_per_step=run.flops_per_step, flops_source=run.flops_source,
                 num_devices=run.mesh.size, dtype=run.config.dtype)
  if sharding.is_main_process():
    (epath.Path(run.workdir) / COST_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
  run.writer.flush()
  logging.info('%s', summary_line(summary))
  if stopped_early:
    logging.warning('Preempted at step %d: checkpoint saved; run the same command to '
                    'resume.', summary['final_step'])
  run.manager.close()
  return summary


def summary_line(s: dict) -> str:
  def fmt(value, spec):
    return 'n/a' if value is None else format(value, spec)

  per_kind = ', '.join(f'{k} {v:.3g}' for k, v in s.items() if k.startswith('core_days/'))
  return (f'Cost: {s["core_hours"]:.4g} core-hours = {s["core_days"]:.4g} core-days '
          f'({per_kind}) over {s["train_seconds"]:.1f} s of training; '
          f'{s["total_flops"]:.4g} FLOPs at {fmt(s["achieved_flops_per_second"], ".4g")} '
          f'FLOP/s, MFU {fmt(s["mfu"], ".3%")}; TPUv3-core-day equivalent '
          f'{fmt(s["tpu_v3_core_days_equivalent"], ".4g")}.')
