"""A checkpoint save that runs out of disk space (tests/faults.py `disk_full`).

The workdir lives on a small tmpfs mounted inside a private mount namespace (unshare -m:
root without touching the host's mounts), so every phase runs in one driver process
under unshare, because the tmpfs vanishes with the namespace:

  1. a copy of a run SIGTERMed during its save of 8 (stopped there, checkpoint 8 only:
     the sigterm_save case's first run) onto the tmpfs;
  2. a filler file leaves half a checkpoint free;
  3. the restart must stop at its save of 16 with the DiskFull message (exit 1);
     checkpoint 8 must still read, the partial save stays as <step>.orbax-checkpoint-tmp;
  4. the filler is deleted; the restart resumes from 8, removes the partial save, and
     ends with the uninterrupted run's parameters.

The tmpfs is sized from the measured size of one checkpoint of the uninterrupted run
(three checkpoints, TensorBoard events and the partial save must fit). The compile cache
and the data stay outside it. The driver: `python -m tests.fault_disk SPEC.json`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

from tests import fault_runs as fr
from vit_jax.checkpoints import disk_full as disk_full_lib

MIB = 1 << 20


def disk_full(ctx: fr.Context) -> fr.Result:
  """Runs the driver under unshare; skipped (with the refusal's text) where unshare or
  mount is not allowed."""
  r = fr.Result('Disk full at save 16 (tmpfs, half a checkpoint free)', injected=1)
  baseline = ctx.baseline('standard')
  source, first = ctx.preempted('in_save_8')
  if first.rc != 0 or fr.checkpoint_steps(source) != [8]:
    raise RuntimeError(f'preempted run: exit {first.rc}, checkpoints '
                       f'{fr.checkpoint_steps(source)}:\n{first.log[-3000:]}')
  root = os.path.join(ctx.root, 'disk_full')
  os.makedirs(os.path.join(root, 'tmpfs'))
  spec = {'data_dir': ctx.data_dir, 'cache_dir': ctx.cache_dir, 'root': root,
          'baseline': baseline, 'source': source, 'out': os.path.join(root, 'result.json'),
          'checkpoint_bytes': disk_full_lib.directory_bytes(
              os.path.join(baseline, 'checkpoints', '8'))}
  spec_path = os.path.join(root, 'spec.json')
  with open(spec_path, 'w') as f:
    json.dump(spec, f)
  proc = subprocess.run(['unshare', '-m', '--propagation', 'private', sys.executable,
                         '-m', 'tests.fault_disk', spec_path], cwd=fr.REPO,
                        env=fr.test_train.main_env(ctx.cache_dir), capture_output=True, text=True, timeout=3 * fr.TIMEOUT)
  if not os.path.exists(spec['out']):
    text = (proc.stderr.strip().splitlines() or ['(no output)'])[-1]
    if proc.returncode != 0 and 'unshare' in text:
      r.skipped = f'unshare refused: {text}'
      return r
    raise RuntimeError(f'driver exited {proc.returncode}:\n{proc.stderr[-4000:]}')
  with open(spec['out']) as f:
    out = json.load(f)
  if 'refused' in out:
    r.skipped = f'mount refused: {out["refused"]}'
    return r
  for key in ('checks', 'facts', 'logs'):
    getattr(r, key).update(out[key])
  r.resumed, r.max_delta, r.lost = out['resumed'], out['max_delta'], out['lost']
  free, needs = (f'{r.facts[k]:,}' if k in r.facts else '?'
                 for k in ('free_bytes', 'checkpoint_bytes'))
  r.saw = (f'exit 1, "Stopped: a checkpoint save in ... ran out of disk space ({free} '
           f'bytes free, a checkpoint needs about {needs} bytes (checkpoint 8 on disk)). '
           'Checkpoint 8 is complete and the next start resumes from it; ..."')
  return r


def _fill(mount: str, leave: int) -> str:
  """A file of zeros that leaves `leave` bytes free on the tmpfs."""
  path = os.path.join(mount, 'filler')
  todo = shutil.disk_usage(mount).free - leave
  with open(path, 'wb') as f:
    while todo > 0:
      chunk = min(todo, MIB)
      f.write(b'\0' * chunk)
      todo -= chunk
  return path


def phases(ctx: fr.Context, mount: str, spec: dict) -> dict:
  """The four phases above; {'checks', 'facts', 'logs', 'resumed', 'max_delta', 'lost'}."""
  r = fr.Result('disk_full')
  workdir = fr.copy_workdir(spec['source'], os.path.join(mount, 'run'))
  checkpoint_bytes = spec['checkpoint_bytes']
  filler = _fill(mount, leave=checkpoint_bytes // 2)
  full = ctx.run(workdir)
  r.logs['full'] = full.log
  r.facts['stopped'] = full.stopped
  r.check('exit 1', full.rc == 1)
  numbers = re.search(r'\(([\d,]+) bytes free, a checkpoint needs about ([\d,]+) bytes '
                      r'\(checkpoint 8 on disk\)\)', full.stopped)
  r.check('message: where, free bytes, checkpoint size, what survived', numbers and
          full.stopped.startswith(f'Stopped: a checkpoint save in {workdir}/checkpoints ran '
                                  'out of disk space (') and
          'Checkpoint 8 is complete and the next start resumes from it' in full.stopped)
  if numbers:
    free, needs = (int(n.replace(',', '')) for n in numbers.groups())
    r.facts.update(free_bytes=free, checkpoint_bytes=needs, measured=checkpoint_bytes)
    r.check('free < one checkpoint', free < needs)
  r.facts['after_full'] = {'checkpoints': fr.checkpoint_steps(workdir),
                           'tmp': fr.tmp_checkpoints(workdir)}
  r.check('checkpoint 8 the only complete one', fr.checkpoint_steps(workdir) == [8])
  r.check('the partial save is a tmp dir',
          any(n.startswith('16.orbax-checkpoint-tmp') for n in fr.tmp_checkpoints(workdir)))
  r.check('checkpoint 8 still reads', not fr.unreadable(workdir))
  os.remove(filler)
  last = ctx.run(workdir)
  r.logs['last'] = last.log
  r.check('restart with space: exit 0, resumed from 8',
          last.rc == 0 and last.resumed_from == 8)
  r.check('the partial save was removed', fr.tmp_checkpoints(workdir) == [])
  r.facts['final_checkpoints'] = fr.checkpoint_steps(workdir)
  delta = (fr.max_delta(workdir, spec['baseline'], fr.STANDARD_STEPS) if last.rc == 0
           else None)
  r.check('final params equal the uninterrupted run', delta == 0.0)
  return {'checks': r.checks, 'facts': r.facts, 'logs': r.logs, 'max_delta': delta,
          'resumed': int(last.resumed_from is not None) + int(full.resumed_from is not None),
          'lost': len(fr.unreadable(workdir))}


def main(spec_path: str) -> None:
  with open(spec_path) as f:
    spec = json.load(f)
  mount = os.path.join(spec['root'], 'tmpfs')
  # 3 checkpoints of the finished run, the partial save, events and page rounding.
  size = 4 * spec['checkpoint_bytes'] + MIB
  mounted = subprocess.run(['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', mount],
                           capture_output=True, text=True)
  if mounted.returncode != 0:
    out = {'refused': mounted.stderr.strip() or f'mount exited {mounted.returncode}'}
  else:
    ctx = fr.Context(spec['data_dir'], spec['cache_dir'], spec['root'])
    out = phases(ctx, mount, spec)
    out['facts']['tmpfs_bytes'] = size
  with open(spec['out'], 'w') as f:
    json.dump(out, f)


if __name__ == '__main__':
  main(sys.argv[1])
