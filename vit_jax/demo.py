"""The offline demo: the ViT paper's protocol end to end on a 2-core CPU, in one command.

  python -m vit_jax.demo --workdir=/tmp/vit_demo

1. pretrain a small ViT on `vit_demo/upstream` at 16 px        -> <workdir>/pretrain
2. fine-tune it on `vit_demo/downstream` at 32 px (position     -> <workdir>/finetune/lr_*
   embeddings resampled 4x4 -> 8x8, new head): a learning-rate
   sweep over configs/demo.py's LR_GRID, chosen on minival (10%
   of the training images held out), the choice then evaluated
   on the test split (vit_jax/sweep/, as finetune_sweep)
3. the same model from scratch on downstream, the same sweep     -> <workdir>/scratch/lr_*

then prints the table and writes <workdir>/results.json (with each sweep's chosen rate
and minival accuracies; each sweep also writes its sweep.json and sweep.png). Every run
is the ordinary training loop (configs/demo.py, installed with the package as
vit_jax.configs.demo), so re-running the command resumes or, for finished runs, only
re-evaluates. Compiles are shared through JAX's persistent cache in
<workdir>/compile_cache. It runs from any directory.
"""
from __future__ import annotations

import json
import os
import time

from absl import app
from absl import flags
from absl import logging

from vit_jax.configs import demo as demo_config
from vit_jax.platform import cpu_devices
from vit_jax.platform import log_filters

_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for the three runs + results.json.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'tfds data_dir for vit_demo (None: tfds default).')
_PRETRAIN_STEPS = flags.DEFINE_integer('pretrain_steps', demo_config.PRETRAIN_STEPS,
                                       'Pretraining updates.')
_DOWNSTREAM_STEPS = flags.DEFINE_integer('downstream_steps', demo_config.DOWNSTREAM_STEPS,
                                         'Fine-tuning and from-scratch updates (each).')
_CPU_DEVICES = flags.DEFINE_string(
    'cpu_devices', 'auto', "CPU devices to train data-parallel over ('auto': one per core; "
    '1: one device, XLA threads the ops): the demo\'s tiny steps ran 1.7x faster on 2 '
    'single-threaded devices than on one (2-core AMD EPYC, AVX2; '
    'vit_jax/platform/cpu_devices.py). Accelerators are used as they are.')
flags.mark_flag_as_required('workdir')

RESULTS_FILE = 'results.json'
COMPILE_CACHE = 'compile_cache'
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
               config_args: str = '', phases: tuple[str, ...] = PHASES,
               sweep: bool = True, lrs: tuple[str, ...] | None = None) -> dict:
  """Runs `phases` in order; returns {phase: its summary}.

  sweep=True: each downstream phase is a learning-rate sweep over its config.lr_grid
  (vit_jax/sweep/run.py: one run per rate in <phase>/lr_<rate>, evaluated on minival,
  the chosen run then on the test split); its summary is the chosen run's test
  evaluation plus the sweep's totals; `lrs` replaces the grid (the tests' 2 rates).
  sweep=False: one run at config.lr in <phase>/."""
  # pylint: disable=import-outside-toplevel  (after flags: these import jax)
  from vit_jax import train
  from vit_jax.sweep import run as sweep_run
  summaries = {}
  for phase in phases:
    steps = pretrain_steps if phase == 'pretrain' else downstream_steps
    config = phase_config(phase, workdir, steps=steps, data_dir=data_dir,
                          datasets=datasets, config_args=config_args)
    logging.info('Demo phase %s: %d steps at %s px.', phase, steps, config.image_size)
    phase_dir = os.path.join(workdir, phase)
    os.makedirs(phase_dir, exist_ok=True)
    if phase == 'pretrain' or not sweep:
      summaries[phase] = train.train_and_evaluate(config, phase_dir)
    else:
      summaries[phase] = sweep_summary(sweep_run.sweep(sweep_run.prepare(config, phase_dir, lrs=lrs)))
  return summaries


