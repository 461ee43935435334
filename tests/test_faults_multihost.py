"""Issue 18, multi-host: a SIGTERM to one process of a 2-process run (4 CPU devices
each), noticed during the evaluation at step 4, interrupts that evaluation on both
processes: no metrics are written, checkpoint 4 is saved once with meta eval_pending,
both log 'Preempted at step 4' and exit 0. Resumed as 1 process x 8 devices, the run
evaluates step 4 first and ends with the parameters of an uninterrupted 1 x 8 run.

The runs and what is read from them: tests/faults_multihost.py (its docstring says why
the signal is sent right after update 4: JAX notices a SIGTERM up to 1 s late). Three
`python -m vit_jax.main` runs, ~2.5-3 min on 2 cores: the 2-process one and the
uninterrupted reference at once, then the resume.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests import faults_multihost as fm
from tests.test_train import compile_cache  # noqa: F401  (fixture: 1-process runs share it)
from vit_jax.checkpoints import training


@pytest.fixture(scope='module')
def case(tmp_path_factory, demo_data_dir, compile_cache):  # noqa: F811
  case = fm.run_case(tmp_path_factory.mktemp('faults_multihost'), demo_data_dir,
                     compile_cache)
  print('\n' + ', '.join(f'{r.name} {r.seconds:.0f} s'
                         for r in (case.preempted, case.reference, case.resumed)))
  return case


@pytest.fixture(scope='module')
def facts(case):
  return fm.facts(case)  # asserts that every run exited 0 (with the logs if not)


def _logs(*runs) -> str:
  return '\n'.join(f'--- {run.name} process {i} ---\n{log[-3000:]}'
                   for run in runs for i, log in enumerate(run.logs))


def test_both_processes_abandon_the_evaluation_save_step_4_and_exit_0(case, facts):
  why = _logs(case.preempted)
  assert facts['exit_codes'] == [0, 0], why
  assert facts['interrupted'] == [True, True], why
  assert facts['preempted_at'] == [fm.EVAL_STEP] * 2, why  # they agree on the step
  assert facts['eval_lines'] == [[], []], why  # no 'eval step 4:' (nor 8) on either
  assert facts['checkpoints_left'] == [fm.EVAL_STEP], why  # saved once, at 4
  assert facts['eval_pending'] is True
  assert fm.meta(case.preempted.workdir, fm.EVAL_STEP)['step'] == fm.EVAL_STEP


def test_the_signal_went_to_one_process_and_jax_told_the_other(facts, case):
  why = _logs(case.preempted)
  # JAX's C++ notifier logs the SIGTERM where it arrived: process 1 only. Process 0
  # stopped at the same point without one.
  assert facts['jax_notifier'] == [False, True], why
  # guards.Preemption installs its Python handler in 1-process runs only.
  assert facts['python_handler'] == [False, False], why


def test_tensorboard_has_no_metrics_of_the_interrupted_evaluation(facts):
  assert facts['event_files'] == [1, 0]  # process 0 writes the events, process 1 none
  assert facts['event_train_steps'] == [fm.EVAL_STEP]  # the run did log step 4
  assert facts['event_eval_steps'] == []


def test_the_one_process_resume_runs_the_owed_evaluation_first(facts, case):
  why = _logs(case.resumed)
  assert facts['resumed_from'] == fm.EVAL_STEP, why
  assert facts['resumed_evals'] == [fm.EVAL_STEP, fm.STEPS], why
  assert facts['owed_eval_first'], why  # before the progress line of step 8
  assert facts['resumed_checkpoints'] == [fm.EVAL_STEP, fm.STEPS]
  # The evaluation of checkpoint 4 (trained on 2 x 4) is the reference's at step 4.
  assert facts['owed_eval'] is not None and facts['reference_eval'] is not None
  assert facts['owed_eval'][0] == facts['reference_eval'][0]
  assert facts['owed_eval'][1] == pytest.approx(facts['reference_eval'][1], rel=1e-5)


def test_the_resumed_run_ends_with_the_uninterrupted_runs_parameters(facts, case):
  reference = training.read_arrays(str(case.reference.workdir), fm.STEPS)
  # The head starts at zero: it moved, so the runs trained rather than matching at init.
  assert np.abs(reference['head']['kernel']).max() > 1e-2
  print(f'\nmax |dparam|, resumed 2x4 -> 1x8 vs uninterrupted 1x8: '
        f'{facts["max_dparam"]:.3g}')
  assert facts['max_dparam'] <= fm.MAX_DPARAM


def test_the_fault_table_row(case):
  row = fm.row(case)
  assert set(row) == {'fault', 'injected', 'resumed', 'lost', 'max_dparam', 'saw', 'checks'}
  assert (row['injected'], row['resumed'], row['lost']) == (1, 1, 0)
  assert row['checks'] and all(row['checks'].values()), row['checks']
