"""Fault injection against real `python -m vit_jax.main` runs (issue 18): the cases.

Each case injects one fault into real CPU runs of configs/testing.py and returns a
Result: how often it was injected, how many runs resumed, how many checkpoints were
lost, the largest |param difference| from the uninterrupted run of the same config, what
the user saw, and named checks (the behaviour promised in vit_jax/resume.py, guards.py,
checkpoints/) with the facts behind them. tests/test_faults.py asserts them with small
numbers; experiments/faults/run.py prints them as a table.

  sigkill_random     N SIGKILLs into one run (steps, async saves, start-up): fault_kills.py
  sigterm_*          preemption during training / evaluation / a save
  *_array, both_*    a truncated or deleted array file in the newest checkpoint, or in all
  disk_full          ENOSPC in a save, in a tmpfs of a private mount namespace: fault_disk.py
  change_*           a resume with a changed config: refused naming old -> new, or accepted
  nan_loss           a NaN loss, then a restart without it
  corrupt_image      an undecodable file among a folder dataset's training images
  stale_config       config.json after a run that stopped before its first checkpoint
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import traceback
from typing import Callable

from tests import fault_changes
from tests import fault_disk
from tests import fault_kills
from tests import fault_runs as fr
from tests import image_folders
from tests import test_train
from vit_jax import inference


Result = fr.Result
resume_and_compare = fr.resume_and_compare


# ----------------------------------------------------------------------------------------
# Preemption.
# ----------------------------------------------------------------------------------------
def sigterm_train(ctx: fr.Context) -> Result:
  r = Result('SIGTERM during training (after update 10)', injected=1)
  source, first = ctx.preempted('at_10')
  workdir = fr.copy_workdir(source, ctx.workdir('sigterm_train'))
  r.logs['first'] = first.log
  r.check('exit 0', first.rc == 0)
  r.check('log: Preempted at step 10', 'Preempted at step 10' in first.log)
  r.check('checkpoints 8 and 10', fr.checkpoint_steps(workdir) == [8, 10])
  r.saw = 'exit 0, "Preempted at step 10: checkpoint saved"'
  resume_and_compare(ctx, r, workdir, expect_from=10)
  return r


def sigterm_eval(ctx: fr.Context) -> Result:
  r = Result('SIGTERM during evaluation (step 12, after its 1st batch)', injected=1)
  workdir, small_eval = ctx.workdir('sigterm_eval'), '--config.eval_batch_size=16'
  first = ctx.run(workdir, small_eval, '--config.debug.sigterm_during_eval_at_step=12')
  r.logs['first'] = first.log
  r.check('exit 0', first.rc == 0)
  r.check('log: evaluation interrupted, no metrics written',
          'Evaluation at step 12 interrupted by preemption: no metrics written' in first.log)
  r.check('no eval step 12 line before the stop', 'eval step 12:' not in first.log)
  r.check('checkpoints 8 and 12', fr.checkpoint_steps(workdir) == [8, 12])
  r.facts['eval_pending'] = fr.meta(workdir, 12).get('eval_pending')
  r.check('checkpoint 12 meta eval_pending: true', r.facts['eval_pending'] is True)
  run = resume_and_compare(ctx, r, workdir, small_eval, expect_from=12)
  r.check('the resumed run evaluates step 12 first', 'eval step 12:' in run.log)
  steps = [s for s, _ in test_train._event_values(workdir)['eval_accuracy']]  # pylint: disable=protected-access
  r.facts['eval_accuracy_steps'] = steps
  r.check('TensorBoard eval_accuracy at 12 and 24, once each', steps == [12, 24])
  r.saw = 'exit 0, "Evaluation at step 12 interrupted"; eval 12 done on resume'
  return r


def sigterm_save(ctx: fr.Context) -> Result:
  r = Result('SIGTERM during a save (right after save 8 started)', injected=1)
  source, first = ctx.preempted('in_save_8')
  workdir = fr.copy_workdir(source, ctx.workdir('sigterm_save'))
  r.logs['first'] = first.log
  r.check('exit 0', first.rc == 0)
  # train.py: a notice during a save stops the run at that step, without another update.
  r.check('log: Preempted at step 8', 'Preempted at step 8' in first.log)
  r.facts['checkpoints'] = fr.checkpoint_steps(workdir)
  r.check('checkpoint 8 complete and the last', r.facts['checkpoints'] == [8])
  r.saw = 'exit 0, "Preempted at step 8: checkpoint saved"'
  resume_and_compare(ctx, r, workdir, expect_from=8)
  return r


# ----------------------------------------------------------------------------------------
# Unreadable checkpoints.
# ----------------------------------------------------------------------------------------
def _corrupted(ctx: fr.Context, name: str, damage: Callable[[str], None],
               steps: tuple[int, ...]) -> tuple[str, dict]:
  source, first = ctx.preempted('at_10')
  if first.rc != 0:
    raise RuntimeError(f'preempted run exited {first.rc}:\n{first.log[-3000:]}')
  workdir = fr.copy_workdir(source, ctx.workdir(name))
  for step in steps:
    damage(fr.largest_array_file(workdir, step))
  return workdir, fr.listing(workdir)


def _walks_back(ctx: fr.Context, fault: str, damage: Callable[[str], None]) -> Result:
  r = Result(f'{fault} array file in newest checkpoint (10 of 8, 10)', injected=1)
  workdir, _ = _corrupted(ctx, fault.split()[0].lower(), damage, (10,))
  run = resume_and_compare(ctx, r, workdir, expect_from=8)
  aside = os.path.join(workdir, 'checkpoints_unreadable', '10')
  r.check('log: checkpoint 10 cannot be read; moved aside; resuming from 8',
          'Checkpoint 10 cannot be read (' in run.log and
          f'moved it to {aside}. Resuming from checkpoint 8 instead.' in run.log)
  r.check('checkpoint 10 kept in checkpoints_unreadable/10', os.path.isdir(aside))
  r.lost = 1  # checkpoint 10 itself, by construction; the run resumes from 8.
  r.saw = '"Checkpoint 10 cannot be read (...); moved it to checkpoints_unreadable/10"'
  return r


def truncated_array(ctx: fr.Context) -> Result:
  return _walks_back(ctx, 'Truncated', fr.truncate)


def deleted_array(ctx: fr.Context) -> Result:
  return _walks_back(ctx, 'Deleted', os.remove)


def both_unreadable(ctx: fr.Context) -> Result:
  r = Result('Truncated array files in both checkpoints (8, 10)', injected=2)
  workdir, before = _corrupted(ctx, 'both', fr.truncate, (10, 8))
  run = ctx.run(workdir)
  r.logs['restart'] = run.log
  r.check('exit 1', run.rc == 1)
  r.facts['stopped'] = run.stopped
  r.check('names both checkpoints and says nothing moved',
          run.stopped.startswith('Stopped: none of the 2 complete checkpoints in ')
          and ' can be read: 10: ' in run.stopped and '; 8: ' in run.stopped
          and 'Nothing was moved or deleted.' in run.stopped)
  r.check('stopped before compiling', not run.compiled)
  r.check('workdir untouched', fr.listing(workdir) == before)
  r.lost = 2
  r.saw = 'exit 1, "none of the 2 complete checkpoints ... can be read: 10: ...; 8: ..."'
  return r


# ----------------------------------------------------------------------------------------
# NaN, data, config.json.
# ----------------------------------------------------------------------------------------
def nan_loss(ctx: fr.Context) -> Result:
  r = Result('NaN loss at step 5 (checkpoint every 4)', injected=1)
  workdir = ctx.workdir('nan_loss')
  first = ctx.run(workdir, *fr.FREQUENT, '--config.debug.nan_loss_at_step=5')
  r.logs['first'] = first.log
  r.facts['stopped'] = first.stopped
  r.check('exit 1', first.rc == 1)
  r.check('names the step and the last good checkpoint',
          first.stopped.startswith('Stopped: loss is nan at step 5; ') and
          'The last good checkpoint is step 4: ' in first.stopped)
  r.check('nothing saved after step 4', fr.checkpoint_steps(workdir) == [4])
  r.saw = 'exit 1, "Stopped: loss is nan at step 5; ... last good checkpoint is step 4"'
  resume_and_compare(ctx, r, workdir, *fr.FREQUENT, expect_from=4)
  return r


def _hundred_class_folder(root: str) -> str:
  """Split folders with the demo's 100 classes, so the run reuses the standard run's
  compiled steps: train holds one image in each of the first 96 classes (24 updates of
  32 are exactly 8 epochs of 96), val one in each of the first 50. Returns the path of
  the train image replaced by bytes that are no image."""
  for label in range(100):
    name = f'class_{label:03d}'
    os.makedirs(os.path.join(root, 'train', name))
    for split, count in (('train', 96), ('val', 50)):
      if label < count:
        image_folders.write_jpeg(os.path.join(root, split, name, f'{split}.jpg'),
                                 image_folders.class_image(label, int(split == 'val')))
  bad = os.path.join(root, 'train', 'class_007', 'train.jpg')
  with open(bad, 'wb') as f:
    f.write(b'\xff\xd8 not really a jpeg')
  return bad


def corrupt_image(ctx: fr.Context) -> Result:
  r = Result('Corrupt image among 96 training files (folder dataset)', injected=1)
  root = os.path.join(ctx.root, 'corrupt_images')
  bad = _hundred_class_folder(root)
  workdir = ctx.workdir('corrupt_image')
  run = ctx.run(workdir, f'--config.data.dataset={root}', '--config.data.eval_split=val')
  r.logs['run'] = run.log
  r.check('exit 0', run.rc == 0)
  r.check('log names the file', f'cannot read or decode {bad}' in run.log)
  events = test_train._event_values(workdir)  # pylint: disable=protected-access
  r.facts['data_errors'] = sum(v for _, v in events.get('data_errors', []))
  r.check('data_errors counts its 8 draws (8 epochs)', r.facts['data_errors'] == 8)
  r.facts['eval_examples'] = [v for _, v in events.get('eval_examples', [])]
  r.check('trained to the end', fr.checkpoint_steps(workdir)[-1:] == [fr.STANDARD_STEPS])
  r.saw = (f'run completes; "cannot read or decode .../{os.path.basename(bad)}"; '
           f'data_errors {r.facts["data_errors"]:g}')
  return r


def stale_config(ctx: fr.Context) -> Result:
  """A run killed before its first checkpoint (after config.json was written, while it
  compiles), then the same workdir with an edited config (32 updates, a checkpoint every
  8, stopped by a SIGTERM after update 1): config.json must describe the second run.
  (32 updates: the program change_total_steps resumes with, compiled once.)"""
  r = Result('Killed before the 1st checkpoint, re-run with edited config', injected=1)
  workdir = ctx.workdir('stale_config')
  config_json = os.path.join(workdir, 'config.json')
  proc, log_path = ctx.start(workdir, *fr.LONG)
  written = fr.wait_until(proc, lambda: os.path.exists(config_json))
  proc.kill()
  first = fr.finish(proc, log_path)
  r.logs['first'] = first.log
  r.check('first run killed with config.json and no checkpoint',
          written and first.rc == -9 and fr.checkpoint_steps(workdir) == [])
  with open(config_json) as f:
    r.facts['first config.json total_steps'] = json.load(f)['total_steps']
  again = ctx.run(workdir, '--config.total_steps=32', '--config.debug.sigterm_at_step=1')
  r.logs['again'] = again.log
  r.check('re-run exits 0 with checkpoint 1',
          again.rc == 0 and fr.checkpoint_steps(workdir) == [1])
  with open(config_json) as f:
    config = json.load(f)
  r.facts['config.json'] = {'total_steps': config['total_steps'],
                            'checkpoint_every_steps': config['checkpoint_every_steps']}
  r.check('config.json is the re-run config',
          (config['total_steps'], config['checkpoint_every_steps'],
           config['debug']['sigterm_at_step']) == (32, 8, 1))
  r.check('read_run_config agrees',
          inference.read_run_config(workdir)['total_steps'] == 32)
  r.saw = 'config.json = the edited config (total_steps 48 -> 32, checkpoint every 4 -> 8)'
  return r


# ----------------------------------------------------------------------------------------
# All of them.
# ----------------------------------------------------------------------------------------
def cases(kills: int, seed: int, kill_steps: int = fr.STANDARD_STEPS,
          each_field: bool = True) -> dict[str, Callable[[fr.Context], Result]]:
  """name -> case, in the order they are started. The first two compile programs of
  their own while the standard baseline compiles; stale_config compiles the 32-step
  program that change_total_steps then finds in the cache."""
  fields = list(fault_changes.FIELDS) if each_field else ['fields']
  changes = fields + ['tree', 'stream', 'total_steps']
  return {
      'nan_loss': nan_loss, 'stale_config': stale_config,
      'sigkill_random': lambda ctx: fault_kills.random_kills(ctx, kills, seed, kill_steps),
      'sigterm_train': sigterm_train, 'sigterm_eval': sigterm_eval,
      'sigterm_save': sigterm_save, 'disk_full': fault_disk.disk_full,
      'truncated_array': truncated_array, 'deleted_array': deleted_array,
      'both_unreadable': both_unreadable, 'corrupt_image': corrupt_image,
      **{f'change_{name}': (lambda ctx, name=name: fault_changes.change(ctx, name))
         for name in changes},
  }


def run_case(ctx: fr.Context, name: str, case) -> Result:
  try:
    return case(ctx)
  except Exception:  # pylint: disable=broad-except
    return Result(name, error=traceback.format_exc()[-4000:])


def run_all(ctx: fr.Context, kills: int = 3, seed: int = 0, workers: int = 2,
            only: tuple[str, ...] = (), kill_steps: int = fr.STANDARD_STEPS,
            each_field: bool = True) -> dict[str, Result]:
  """Every case (or `only` those), `workers` children at a time; the baselines start
  first (the cases compare with them at their end)."""
  chosen = {k: v for k, v in cases(kills, seed, kill_steps, each_field).items()
            if not only or k in only}
  baselines = ['standard'] + (['long'] if kill_steps == fr.LONG_STEPS and
                              'sigkill_random' in chosen else [])
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    for name in baselines:
      pool.submit(ctx.baseline, name)
    futures = {name: pool.submit(run_case, ctx, name, case) for name, case in chosen.items()}
    return {name: future.result() for name, future in futures.items()}


def table(results: dict[str, Result]) -> str:
  """The markdown table of the results."""
  lines = ['| fault | times injected | runs that resumed | checkpoints lost | '
           'max \\|Δparam\\| vs uninterrupted | what the user saw |',
           '|---|---|---|---|---|---|']
  for r in results.values():
    delta = '-' if r.max_delta is None else f'{r.max_delta:.3g}'
    saw = r.skipped or r.saw
    if r.failures:  # one line: the check names, or an error's last line.
      failed = [f.strip().splitlines()[-1][:120] for f in r.failures]
      saw += f' **FAILED: {"; ".join(failed)}**'
    lines.append(f'| {r.fault} | {r.injected} | {r.resumed} | '
                 f'{"-" if r.lost is None else r.lost} | {delta} | {saw} |')
  return '\n'.join(lines)
