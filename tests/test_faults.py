"""Fault injection (issue 18) through real `python -m vit_jax.main` runs: tests/faults.py.

Every case runs once, two children at a time, in the module fixture `results`, sharing
the uninterrupted baseline runs and the session's compile cache; each test asserts one
case's checks (the behaviour promised in vit_jax/resume.py, guards.py, checkpoints/) and
its headline numbers. 3 random SIGKILLs here; experiments/faults/run.py runs 20.
"""
import pytest

from tests import fault_changes
from tests import fault_runs
from tests import faults
from tests.test_train import compile_cache  # noqa: F401  (session fixture)

KILLS = 3


@pytest.fixture(scope='module')
def results(demo_data_dir, compile_cache, tmp_path_factory):  # noqa: F811
  ctx = fault_runs.Context(demo_data_dir, compile_cache, tmp_path_factory.mktemp('faults'))
  return faults.run_all(ctx, kills=KILLS, seed=0, workers=2, each_field=False)


def passed(result: faults.Result) -> faults.Result:
  assert result.checks and not result.failures, result.explain()
  return result


def test_random_sigkills_lose_no_checkpoint_and_end_bit_identical(results):
  r = passed(results['sigkill_random'])
  assert r.injected == KILLS and r.lost == 0
  assert r.facts['final_resumed_from'] is not None  # the chain did reach a checkpoint
  assert r.max_delta == 0.0


@pytest.mark.parametrize('case,resumed_from', [
    ('sigterm_train', 10), ('sigterm_eval', 12), ('sigterm_save', 8)])
def test_sigterm_saves_exits_0_and_resumes_to_the_same_params(results, case, resumed_from):
  r = passed(results[case])
  assert r.facts['resumed_from'] == resumed_from and r.max_delta == 0.0


def test_preempted_evaluation_is_owed_and_done_once(results):
  r = passed(results['sigterm_eval'])
  assert r.facts['eval_pending'] is True
  assert r.facts['eval_accuracy_steps'] == [12, 24]


@pytest.mark.parametrize('case', ['truncated_array', 'deleted_array'])
def test_unreadable_newest_checkpoint_is_moved_aside_and_resume_walks_back(results, case):
  r = passed(results[case])
  assert r.checks['checkpoint 10 kept in checkpoints_unreadable/10']
  assert r.facts['resumed_from'] == 8 and r.max_delta == 0.0


def test_no_readable_checkpoint_stops_naming_each_and_moves_nothing(results):
  r = passed(results['both_unreadable'])
  assert ' can be read: 10: ' in r.facts['stopped'] and '; 8: ' in r.facts['stopped']


def test_disk_full_stops_with_the_numbers_and_the_next_start_recovers(results):
  r = results['disk_full']
  if r.skipped:  # unshare / mount refused here: the message says by whom.
    pytest.skip(r.skipped)
  passed(r)
  assert r.facts['free_bytes'] < r.facts['checkpoint_bytes']
  assert r.facts['after_full']['checkpoints'] == [8]
  assert r.facts['final_checkpoints'] == [8, 16, 24] and r.max_delta == 0.0


@pytest.mark.parametrize('name', ['fields', 'tree', 'stream'])
def test_incompatible_config_is_refused_before_compile_leaving_the_workdir(results, name):
  # 'fields': model, image_size, number of classes, optimizer and param_dtype changed in
  # one resume; the refusal names each old -> new (the runner changes one at a time).
  r = passed(results[f'change_{name}'])
  for text in fault_changes.CHANGES[name][1]:
    assert text in r.facts['stopped']
  assert r.checks['stopped before compiling']
  assert r.checks['workdir untouched (files, sizes, mtimes)']


def test_scheduling_change_is_accepted_and_trains_on(results):
  r = passed(results['change_total_steps'])
  assert r.facts['checkpoints'][-1] == 32


def test_nan_loss_stops_then_restart_resumes_from_last_good_checkpoint(results):
  r = passed(results['nan_loss'])
  assert 'loss is nan at step 5' in r.facts['stopped']
  assert r.facts['resumed_from'] == 4 and r.max_delta == 0.0


def test_corrupt_training_image_is_named_counted_and_the_run_completes(results):
  r = passed(results['corrupt_image'])
  assert r.facts['data_errors'] == 8 and r.facts['eval_examples'] == [50, 50]


def test_config_json_is_the_edited_config_after_an_early_stop(results):
  r = passed(results['stale_config'])
  assert r.facts['first config.json total_steps'] == 48
  assert r.facts['config.json'] == {'total_steps': 32, 'checkpoint_every_steps': 8}
