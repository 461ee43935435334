"""What a run tells the person at the keyboard and TensorBoard.

Console (absl, every process): the start table, one progress line per log interval,
  step 2100/3000 (70%)  loss 1.41  654 img/s/core  MFU 20.0%  ETA 1m28s
one line per evaluation,
  eval step 3000: accuracy 0.594 (500 examples)  loss 1.23
and the cost line at the end. TensorBoard (process 0, build.make_writer): the start
table as text, the config as hparams, and every scalar (`train_*` each log interval,
`eval_*` each evaluation). <workdir>/cost_summary.json: the final summary.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import jax
import numpy as np
from absl import logging
from clu import periodic_actions
from etils import epath

from vit_jax import sharding
from vit_jax.cost import accounting
from vit_jax.cost import flops

if TYPE_CHECKING:
  from vit_jax import build

COST_SUMMARY_FILE = 'cost_summary.json'


# ----------------------------------------------------------------------------------------
# Start.
# ----------------------------------------------------------------------------------------
def start_table_rows(run: build.Run, start_step: int) -> list[tuple[str, str]]:
  config, info, kinds = run.setup.config, run.info, run.hardware.kinds
  steps_per_epoch = info.num_train_examples / config.batch_size
  peak = f'{run.hardware.peak_total:.4g}' if run.hardware.peak_total else 'unknown'
  return [
      ('processes', str(jax.process_count())),
      ('devices per process', str(jax.local_device_count())),
      ('device kind', ', '.join(f'{kind} x{count}' for kind, (count, _) in kinds.items())),
      ('cores per device', ', '.join(f'{kind}: {c:g}' for kind, (_, c) in kinds.items())),
      ('mesh', ' x '.join(f'{n}={s}' for n, s in run.setup.mesh.shape.items())),
      ('batch per device / host / global',
       f'{config.batch_size // run.setup.mesh.size} / '
       f'{config.batch_size // jax.process_count()} / {config.batch_size}'),
      ('accumulation', f'{config.accum_steps} micro-batches of '
                       f'{config.batch_size // config.accum_steps}'),
      ('steps per epoch', f'{steps_per_epoch:.2f} ({info.num_train_examples} examples)'),
      ('steps', f'{start_step} -> {config.total_steps} '
                f'({config.total_steps / steps_per_epoch:.2f} epochs)'),
      ('parameters', f'{flops.count_params(run.setup.model):,}'),
      ('FLOPs per step (fwd+bwd)',
       f'{run.compiled.flops_per_step:.4g} ({run.compiled.flops_source})'),
      ('peak FLOP/s, all devices', f'{peak} ({config.dtype})'),
      ('compile seconds', f'{run.compiled.compile_seconds:.1f}'),
      ('parameters sharded (FSDP)', str(bool(config.fsdp))),
      ('input stream', info.stream_summary),
  ]


def write_start(run: build.Run, start_step: int) -> None:
  """The start table on the console; table and hparams to TensorBoard (process 0)."""
  rows = start_table_rows(run, start_step)
  width = max(len(k) for k, _ in rows)
  table = '\n'.join(f'  {k.ljust(width)}  {v}' for k, v in rows)
  logging.info('Start of training:\n%s', table)
  if sharding.is_main_process():
    markdown = '| | |\n|---|---|\n' + '\n'.join(f'| {k} | {v} |' for k, v in rows)
    run.writer.write_texts(start_step, {'start_table': markdown})
    run.writer.write_hparams(flat_hparams(run.setup.config))


def flat_hparams(config) -> dict:
  """{'data.dataset': ..., 'lr': ...}: the config's scalar leaves for TensorBoard."""
  def flatten(tree, prefix):
    for key, value in tree.items():
      if isinstance(value, dict):
        yield from flatten(value, f'{prefix}{key}.')
      elif isinstance(value, (int, float, str, bool)):
        yield f'{prefix}{key}', value

  return dict(flatten(json.loads(config.to_json_best_effort()), ''))


# ----------------------------------------------------------------------------------------
# Progress.
# ----------------------------------------------------------------------------------------
class Progress(periodic_actions.ReportProgress):
  """clu's ReportProgress on the training clock, keeping its estimate for our line.

  The loop calls it at each of its log steps with t = the CostMeter's training seconds
  (evaluation and checkpoint waits excluded), so the rate is the interval's training
  throughput and the ETA the training time left: the numbers cost accounting counts.
  Kept from ReportProgress: the clock (the first call only starts it; each report
  measures from the previous one), num_train_steps and its definitions, steps/s = steps
  since the last report / time since it, ETA = steps left / steps/s.
  Replaced: _apply's publishing. It calls platform.work_unit().set_notes, which off an
  experiment platform (clu's LocalWorkUnit) logs a console line of its own, and, given
  a writer, adds steps_per_sec / uptime scalars the TensorBoard runs never had; we want
  exactly one console line per interval, so _apply keeps the estimate instead, and the
  loop (not ReportProgress's every_steps, which needs a call after every step) decides
  when to report.
  """

  def __init__(self, total_steps: int, *, start_step: int, start_seconds: float):
    super().__init__(num_train_steps=total_steps, every_secs=None)
    self.steps_per_sec: float | None = None
    self.eta_seconds: float | None = None
    self(start_step, start_seconds)  # starts the clock; a first call never reports.

  def _should_trigger(self, step: int, t: float) -> bool:
    return step != self._previous_step  # called at the loop's log steps only.

  def _apply(self, step: int, t: float) -> None:
    seconds = t - self._previous_time
    self.steps_per_sec = (step - self._previous_step) / seconds if seconds > 0 else None
    self.eta_seconds = ((self._num_train_steps - step) / self.steps_per_sec
                        if self.steps_per_sec else None)


