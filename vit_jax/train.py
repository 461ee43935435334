"""The training loop. `train_and_evaluate` reads top to bottom as the table of contents:

  build (preflight, mesh, model / optimiser, restore or init, compile: build.py) ->
  start table (report.py) -> steps (log, eval, checkpoint, preemption: guards.py) ->
  final summary.

Step numbers are update counts: "step 8" is the state after 8 updates, which is what
checkpoint 8 holds and what is logged at step 8.
"""
from __future__ import annotations

from typing import Iterator

import jax
import ml_collections
from absl import logging

from vit_jax import build
from vit_jax import guards
from vit_jax import report
from vit_jax import resume
from vit_jax import steps
from vit_jax.checkpoints import training
from vit_jax.cost import accounting
from vit_jax.data import global_batches
from vit_jax.planning import preflight


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and evaluates as `config` says; returns the final summary (also logged)."""
  with preflight.out_of_memory_stops(workdir):  # a TPU compile that cannot fit.
    run, start = build.build(config, workdir)
  preflight.check_fits(run)  # the step against the device's memory, before step 1.
  report.write_start(run, start.step)
  meter = accounting.CostMeter(start.totals, flops_per_step=run.compiled.flops_per_step,
                               kinds=run.hardware.kinds,
                               peak_total=run.hardware.peak_total)
  state, last_eval, preempted = train_loop(run, start, meter)
  return finish(run, state, meter, last_eval, preempted)


# ----------------------------------------------------------------------------------------
# The loop.
# ----------------------------------------------------------------------------------------
def is_due(step: int, every: int, total: int) -> bool:
  return step == total or (every > 0 and step % every == 0)


def train_loop(run: build.Run, start: build.Start, meter: accounting.CostMeter
               ) -> tuple[steps.TrainState, dict, bool]:
  """Updates from `start.step` to config.total_steps; returns (state, the last
  evaluation's results, whether it stopped for preemption)."""
  config = run.setup.config
  with guards.Preemption() as preemption:
    last_eval = {}
    if start.evaluate_first and start.step < config.total_steps:
      # The evaluation due at this checkpoint was interrupted by a preemption.
      with meter.paused(start.state):
        last_eval = evaluate(run, start.state, start.step, preemption)
      if last_eval is None:  # preempted again: the checkpoint still owes it.
        return start.state, {}, True
    if start.step >= config.total_steps:
      logging.info('Checkpoint step %d >= total_steps %d: nothing to train.', start.step,
                   config.total_steps)
      return start.state, last_eval, False
    batches = global_batches.train_iterator(config, run.setup.batch_sharding,
                                            start_step=start.step)
    try:
      return _steps(run, start, meter, batches, preemption, last_eval)
    finally:
      global_batches.close_in_background(batches)


def _steps(run: build.Run, start: build.Start, meter: accounting.CostMeter,
           batches: Iterator[dict], preemption: guards.Preemption, last_eval: dict
           ) -> tuple[steps.TrainState, dict, bool]:
  config, state = run.setup.config, start.state
  history, saved = [], False
  pending = []  # this update's (step, metrics): fetched one update late, so the host
  #               dispatches update n + 1 before waiting for update n to finish.
  meter.resume()
  progress = report.Progress(config.total_steps, start_step=start.step,
                             start_seconds=meter.totals.train_seconds)
  for step in range(start.step + 1, config.total_steps + 1):
    state, metrics = run.compiled.train_step(state, next(batches))
    meter.count_step()
    history += fetch_metrics(run, pending)
    pending = [(step, metrics)]
    guards.debug_after_step(config.debug, step)
    stop = preemption.reached()
    log = is_due(step, config.log_every_steps, config.total_steps)
    eval_due = is_due(step, config.eval_every_steps, config.total_steps)
    save = stop or is_due(step, config.checkpoint_every_steps, config.total_steps)
    if log or eval_due or save:  # never log, evaluate or save a non-finite update.
      history += fetch_metrics(run, pending)
      pending = []
    if log:
      totals = meter.pause(state)
      meter.resume()  # writing the line counts as training time; eval and saves do not.
      report.log_train(run, step, history, totals, progress)
      history = []
    eval_pending = eval_due and stop  # preempted before it started: owed to the restart.
    if eval_due and not stop:
      with meter.paused(state):
        results = evaluate(run, state, step, preemption)
      last_eval, eval_pending = results or last_eval, results is None
      stop, save = stop or eval_pending, save or eval_pending
    if save:
      with meter.paused(state):
        save_checkpoint(run, state, step, meter, eval_pending=eval_pending, first=not saved)
      saved = True
      # A notice that came during the save: stop now rather than after another interval.
      stop = stop or (step < config.total_steps and preemption.reached())
    if stop:
      return state, last_eval, True
  return state, last_eval, False


def fetch_metrics(run: build.Run, pending: list) -> list[dict[str, float]]:
  """Host copies of the pending updates' scalar metrics; stops on a non-finite loss."""
  fetched = []
  for step, metrics in pending:
    values = {k: float(v) for k, v in jax.device_get(metrics).items()}
    guards.check_finite(step, values['loss'], run.manager, run.workdir)
    fetched.append(values)
  return fetched


def evaluate(run: build.Run, state: steps.TrainState, step: int,
             preemption: guards.Preemption | None = None) -> dict[str, float] | None:
  """Exact accuracy: correct / real examples over the whole eval split (padding masked).

  None, with nothing logged or written, when a preemption notice arrives during it: the
  caller saves at once and the checkpoint records that this evaluation is still owed."""
  config = run.setup.config
  params = state.ema_params if config.ema_decay else state.params
  sums = {'correct': 0.0, 'loss': 0.0, 'count': 0.0, 'unreadable': 0.0}
  for batch in global_batches.eval_iterator(config, run.setup.batch_sharding):
    out = jax.device_get(run.compiled.eval_step(params, batch))
    sums = {k: sums[k] + float(out[k]) for k in sums}
    guards.debug_in_eval(config.debug, step)
    if preemption is not None and preemption.reached():
      logging.warning('Evaluation at step %d interrupted by preemption: no metrics '
                      'written; the checkpoint owes it to the next start.', step)
      return None
  if sums['count'] != run.info.num_eval_examples:  # e.g. undecodable files in a folder
    logging.warning('evaluation read %d examples of the eval split\'s %d (%d could not be '
                    'read)', sums['count'], run.info.num_eval_examples, sums['unreadable'])
  results = {'eval_accuracy': sums['correct'] / sums['count'],
             'eval_loss': sums['loss'] / sums['count'],
             'eval_examples': sums['count'], 'eval_unreadable': sums['unreadable']}
  report.log_eval(run, step, results)
  return dict(results, eval_step=step)


def save_checkpoint(run: build.Run, state: steps.TrainState, step: int,
                    meter: accounting.CostMeter, eval_pending: bool = False,
                    first: bool = False) -> None:
  """Starts saving checkpoint `step`; after a run's first save, waits for it to commit
  and makes config.json this run's (resume.py)."""
  config = run.setup.config
  meta = {
      'step': step,
      # The stream is a pure function of (its description, step): all it needs to resume.
      'data': {'start_step': step, 'stream': run.info.stream},
      'cost': meter.to_json(),
      'config': resume.config_json(config),
      'num_classes': run.setup.num_classes,
      'eval_pending': eval_pending,  # an evaluation due at `step` was interrupted.
  }
  training.save(run.manager, step, state, meta)
  guards.debug_after_save(config.debug, step)
  if first:
    resume.record_after_first_save(run.manager, config, run.workdir)


# ----------------------------------------------------------------------------------------
# The end.
# ----------------------------------------------------------------------------------------
def finish(run: build.Run, state: steps.TrainState, meter: accounting.CostMeter,
           last_eval: dict, preempted: bool) -> dict:
  """Waits for the last checkpoint, reports the cost summary, closes the manager."""
  training.wait(run.manager)
  final_step = int(jax.device_get(state.step))
  if not last_eval and final_step >= run.setup.config.total_steps:
    last_eval = evaluate(run, state, final_step)  # a finished run re-launched reports.
  summary = report.final_summary(run, meter.totals, last_eval, final_step, preempted)
  run.manager.close()
  return summary
