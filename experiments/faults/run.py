"""Every fault-injection case of tests/faults.py, with N random SIGKILLs (issue 18).

  PYTHONPATH=. python experiments/faults/run.py --kills=20 --seed=0 \\
      --out=experiments/faults/results.json

Builds the tiny demo data and a fresh compile cache in a scratch directory, runs the
cases two children at a time (real `python -m vit_jax.main` runs on CPU, configs/testing.py),
prints the markdown table and writes the JSON (every case's checks and facts; the kill
schedule with where each kill landed). Exit status 1 when a check failed.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time

# Before jax is imported (by tests.fault_runs): the parent only reads checkpoints.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import logging  # noqa: E402  pylint: disable=wrong-import-position

from tests import fault_runs  # noqa: E402  pylint: disable=wrong-import-position
from tests import faults  # noqa: E402  pylint: disable=wrong-import-position


def cpu() -> dict:
  """The CPU model and its AVX flags, from /proc/cpuinfo."""
  model, flags = '', []
  with open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name') and not model:
        model = line.split(':', 1)[1].strip()
      if line.startswith('flags') and not flags:
        flags = sorted(x for x in line.split(':', 1)[1].split() if x.startswith('avx'))
  return {'model': model, 'avx_flags': flags, 'cores': os.cpu_count()}


def parse_args() -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kills', type=int, default=20, help='SIGKILLs into the long run')
  parser.add_argument('--seed', type=int, default=0, help='seed of the kill schedule')
  parser.add_argument('--kill_steps', type=int, default=fault_runs.LONG_STEPS,
                      choices=(fault_runs.STANDARD_STEPS, fault_runs.LONG_STEPS),
                      help='updates of the killed run (the tests use 24)')
  parser.add_argument('--out', default='experiments/faults/results.json')
  parser.add_argument('--workers', type=int, default=2, help='children at a time')
  parser.add_argument('--only', default='', help='comma-separated case names')
  parser.add_argument('--keep', action='store_true', help='keep the scratch directory')
  return parser.parse_args()


def main() -> int:
  args = parse_args()
  logging.set_verbosity(logging.ERROR)  # orbax's read-only notes, from reading checkpoints.
  scratch = tempfile.mkdtemp(prefix='vit_faults_')
  started = time.time()
  data_dir = fault_runs.build_demo_data(os.path.join(scratch, 'tfds'))
  ctx = fault_runs.Context(data_dir, os.path.join(scratch, 'jax_cache'),
                           os.path.join(scratch, 'runs'))
  only = tuple(n for n in args.only.split(',') if n)
  results = faults.run_all(ctx, kills=args.kills, seed=args.seed, workers=args.workers,
                           only=only, kill_steps=args.kill_steps)
  wall = time.time() - started
  print(faults.table(results))
  print(f'\n{wall:.0f} s wall, {args.workers} children at a time; scratch {scratch}')
  record = {'command': ' '.join(sys.argv), 'kills': args.kills, 'seed': args.seed,
            'kill_steps': args.kill_steps,
            'cpu': cpu(), 'date': datetime.datetime.now().isoformat(timespec='seconds'),
            'wall_seconds': round(wall, 1), 'workers': args.workers,
            'results': {name: r.to_json() for name, r in results.items()}}
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(record, f, indent=1)
  failed = [r for r in results.values() if r.failures]
  for r in failed:
    print('\n' + r.explain(), file=sys.stderr)
  if not args.keep and not failed:
    shutil.rmtree(scratch, ignore_errors=True)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