def log_train(run: build.Run, step: int, history: list[dict[str, float]],
              totals: accounting.CostTotals, progress: Progress) -> None:
  """Means of the interval's metrics, throughput, ETA and cost so far: every scalar to
  TensorBoard, one line to the console. `totals`: the meter just paused."""
  config = run.setup.config
  scalars = {f'train_{k}': float(np.mean([h[k] for h in history])) for k in history[0]}
  scalars['train_lr'] = history[-1]['lr']
  # Unreadable records: a count over the interval (TensorBoard `data_errors`), not a mean.
  scalars.pop('train_data_errors', None)
  scalars['data_errors'] = float(sum(h.get('data_errors', 0.0) for h in history))
  progress(step, totals.train_seconds)
  if progress.steps_per_sec:
    scalars['train_images_per_sec_per_core'] = (
        progress.steps_per_sec * config.batch_size / run.hardware.cores)
    scalars['train_eta_hours'] = progress.eta_seconds / 3600
  scalars.update(cost_scalars(totals))
  run.writer.write_scalars(step, scalars)
  logging.info('%s', progress_line(step, config.total_steps, scalars))


def progress_line(step: int, total_steps: int, scalars: dict[str, float]) -> str:
  parts = [f'step {step}/{total_steps} ({100 * step / total_steps:.0f}%)',
           f'loss {scalars["train_loss"]:.3g}']
  if 'train_images_per_sec_per_core' in scalars:
    parts.append(f'{_rate(scalars["train_images_per_sec_per_core"])} img/s/core')
  if 'train_mfu' in scalars:
    parts.append(f'MFU {scalars["train_mfu"]:.1%}')
  if 'train_eta_hours' in scalars:
    parts.append(f'ETA {duration(scalars["train_eta_hours"] * 3600)}')
  if scalars.get('data_errors'):
    parts.append(f'{scalars["data_errors"]:.0f} unreadable (weight 0)')
  return '  '.join(parts)


def _rate(value: float) -> str:
  return f'{value:,.0f}' if value >= 100 else f'{value:.3g}'


def duration(seconds: float) -> str:
  """3725 -> '1h02m', 88 -> '1m28s', 7.2 -> '7s'."""
  seconds = round(seconds)
  hours, rest = divmod(seconds, 3600)
  minutes, secs = divmod(rest, 60)
  if hours:
    return f'{hours}h{minutes:02d}m'
  return f'{minutes}m{secs:02d}s' if minutes else f'{secs}s'


def cost_scalars(totals: accounting.CostTotals) -> dict[str, float]:
  summary = accounting.summarize(totals)
  scalars = {f'train_{k}': v for k, v in summary.items()
             if k.startswith('core_') or k in ('mfu', 'achieved_flops_per_second')}
  return {k: v for k, v in scalars.items() if v is not None}


def log_eval(run: build.Run, step: int, results: dict[str, float]) -> None:
  """`eval_*` scalars to TensorBoard, one line to the console."""
  run.writer.write_scalars(step, results)
  unread = results.get('eval_unreadable', 0)
  logging.info('eval step %d: accuracy %.3f (%d examples%s)  loss %.3g', step,
               results['eval_accuracy'], results['eval_examples'],
               f', {unread:.0f} unreadable' if unread else '', results['eval_loss'])


# ----------------------------------------------------------------------------------------
# The end.
# ----------------------------------------------------------------------------------------
def final_summary(run: build.Run, totals: accounting.CostTotals, last_eval: dict,
                  final_step: int, preempted: bool) -> dict:
  """Writes <workdir>/cost_summary.json (process 0) and logs the cost line."""
  config = run.setup.config
  summary = dict(accounting.summarize(totals), **last_eval, final_step=final_step,
                 total_steps=config.total_steps, preempted=preempted,
                 flops_per_step=run.compiled.flops_per_step,
                 flops_source=run.compiled.flops_source,
                 num_devices=run.setup.mesh.size, dtype=config.dtype)
  if sharding.is_main_process():
    (epath.Path(run.workdir) / COST_SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
  run.writer.flush()
  logging.info('%s', summary_line(summary))
  if preempted:
    logging.warning('Preempted at step %d: checkpoint saved; run the same command to '
                    'resume.', final_step)
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
