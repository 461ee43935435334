"""The learning rates of a sweep, and each rate's run: an ordinary vit_jax.main run.

The grid is --lrs when given, else the recipe's own config.lr_grid (configs/finetune.py:
the ViT paper's Table 4 "Base LR" grid for each dataset, swept with SGD and momentum 0.9,
Appendix B.1.1). Each rate trains in <DIR>/lr_<rate> with the recipe's config, its `lr`
set to the rate and its evaluation on minival, so each run resumes, can be inspected, and
can be launched alone by the command `command` prints.
"""
from __future__ import annotations

import copy
import math
import os
import shlex
from typing import Sequence

import ml_collections

from vit_jax.sweep import SweepError


def rates(flag_values: Sequence[str] | None, config: ml_collections.ConfigDict
          ) -> tuple[float, ...]:
  """--lrs if given, else config.lr_grid; each positive and finite, no repeats."""
  source = '--lrs' if flag_values else 'config.lr_grid'
  raw = list(flag_values) if flag_values else list(config.get('lr_grid') or ())
  if not raw:
    raise SweepError(
        'no learning rates to sweep: the recipe sets no config.lr_grid and --lrs is not '
        'given; pass e.g. --lrs=0.001,0.003,0.01,0.03 (the ViT paper\'s fine-tuning grid, '
        'Table 4)')
  values = []
  for item in raw:
    try:
      value = float(item)
    except (TypeError, ValueError):
      raise SweepError(f'{source}: {item!r} is not a number; give learning rates such as '
                       '0.001,0.003') from None
    if not math.isfinite(value) or value <= 0:
      raise SweepError(f'{source}: learning rate {item!r} is not positive; every rate of '
                       'the grid must be > 0, e.g. 0.001,0.003,0.01,0.03')
    values.append(value)
  repeated = sorted({v for v in values if values.count(v) > 1})
  if repeated:
    raise SweepError(f'{source}: {", ".join(f"{v:g}" for v in repeated)} given twice; '
                     'list each rate once')
  return tuple(sorted(values))


def run_name(rate: float) -> str:
  """lr_0.003: the run directory of one rate under the sweep's workdir."""
  return f'lr_{rate:g}'


def run_config(config: ml_collections.ConfigDict, rate: float,
               eval_split: str) -> ml_collections.ConfigDict:
  """The recipe at one rate, evaluated on `eval_split` (minival while sweeping)."""
  out = copy.deepcopy(config)
  out.lr = rate
  out.data.eval_split = eval_split
  return out


def command(config_spec: str, overrides: Sequence[str], rate: float, minival: str,
            workdir: str) -> str:
  """The vit_jax.main command line that trains rate `rate` of the sweep by itself.

  `overrides` are the sweep's own --config.<field>=<value> flags, passed on unchanged."""
  args = ['python', '-m', 'vit_jax.main', f'--config={config_spec}', *overrides,
          f'--config.lr={rate!r}', f'--config.data.eval_split={minival}',
          f'--workdir={os.path.join(workdir, run_name(rate))}']
  return ' '.join(shlex.quote(a) for a in args)
