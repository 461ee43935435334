"""Resuming a finished 24-step run with a changed config (tests/faults.py `change_*`).

A change the checkpoint cannot take is refused before anything is compiled, naming the
field old -> new (or the arrays) and the two ways on, and leaves every file of the
workdir as it was (sizes and mtimes compared); a change of scheduling is accepted,
logged, and trains on. Each case works on its own copy of the uninterrupted run.
"""
from __future__ import annotations

import os

from tests import fault_runs as fr

# 'classifier' is not a field of configs/testing.py's empty model_overrides, and
# ml_collections refuses new keys from the command line: a config file sets it.
GAP_CONFIG = '''"""configs/testing.py with classifier='gap': the same fields, no class token."""
from vit_jax.configs import testing


def get_config(arg=''):
  config = testing.get_config(arg)
  config.model_overrides.classifier = 'gap'
  return config
'''

# name -> (overrides, what the refusal must name; None = an accepted change).
CHANGES = {
    'model': (('--config.model=R+ViT-testing',),
              ('model "testing" -> "R+ViT-testing"',)),
    'image_size': (('--config.image_size=32',), ('image_size 16 -> 32',)),
    'classes': (('--config.data.dataset=vit_demo/downstream_tiny',),
                ('num_classes 100 -> 10',)),
    'optimizer': (('--config.optimizer=sgd',), ('optimizer "adam" -> "sgd"',)),
    'param_dtype': (('--config.param_dtype=bfloat16',),
                    ('param_dtype "float32" -> "bfloat16"',)),
    'tree': ((), ('arrays only in the checkpoint (', 'params/cls')),
    'stream': (('--config.seed=1',), ('this config changes seed: 0 -> 1',)),
    'total_steps': (('--config.total_steps=32',), None),
}
FIELDS = ('model', 'image_size', 'classes', 'optimizer', 'param_dtype')
# The tests make the five field changes in one resume (each field is classified on its
# own, and the refusal lists every one); the runner makes them one at a time.
CHANGES['fields'] = (sum((CHANGES[n][0] for n in FIELDS), ()),
                     sum((CHANGES[n][1] for n in FIELDS), ()))


def change(ctx: fr.Context, name: str) -> fr.Result:
  overrides, refusal = CHANGES[name]
  label = 'model_overrides.classifier=gap (tree only)' if name == 'tree' else ', '.join(
      o.replace('--config.', '') for o in overrides)
  r = fr.Result(f'Resume with changed {label}', injected=1, lost=0)
  workdir = fr.copy_workdir(ctx.baseline('standard'), ctx.workdir(f'change_{name}'))
  config = None
  if name == 'tree':
    config = os.path.join(ctx.root, 'testing_gap.py')
    with open(config, 'w') as f:
      f.write(GAP_CONFIG)
  before = fr.listing(workdir)
  run = ctx.run(workdir, *overrides, config=config)
  r.logs['resume'] = run.log
  r.facts['stopped'] = run.stopped
  if refusal is None:
    return _accepted(r, workdir, run)
  where = f'{workdir}/checkpoints/24'
  r.check('exit 1', run.rc == 1)
  r.check('stopped before compiling', not run.compiled)
  r.check('workdir untouched (files, sizes, mtimes)', fr.listing(workdir) == before)
  for text in refusal:
    r.check(f'refusal names {text}', text in run.stopped)
  if name == 'stream':  # the input pipeline's own check: a DatasetError (ValueError).
    r.check('a DatasetError traceback naming the checkpoint and the fix',
            f'DatasetError: cannot resume {where}: its input stream' in run.stopped
            and 'Traceback (most recent call last)' in run.log
            and 'config.init=<this workdir>' in run.stopped)
  else:
    r.check('one Stopped line with both ways on',
            run.stopped.startswith(f'Stopped: {where} cannot be resumed by this config: ')
            and 'Either train in a new workdir, or fine-tune from this run with '
            f'--config.init={workdir}' in run.stopped)
  r.saw = f'exit 1, "{_excerpt(run.stopped, refusal[0])}"'
  return r


def _accepted(r: fr.Result, workdir: str, run: fr.Run) -> fr.Result:
  line = f'Resuming {workdir}/checkpoints/24 with changed total_steps 24 -> 32 (accepted'
  r.check('exit 0', run.rc == 0)
  r.check('log: the accepted change', line in run.log)
  r.resumed = int(run.resumed_from == 24)
  r.check('resumed from 24', run.resumed_from == 24)
  r.facts['checkpoints'] = fr.checkpoint_steps(workdir)
  r.check('trained on to checkpoint 32', r.facts['checkpoints'][-1:] == [32])
  r.saw = 'exit 0, "Resuming ... with changed total_steps 24 -> 32 (accepted ...)"'
  return r


def _excerpt(line: str, key: str) -> str:
  """`key`'s clause of the refusal, shortened for the table."""
  start = line.find(key)
  if start < 0:
    return line[:90]
  head = line[start:start + 90]
  return f'...{head}...' if len(line) > start + 90 else f'...{head}'
