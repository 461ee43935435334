"""Issue 18, multi-host preemption: SIGTERM to ONE process of a 2-process run, noticed
during an evaluation (tests/test_multihost.py launches the `python -m vit_jax.main`
processes; tests/test_faults_multihost.py asserts; experiments/faults/run.py can add
`two_process_sigterm_row` to its table).

  preempted  2 processes x 4 CPU devices, SGD, 8 steps, eval at 4 and 8 (7 batches of 8),
             checkpoint at 8. Process 1 alone SIGTERMs itself after the first batch of
             evaluation 4 (config.debug.sigterm_during_eval_at_step, signal_process).
             JAX's preemption sync manager (started by jax.distributed.initialize)
             notices it and makes both processes stop at the same
             `guards.Preemption.reached()` call inside that evaluation. Both abandon it
             (nothing written), save checkpoint 4 with meta eval_pending, exit 0.
  resumed    the same workdir as 1 process x 8 devices (elastic resume): the owed
             evaluation at step 4 runs first, then steps 5..8.
  reference  1 process x 8 devices, uninterrupted, the same config: the resumed run ends
             with its parameters (cross-topology float summation noise, ~3e-8).

JAX's SIGTERM notifier polls a flag once a second
(xla/tsl/distributed_runtime/preemption/preemption_notifier.cc, kListenInterval), so a
notice reaches the sync point 0..1 s after the signal, and the 6 remaining eval batches
take ~0.1 s: without help the evaluation would finish first (seen: metrics written,
'Preempted at step 6'). So the debug hook (guards.debug_in_eval) waits 1.5 s after
sending the signal in multi-process runs; the other process meanwhile blocks in the next
eval batch's collective, and both stop after batch 2.

The children run with JAX_LOGGING_LEVEL=WARNING, so that JAX's C++ notifier line
('SIGTERM caught at ...') shows which process got the signal; guards.Preemption installs
no Python handler in multi-process runs ('SIGTERM received' is 1-process only).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import re

import jax
import numpy as np

from tests import test_multihost as mh
from vit_jax.checkpoints import training

STEPS, EVAL_STEP, PROCESSES = 8, 4, 2
SIGNALLED = 1  # the process that gets SIGTERM; process 0 only hears of it through JAX.
EVAL_BATCHES = 7  # 50 test images of vit_demo/upstream_tiny, 8 per batch (1 per device)
ARGS = mh.overrides(total_steps=STEPS, log_every_steps=4, eval_every_steps=EVAL_STEP,
                    checkpoint_every_steps=STEPS, eval_batch_size=8)
SIGNAL = [f'--config.debug.sigterm_during_eval_at_step={EVAL_STEP}',
          f'--config.debug.signal_process={SIGNALLED}']
INTERRUPTED = (f'Evaluation at step {EVAL_STEP} interrupted by preemption: no metrics '
               'written; the checkpoint owes it to the next start.')
PYTHON_HANDLER = 'SIGTERM received'  # guards.Preemption._handler: 1-process runs only.
JAX_NOTIFIER = 'SIGTERM caught at'  # JAX's C++ notifier, at WARNING.
CHILD_ENV = {'JAX_LOGGING_LEVEL': 'WARNING'}  # C++ warnings: main_env hides them.


@dataclasses.dataclass
class Case:
  preempted: mh.Run
  resumed: mh.Run
  reference: mh.Run


@contextlib.contextmanager
def _child_env(extra: dict[str, str]):
  """os.environ plus `extra` while the runs start (test_train.main_env copies it)."""
  saved = {k: os.environ.get(k) for k in extra}
  os.environ.update(extra)
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k, None)
      else:
        os.environ[k] = v


def run_case(tmp: pathlib.Path, data_dir: str,
             cache_dir: pathlib.Path | None = None) -> Case:
  """Runs the three (preempted and reference at once, then resumed). `data_dir`: a tfds
  data_dir holding vit_demo/upstream_tiny (tests/conftest.py: demo_data_dir);
  `cache_dir`: a persistent compilation cache for the 1-process runs."""
  tmp = pathlib.Path(tmp)
  workdir = tmp / 'preempted'
  case = Case(
      preempted=mh.Run('preempted_2x4', workdir, tmp, data_dir, ARGS + SIGNAL,
                       processes=PROCESSES),
      resumed=mh.Run('resumed_1x8', workdir, tmp, data_dir, ARGS, cache_dir=cache_dir),
      reference=mh.Run('reference_1x8', tmp / 'reference', tmp, data_dir, ARGS,
                       cache_dir=cache_dir))
  with _child_env(CHILD_ENV):
    mh.run_all([case.preempted, case.reference, case.resumed],
               after={case.resumed.name: case.preempted.name})
  return case


# ----------------------------------------------------------------------------------------
# What the runs left: logs, checkpoints, TensorBoard events.
# ----------------------------------------------------------------------------------------
def eval_steps(log: str) -> list[int]:
  """Steps of the 'eval step N: accuracy ...' lines of a log, in order."""
  return [int(s) for s in re.findall(r'\] eval step (\d+): accuracy ', log)]


def preempted_at(log: str) -> int | None:
  found = re.findall(r'\] Preempted at step (\d+): checkpoint saved', log)
  return int(found[-1]) if found else None


def resumed_from(log: str) -> int | None:
  found = re.search(r'\] Resumed from \S+ at step (\d+)\.', log)
  return int(found.group(1)) if found else None


def meta(workdir: pathlib.Path, step: int) -> dict:
  """Checkpoint `step`'s meta item: orbax's JsonSave writes it to meta/metadata."""
  path = pathlib.Path(training.checkpoint_dir(str(workdir))) / str(step) / 'meta'
  return json.loads((path / 'metadata').read_text())


def events_by_pid(workdir: pathlib.Path, pid: int) -> dict[str, list[tuple[int, float]]]:
  """{tag: [(step, value)]} of the scalars in the event files process `pid` wrote
  (tf names them events.out.tfevents.<time>.<host>.<pid>.<n>.v2)."""
  import tensorflow as tf  # only for reading event files.
  tags = {}
  for path in sorted(workdir.glob(f'events.out.tfevents.*.{pid}.*')):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'scalars':
          tags.setdefault(value.tag, []).append(
              (event.step, float(tf.make_ndarray(value.tensor))))
  return tags


def eval_at(run: mh.Run, step: int) -> tuple[float, float] | None:
  """(eval_accuracy, eval_loss) that 1-process `run` wrote to TensorBoard at `step`."""
  tags = events_by_pid(run.workdir, run.procs[0].pid)
  accuracy = dict(tags.get('eval_accuracy', [])).get(step)
  return None if accuracy is None else (accuracy, dict(tags['eval_loss'])[step])


def max_dparam(expected: dict, got: dict) -> float:
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  return max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
             for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(got)))


def facts(case: Case) -> dict:
  """What the three runs did, as plain values (raises with the logs if one did not exit
  as expected)."""
  logs, resumed_log = case.preempted.check(), case.resumed.check()[0]
  case.reference.check()
  left = case.preempted.checkpoints_left
  pids = [p.pid for p in case.preempted.procs]
  events = events_by_pid(case.preempted.workdir, pids[0])
  step_line = re.search(rf'\] step {STEPS}/{STEPS} ', resumed_log)
  owed = re.search(rf'\] eval step {EVAL_STEP}: ', resumed_log)
  return {
      'exit_codes': case.preempted.codes,
      'interrupted': [INTERRUPTED in log for log in logs],
      'preempted_at': [preempted_at(log) for log in logs],
      'eval_lines': [eval_steps(log) for log in logs],
      'python_handler': [PYTHON_HANDLER in log for log in logs],
      'jax_notifier': [JAX_NOTIFIER in log for log in logs],
      'checkpoints_left': left,
      'eval_pending': meta(case.preempted.workdir, left[-1]).get('eval_pending') if left
                      else None,
      'event_files': [len(list(case.preempted.workdir.glob(f'events.out.tfevents.*.{p}.*')))
                      for p in pids],
      'event_eval_steps': [s for s, _ in events.get('eval_accuracy', [])],
      'event_train_steps': [s for s, _ in events.get('train_loss', [])],
      'resumed_from': resumed_from(resumed_log),
      'resumed_evals': eval_steps(resumed_log),
      'owed_eval_first': bool(owed and step_line and owed.start() < step_line.start()),
      'resumed_checkpoints': case.resumed.checkpoints_left,
      # The owed evaluation (of checkpoint 4, trained 2 x 4) and the reference's at 4.
      'owed_eval': eval_at(case.resumed, EVAL_STEP),
      'reference_eval': eval_at(case.reference, EVAL_STEP),
      'max_dparam': max_dparam(training.read_arrays(str(case.reference.workdir), STEPS),
                               training.read_arrays(str(case.resumed.workdir), STEPS)),
  }


# ----------------------------------------------------------------------------------------
# The fault table's row.
# ----------------------------------------------------------------------------------------
EXPECTED = {  # fact -> the value issue 18 promises
    'exit_codes': [0] * PROCESSES,
    'interrupted': [True] * PROCESSES,
    'preempted_at': [EVAL_STEP] * PROCESSES,
    'eval_lines': [[]] * PROCESSES,
    'python_handler': [False] * PROCESSES,
    'jax_notifier': [i == SIGNALLED for i in range(PROCESSES)],
    'checkpoints_left': [EVAL_STEP],
    'eval_pending': True,
    'event_files': [1] + [0] * (PROCESSES - 1),
    'event_eval_steps': [],
    'event_train_steps': [EVAL_STEP],
    'resumed_from': EVAL_STEP,
    'resumed_evals': [EVAL_STEP, STEPS],
    'owed_eval_first': True,
    'resumed_checkpoints': [EVAL_STEP, STEPS],
}
MAX_DPARAM = 1e-7  # vs the uninterrupted 1 x 8 run: float summation noise is ~3e-8


def same_eval(got, want) -> bool:
  """The same accuracy (a count of 50) and loss to float noise."""
  return (got is not None and want is not None and got[0] == want[0]
          and abs(got[1] - want[1]) <= 1e-5 * abs(want[1]))


def row(case: Case) -> dict:
  """{fault, injected, resumed, lost, max_dparam, saw, checks} (tests/faults.py's
  columns: times injected, runs that resumed, checkpoints lost)."""
  f = facts(case)
  checks = {name: f[name] == want for name, want in EXPECTED.items()}
  checks['max_dparam'] = f['max_dparam'] <= MAX_DPARAM
  checks['owed_eval'] = same_eval(f['owed_eval'], f['reference_eval'])
  return {
      'fault': f'SIGTERM to process {SIGNALLED} of {PROCESSES} during evaluation '
               f'{EVAL_STEP} (after its first batch)',
      'injected': 1,
      'resumed': int(f['resumed_from'] is not None),
      'lost': int(f['resumed_from'] is None),  # the run could not resume
      'max_dparam': f['max_dparam'],
      'saw': (f'exit codes {f["exit_codes"]}; both: "Evaluation at step {EVAL_STEP} '
              f'interrupted", "Preempted at step {f["preempted_at"]}"; checkpoints '
              f'{f["checkpoints_left"]} eval_pending {f["eval_pending"]}; resumed as 1x8: '
              f'evals {f["resumed_evals"]}'),
      'checks': checks,
  }


def two_process_sigterm_row(tmp: pathlib.Path, data_dir: str,
                            cache_dir: pathlib.Path | None = None) -> dict:
  """Runs the case in `tmp` (~3 min on 2 cores) and returns its table row."""
  return row(run_case(tmp, data_dir, cache_dir))
