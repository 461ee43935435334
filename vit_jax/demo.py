"""The offline demo: the ViT paper's protocol end to end on a 2-core CPU, in one command.

  python -m vit_jax.demo --workdir=/tmp/vit_demo

1. pretrain a small ViT on `vit_demo/upstream` at 16 px        -> <workdir>/pretrain
2. fine-tune it on `vit_demo/downstream` at 32 px (position     -> <workdir>/finetune
   embeddings resampled 4x4 -> 8x8, new head)
3. the same model from scratch on downstream, same steps         -> <workdir>/scratch

then prints the table and writes <workdir>/results.json. Every phase is the ordinary
training loop (configs/demo.py, installed with the package as vit_jax.configs.demo), so
re-running the command resumes or, for finished phases, only re-evaluates. It runs from
any directory.
"""
from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from vit_jax.configs import demo as demo_config
from vit_jax.platform import log_filters

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the three runs + results.json.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir for vit_demo (None: tfds default).')
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', demo_config.PRETRAIN_STEPS,
                                       'Pretraining updates.')
_DOWNSTREAM_STEPS = flags.DEFINE_integer('downstream_steps', demo_config.DOWNSTREAM_STEPS,
                                         'Fine-tuning and from-scratch updates (each).')
flags.mark_flag_as_required('workdir')

RESULTS_FILE = 'results.json'
PHASES = ('pretrain', 'finetune', 'scratch')


def phase_config(phase: str, workdir: str, *, steps: int, data_dir: str | None,
                 datasets: dict | None = None, config_args: str = ''):
  """configs/demo.py for one phase; fine-tuning starts from the pretraining workdir.

  `datasets` ({phase: tfds name}) swaps in other data, e.g. the tiny splits in tests;
  `config_args` are more configs/demo.py arguments, e.g. 'posemb=none' (ablations).
  """
  init = f',init={os.path.join(workdir, "pretrain")}' if phase == 'finetune' else ''
  extra = f',{config_args}' if config_args else ''
  config = demo_config.get_config(f'phase={phase},steps={steps}{init}{extra}')
  config.data.data_dir = data_dir
  if datasets and phase in datasets:
    config.data.dataset = datasets[phase]
  return config


def run_phases(workdir: str, *, pretrain_steps: int, downstream_steps: int,
               data_dir: str | None = None, datasets: dict | None = None,
               config_args: str = '', phases: tuple[str, ...] = PHASES) -> dict:
  """Runs `phases` in order; returns {phase: the loop's final summary}."""
  from vit_jax import train  # pylint: disable=import-outside-toplevel  (after flags)
  summaries = {}
  for phase in phases:
    steps = pretrain_steps if phase == 'pretrain' else downstream_steps
    config = phase_config(phase, workdir, steps=steps, data_dir=data_dir,
                          datasets=datasets, config_args=config_args)
    logging.info('Demo phase %s: %d steps at %s px.', phase, steps, config.image_size)
    phase_dir = os.path.join(workdir, phase)
    os.makedirs(phase_dir, exist_ok=True)
    summaries[phase] = train.train_and_evaluate(config, phase_dir)
  return summaries


def results_from(summaries: dict, wall_seconds: float, cores: int) -> dict:
  """The demo's result record (accuracies as fractions, cost in core-hours)."""
  return {
      'upstream_accuracy': summaries['pretrain']['eval_accuracy'],
      'downstream_accuracy_pretrained': summaries['finetune']['eval_accuracy'],
      'downstream_accuracy_scratch': summaries['scratch']['eval_accuracy'],
      # Training steps only, as the loop accounts them (all three phases).
      'core_hours': sum(s['core_hours'] for s in summaries.values()),
      # Everything the command did: data generation, compiles, evaluation too.
      'wall_seconds': wall_seconds,
      'wall_core_hours': wall_seconds * cores / 3600,
      'train_seconds': {p: s['train_seconds'] for p, s in summaries.items()},
      'steps': {p: s['final_step'] for p, s in summaries.items()},
  }


def table(results: dict) -> str:
  gain = (results['downstream_accuracy_pretrained'] -
          results['downstream_accuracy_scratch'])
  rows = [
      ('upstream accuracy (100 classes, 16 px)', f"{results['upstream_accuracy']:.3f}"),
      ('downstream accuracy, pretrained (10 classes, 32 px)',
       f"{results['downstream_accuracy_pretrained']:.3f}"),
      ('downstream accuracy, from scratch (same steps)',
       f"{results['downstream_accuracy_scratch']:.3f}"),
      ('gain from pretraining', f'{100 * gain:+.1f} points'),
      ('core-hours (training steps)', f"{results['core_hours']:.4f}"),
      ('core-hours (whole command, wall x cores)', f"{results['wall_core_hours']:.4f}"),
      ('wall time', f"{results['wall_seconds'] / 60:.1f} min"),
  ]
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value}' for name, value in rows)


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for flag in (_PRETRAIN_STEPS, _DOWNSTREAM_STEPS):
    if flag.value < 1:
      raise app.UsageError(f'--{flag.name}={flag.value}: must be >= 1')
  log_filters.install()
  start = time.perf_counter()
  summaries = run_phases(_WORKDIR.value, pretrain_steps=_PRETRAIN_STEPS.value,
                         downstream_steps=_DOWNSTREAM_STEPS.value,
                         data_dir=_DATA_DIR.value)
  results = results_from(summaries, time.perf_counter() - start, os.cpu_count() or 1)
  with open(os.path.join(_WORKDIR.value, RESULTS_FILE), 'w') as f:
    json.dump(results, f, indent=2)
  print(table(results))
  print(f'Written: {os.path.join(_WORKDIR.value, RESULTS_FILE)}')


if __name__ == '__main__':
  app.run(main)
