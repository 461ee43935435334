"""The fine-tuning learning-rate sweep of the ViT paper, in one command.

  python -m vit_jax.finetune_sweep --config=configs/finetune.py:model=ViT-B/16,dataset=cifar10,init=ViT-B_16.npz --workdir=DIR
      [--lrs=0.001,0.003,0.01,0.03] [--print_commands] [--config.<field>=<value> ...]

The ViT paper (Appendix B.1.1) fine-tunes with SGD and momentum at a small grid of
learning rates (Table 4 "Base LR": 0.001, 0.003, 0.01, 0.03; ImageNet 0.003-0.06),
picks the rate with the best accuracy on minival, a slice held out of the training set
(2% CIFAR, 1% ImageNet, 10% Pets and Flowers), and reports that run on the test split.
This command does the same with any recipe (configs/finetune.py sets the paper's grid,
config.lr_grid, and splits; the same command without init= sweeps the from-scratch
baseline):

  1. each rate trains in DIR/lr_<rate>, an ordinary vit_jax.main run directory evaluated
     on config.data.minival_split (it resumes, and predict / analyze read it);
  2. the rate with the best minival accuracy is chosen (minival only: no test
     evaluation has been made at that point);
  3. the chosen run is evaluated on config.data.eval_split, the test split;
  4. DIR/sweep.json (rate -> minival accuracy; chosen rate -> test accuracy) and
     DIR/sweep.png (minival accuracy against rate).

Re-running the command resumes: finished rates only re-evaluate, a killed one continues
from its last checkpoint. --print_commands prints one vit_jax.main command per rate, for
a cluster scheduler; once they have run, this command (without --print_commands) makes
the choice and the test evaluation. The multi-process flags are vit_jax.main's.
"""
from __future__ import annotations

import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from vit_jax import main as vit_main
from vit_jax.sweep import SweepError

_LRS = flags.DEFINE_list('lrs', None, 'Learning rates to sweep (default: the recipe\'s '
                         'config.lr_grid), e.g. 0.001,0.003,0.01,0.03.')
_PRINT = flags.DEFINE_bool('print_commands', False, 'Print one vit_jax.main command per '
                           'rate (for a scheduler) and exit.')


def config_overrides(argv: list[str]) -> list[str]:
  """The --config.<field>=<value> flags of this command line, to pass on unchanged."""
  return [a for a in argv if a.startswith('--config.') and '=' in a]


def main(argv) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  from vit_jax.sweep import run  # pylint: disable=import-outside-toplevel  (after flags)
  config, workdir = flags.FLAGS.config, flags.FLAGS.workdir
  spec = config_flags.get_config_filename(flags.FLAGS['config'])
  try:
    plan = run.prepare(config, workdir, lrs=_LRS.value, config_spec=spec)
  except SweepError as error:
    raise app.UsageError(str(error)) from None
  if _PRINT.value:
    print_commands(plan, spec, config_overrides(sys.argv))
    return
  vit_main.start_process()
  vit_main.run_or_stop(run.sweep, plan)


def print_commands(plan, spec: str, overrides: list[str]) -> None:
  from vit_jax.sweep import grid  # pylint: disable=import-outside-toplevel
  logging.info('Sweep %s: %s.', plan.workdir, plan.splits.describe())
  for rate in plan.rates:
    print(grid.command(spec, overrides, rate, plan.config.data.minival_split, plan.workdir))
  print(f'# then, to choose on minival and evaluate the choice on '
        f'{plan.config.data.eval_split!r}: the same finetune_sweep command without '
        '--print_commands')


if __name__ == '__main__':
  app.run(main)
