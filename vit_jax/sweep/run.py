"""One sweep, start to end: check, train each rate, choose on minival, test the choice.

  prepare  (no compile, no device) the rates, the minival plan, the recipe record, and
           every existing rate directory checked against this recipe;
  sweep    each rate through the ordinary training loop in <DIR>/lr_<rate> (a finished
           run only re-evaluates, a killed one resumes from its last checkpoint), then
           the choice from the minival results alone, then one more start of the
           chosen run with the test split as its evaluation: the only test evaluation
           the sweep makes. The runs are always all visited, in the same order, so
           every process of a multi-process sweep takes the same steps.
"""
from __future__ import annotations

import dataclasses
import os

import ml_collections
from absl import logging

from vit_jax import resume
from vit_jax import sharding
from vit_jax import train
from vit_jax.checkpoints import compat
from vit_jax.sweep import choice
from vit_jax.sweep import grid
from vit_jax.sweep import minival
from vit_jax.sweep import plot
from vit_jax.sweep import record as record_lib


@dataclasses.dataclass(frozen=True)
class Plan:
  config: ml_collections.ConfigDict  # the recipe, as given (lr, eval_split = test).
  workdir: str
  rates: tuple[float, ...]
  splits: minival.Plan
  record: dict  # sweep.json as this start begins it.


def prepare(config: ml_collections.ConfigDict, workdir: str, *, lrs=None,
            config_spec: str = '') -> Plan:
  """Everything checked before any compile; SweepError names the value and the fix."""
  rates = grid.rates(lrs, config)
  splits = minival.plan_for(config)
  current = record_lib.recipe(resume.config_json(config))
  saved = record_lib.load(workdir)
  record_lib.check_recipe(saved, current, workdir)
  for rate in rates:
    expected = resume.config_json(grid.run_config(config, rate, config.data.minival_split))
    record_lib.check_run(os.path.join(workdir, grid.run_name(rate)),
                         compat.flatten(expected))
  record = saved or {'recipe': current, 'config': config_spec, 'runs': {}, 'chosen': None}
  record.update(rates=list(rates), minival_examples=splits.minival_examples,
                splits={'train': config.data.train_split,
                        'minival': config.data.minival_split,
                        'test': config.data.eval_split})
  return Plan(config, workdir, rates, splits, record)


def sweep(plan: Plan) -> dict:
  """Trains every rate, chooses on minival, evaluates the choice on test; sweep.json."""
  logging.info('Sweep in %s: lr %s; %s.', plan.workdir,
               ', '.join(f'{r:g}' for r in plan.rates), plan.splits.describe())
  record = plan.record
  _save(record, plan.workdir)
  for rate in plan.rates:
    summary = _train(plan, rate, plan.config.data.minival_split)
    if summary.get('preempted'):
      return _stopped(record, plan, rate)
    record['runs'][f'{rate:g}'] = {
        'workdir': grid.run_name(rate), 'minival_accuracy': summary['eval_accuracy'],
        'minival_loss': summary['eval_loss'], 'minival_examples': summary['eval_examples'],
        'steps': summary['final_step'], 'train_seconds': summary['train_seconds'],
        'core_hours': summary['core_hours']}
    _save(record, plan.workdir)
  finished = {r: record['runs'][f'{r:g}'] for r in plan.rates}
  chosen = choice.choose(finished)
  logging.info('Sweep: lr %g has the best minival accuracy (%s); evaluating it on %r.',
               chosen, _accuracies(finished), plan.config.data.eval_split)
  test = _train(plan, chosen, plan.config.data.eval_split)
  if test.get('preempted'):
    return _stopped(record, plan, chosen)
  record['chosen'] = {'lr': chosen, 'minival_accuracy': finished[chosen]['minival_accuracy'],
                      'test_accuracy': test['eval_accuracy'],
                      'test_examples': test['eval_examples'], 'test_split': plan.config.data.eval_split}
  _save(record, plan.workdir)
  if sharding.is_main_process():
    plot.write(record, os.path.join(plan.workdir, record_lib.PLOT_FILE))
  logging.info('Sweep done: %s', summary_line(record))
  return record


def _train(plan: Plan, rate: float, eval_split: str) -> dict:
  run_dir = os.path.join(plan.workdir, grid.run_name(rate))
  os.makedirs(run_dir, exist_ok=True)
  logging.info('Sweep: lr %g in %s, evaluated on %r.', rate, run_dir, eval_split)
  return train.train_and_evaluate(grid.run_config(plan.config, rate, eval_split), run_dir)


def _stopped(record: dict, plan: Plan, rate: float) -> dict:
  _save(record, plan.workdir)
  logging.warning('Sweep preempted during lr %g: run the same command to resume.', rate)
  return record


def _save(record: dict, workdir: str) -> None:
  if sharding.is_main_process():
    record_lib.save(record, workdir)


def _accuracies(results: dict) -> str:
  return ', '.join(f'{r:g}: {v["minival_accuracy"]:.3f}' for r, v in sorted(results.items()))


def summary_line(record: dict) -> str:
  chosen = record['chosen']
  return (f'minival ({record["minival_examples"]} images) '
          + ', '.join(f'lr {r}: {run["minival_accuracy"]:.3f}'
                      for r, run in sorted(record['runs'].items(), key=lambda x: float(x[0]))
                      if float(r) in record['rates'])
          + f'; chosen lr {chosen["lr"]:g}: test accuracy {chosen["test_accuracy"]:.4f} '
          f'({chosen["test_examples"]:.0f} images of {chosen["test_split"]!r})')