def sweep_summary(record: dict) -> dict:
  """A sweep's sweep.json as a phase summary: the chosen run's test accuracy, the cost
  and training time of all its runs, the chosen rate and each rate's minival accuracy."""
  runs = [record['runs'][f'{rate:g}'] for rate in record['rates']]
  chosen = record['chosen']
  return {'eval_accuracy': chosen['test_accuracy'], 'eval_examples': chosen['test_examples'],
          'final_step': runs[0]['steps'], 'chosen_lr': chosen['lr'],
          'run': record['runs'][f'{chosen["lr"]:g}']['workdir'],
          'minival_accuracy': {f'{r:g}': run['minival_accuracy']
                               for r, run in zip(record['rates'], runs)},
          'minival_examples': record['minival_examples'],
          'core_hours': sum(run['core_hours'] for run in runs),
          'train_seconds': sum(run['train_seconds'] for run in runs)}


def results_from(summaries: dict, wall_seconds: float, cores: int) -> dict:
  """The demo's result record (accuracies as fractions, cost in core-hours)."""
  downstream = ('finetune', 'scratch')
  return {
      'upstream_accuracy': summaries['pretrain']['eval_accuracy'],
      'downstream_accuracy_pretrained': summaries['finetune']['eval_accuracy'],
      'downstream_accuracy_scratch': summaries['scratch']['eval_accuracy'],
      # The rate each downstream sweep chose on minival, and what every rate gave there.
      'chosen_lr': {p: summaries[p].get('chosen_lr') for p in downstream},
      'minival_accuracy': {p: summaries[p].get('minival_accuracy') for p in downstream},
      # Training steps only, as the loop accounts them (every run of every phase).
      'core_hours': sum(s['core_hours'] for s in summaries.values()),
      # Everything the command did: data generation, compiles, evaluation too.
      'wall_seconds': wall_seconds,
      'wall_core_hours': wall_seconds * cores / 3600,
      'train_seconds': {p: s['train_seconds'] for p, s in summaries.items()},
      'steps': {p: s['final_step'] for p, s in summaries.items()},
  }


def _lr(results: dict, phase: str) -> str:
  lr = results.get('chosen_lr', {}).get(phase)
  return '' if lr is None else f', lr {lr:g} chosen on minival'


def table(results: dict) -> str:
  gain = (results['downstream_accuracy_pretrained'] -
          results['downstream_accuracy_scratch'])
  rows = [
      ('upstream accuracy (100 classes, 16 px)', f"{results['upstream_accuracy']:.3f}"),
      (f'downstream accuracy, pretrained (10 classes, 32 px{_lr(results, "finetune")})',
       f"{results['downstream_accuracy_pretrained']:.3f}"),
      (f'downstream accuracy, from scratch (same steps{_lr(results, "scratch")})',
       f"{results['downstream_accuracy_scratch']:.3f}"),
      ('gain from pretraining', f'{100 * gain:+.1f} points'),
      ('core-hours (training steps)', f"{results['core_hours']:.4f}"),
      ('core-hours (whole command, wall x cores)', f"{results['wall_core_hours']:.4f}"),
      ('wall time', f"{results['wall_seconds'] / 60:.1f} min"),
  ]
  width = max(len(name) for name, _ in rows)
  return '\n'.join(f'{name:<{width}}  {value}' for name, value in rows)


def share_compiles(cache_dir: str) -> None:
  """JAX's persistent compilation cache in <workdir>/compile_cache, for the downstream
  runs: their programs differ only in the learning rate (a constant in the train step),
  so the scratch sweep, at the fine-tuning sweep's rates, and each chosen run's test
  evaluation reuse the fine-tuning runs' compiles (~11 s each on this CPU), and every
  run after the first its init and eval programs. A re-run of the demo compiles nothing."""
  import jax  # pylint: disable=import-outside-toplevel  (after flags)
  jax.config.update('jax_compilation_cache_dir', cache_dir)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)  # skip tiny ones.


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for flag in (_PRETRAIN_STEPS, _DOWNSTREAM_STEPS):
    if flag.value < 1:
      raise app.UsageError(f'--{flag.name}={flag.value}: must be >= 1')
  try:
    cpu_devices.configure(_CPU_DEVICES.value)  # before any backend exists.
  except ValueError as e:
    raise app.UsageError(str(e)) from None
  log_filters.install()
  share_compiles(os.path.join(_WORKDIR.value, COMPILE_CACHE))
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
