"""N SIGKILLs into one run (tests/faults.py `sigkill_random`): configs/testing.py with a
checkpoint every 4 updates, 24 updates (the tests) or 48 (the runner's 20 kills).

A seeded RNG picks each kill's moment before the child starts, so a seed names the same
schedule (where it lands in the child still depends on timing):
  step     a random 0-0.2 s after the child logs `step k/T` for a random k a few
           updates past the newest checkpoint (kills land in updates, evaluations and
           asynchronous saves: a checkpoint every 4 updates);
  save     --config.debug.sigkill_after_save_at_step=s: the child kills itself right
           after save s started, its arrays perhaps still being written;
  startup  a random 0-2 s after `Process 0 of 1`: in building, restoring or compiling.
After every kill every complete checkpoint is read back (all arrays and the meta), then
the same command restarts; after N kills a last restart runs to the end, whose
parameters must equal those of an uninterrupted run bit for bit.
"""
from __future__ import annotations

import random
import re
import signal
import time

from tests import fault_runs as fr

MODES, WEIGHTS = ('step', 'save', 'startup'), (6, 3, 1)
# Targets stay a few updates past the newest checkpoint, so that N = 20 kills spread over
# 48 updates, and never reach the last save (total - 4 at most) or the last 2 updates: a
# finished run would leave later kills only a finished run to hit.
MAX_AHEAD = 7
MAX_FAILED_RUNS = 3


def _schedule(rng: random.Random, latest: int, steps: int) -> tuple[str, int, float]:
  """(mode, target step, delay in s) of the next kill, given the newest checkpoint."""
  mode = rng.choices(MODES, WEIGHTS)[0]
  target = min(latest + rng.randint(1, MAX_AHEAD), steps - 2)
  delay = rng.uniform(0.0, 0.2)
  if mode == 'save':
    saves = range(latest + 4, min(latest + 8, steps - 4) + 1, 4)
    if not saves:
      return 'step', target, delay
    target = rng.choice(saves)
  if mode == 'startup':
    delay = rng.uniform(0.0, 2.0)
  return mode, target, delay


def _kill_once(ctx: fr.Context, workdir: str, config: tuple[str, ...], steps: int,
               schedule: tuple[str, int, float]) -> tuple[str, fr.Run]:
  """Starts the run, kills it as scheduled; (where the kill landed, the run)."""
  mode, target, delay = schedule
  overrides = list(config)
  if mode == 'save':
    overrides.append(f'--config.debug.sigkill_after_save_at_step={target}')
  proc, log_path = ctx.start(workdir, *overrides)
  if mode == 'step':
    later = '|'.join(str(s) for s in range(target, steps + 1))
    seen = fr.wait_for(proc, log_path, rf'\] step ({later})/{steps} \(')
  elif mode == 'startup':
    seen = fr.wait_for(proc, log_path, r'\] Process 0 of 1')
  else:
    seen = None  # the child kills itself.
  if seen is not None and proc.poll() is None:
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
  run = fr.finish(proc, log_path)
  return _landed(schedule, run), run


def _landed(schedule: tuple[str, int, float], run: fr.Run) -> str:
  """Where the kill landed, from the last lines the child logged."""
  mode, target, delay = schedule
  steps = [int(s) for s in re.findall(r'\] step (\d+)/\d+ \(', run.log)]
  if mode == 'save':
    return f'right after save {target} started'
  if not run.compiled:
    phase = 'building / restoring' if run.resumed_from is None else 'compiling'
    return f'{delay:.2f} s after start-up: {phase}'
  where = f'after step {steps[-1]}' if steps else 'before step 1'
  return f'{delay:.2f} s after "step {target}": {where}'


def random_kills(ctx: fr.Context, kills: int, seed: int, steps: int = fr.STANDARD_STEPS
                 ) -> fr.Result:
  baseline = {fr.STANDARD_STEPS: 'standard', fr.LONG_STEPS: 'long'}[steps]
  config = fr.FREQUENT if baseline == 'standard' else fr.LONG
  rng = random.Random(seed)
  r = fr.Result(f'SIGKILL at random moments ({kills} kills into one {steps}-step run, '
                'a checkpoint every 4)')
  workdir = ctx.workdir('kills')
  latest, failed, history, unreadable_steps = 0, 0, [], set()
  while r.injected < kills and failed < MAX_FAILED_RUNS:
    landed, run = _kill_once(ctx, workdir, config, steps, _schedule(rng, latest, steps))
    r.resumed += run.resumed_from is not None
    r.logs[f'run {len(history)}'] = run.log[-6000:]
    if run.rc != -signal.SIGKILL:  # it ended by itself: a restart that failed.
      failed += 1
      history.append({'run': len(history), 'rc': run.rc, 'stopped': run.stopped})
      continue
    r.injected += 1
    bad = fr.unreadable(workdir)
    unreadable_steps |= {step for step, _ in bad}
    saved = fr.checkpoint_steps(workdir)
    latest = max((s for s in saved if s not in dict(bad)), default=0)
    history.append({'run': len(history), 'kill': r.injected, 'moment': landed,
                    'resumed_from': run.resumed_from, 'checkpoints': saved,
                    'unreadable': bad, 'tmp_dirs': fr.tmp_checkpoints(workdir)})
  final = ctx.run(workdir, *config)
  r.logs['final'] = final.log
  r.resumed += final.resumed_from is not None
  r.lost = len(unreadable_steps) + failed
  r.facts.update(history=history, final_resumed_from=final.resumed_from,
                 unreadable_steps=sorted(unreadable_steps), failed_runs=failed)
  r.check(f'{kills} kills injected', r.injected == kills)
  r.check('every complete checkpoint read after every kill', not unreadable_steps)
  r.check('no restart failed', failed == 0)
  r.check('the last run resumes from the newest checkpoint',
          final.resumed_from == latest if latest else final.resumed_from is None)
  r.check('the last run finishes', final.rc == 0)
  if final.rc == 0:
    r.max_delta = fr.max_delta(workdir, ctx.baseline(baseline), steps)
    r.check('final params equal the uninterrupted run', r.max_delta == 0.0)
  r.saw = (f'exit -9 ({r.injected}x); a restart that got past restoring logs "Resumed '
           f'from ... at step k" ({r.resumed} of {len(history) + 1} runs)')
  return r
