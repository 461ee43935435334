"""The global stream across topologies, as separate `python -m vit_jax.main` processes
(tests/test_multihost.py launches them; no batches fed in, nothing patched):

  - 1 process x 8 CPU devices, 2 processes x 4 and 4 processes x 2 end with the same
    parameters (SGD, within float summation noise; 2 x 4 and 4 x 2 bit for bit) and the
    same evaluation, for an image folder and for a tfds dataset (ArrayRecord);
  - elastic resume: a 2-process run SIGKILLed right after a save resumes as 1 process and
    ends with the uninterrupted 2-process run's parameters, and the other way round;
  - in this process, through the real pipeline and train step: a folder with one
    undecodable train file trains exactly (bit for bit) the parameters of the intact
    folder with that file's slots masked.

The max |delta param| of each comparison is printed (pytest -s) and written to
<tmp>/invariance.json; with VIT_JAX_RECORD_INVARIANCE=1 also to
experiments/global_stream/invariance.json (what the README quotes).
"""
from __future__ import annotations

import json
import os
import pathlib
import platform
import re
import shutil

import jax
import numpy as np
import pytest
import tensorflow as tf

from tests import image_folders
from tests import test_multihost as mh
from tests import test_train
from tests.test_train import compile_cache  # noqa: F401  (fixture: 1-process runs share it)
from vit_jax import build
from vit_jax import report
from vit_jax import sharding
from vit_jax.checkpoints import training
from vit_jax.data import folder
from vit_jax.data import global_batches
from vit_jax.data import global_stream
from vit_jax.data import preflight

STEPS = mh.STEPS  # 8 SGD steps, eval and checkpoint at the end
TOPOLOGIES = {'1x8': 1, '2x4': 2, '4x2': 4}  # processes x devices per process
# Every topology for both sources (the acceptance): the folder's 4 x 2 adds ~2.5
# CPU-minutes to this file's ~9 on 2 cores.
FOUR_PROCESS_SOURCES = ('folder', 'tfds')
SAVE_EVERY, KILL_AFTER_SAVE = 2, 4  # the save at 4 is in flight when killed: resumes at 2
RECORD_PATH = pathlib.Path(test_train.REPO) / 'experiments/global_stream/invariance.json'


def topologies(source: str) -> dict[str, int]:
  return {k: n for k, n in TOPOLOGIES.items() if n < 4 or source in FOUR_PROCESS_SOURCES}


@pytest.fixture(scope='module')
def image_folder(tmp_path_factory):
  root = tmp_path_factory.mktemp('image_folder')
  image_folders.write_split_folders(str(root))  # 4 classes: train 4 x 20, val 4 x 5
  return root


def _source_args(source: str, image_folder) -> list[str]:
  if source == 'folder':
    return [f'--config.data.dataset={image_folder}', '--config.data.eval_split=val']
  return []  # configs/testing.py: vit_demo/upstream_tiny, 96 train / 50 test


class Runs(dict):
  """{name: test_multihost.Run}; .tmp: their folder, which holds invariance.json."""
  tmp: pathlib.Path


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_data_dir, image_folder, compile_cache):  # noqa: F811
  """Every subprocess run of this file, several at once."""
  tmp = tmp_path_factory.mktemp('stream_invariance')

  def run(name, source, processes, *extra, workdir=None, expect=(0,), **changes):
    return mh.Run(name, tmp / (workdir or name), tmp, demo_data_dir,
                  mh.overrides(**changes) + _source_args(source, image_folder) + list(extra),
                  processes=processes, cache_dir=compile_cache if processes == 1 else None,
                  expect=expect)

  elastic = {'checkpoint_every_steps': SAVE_EVERY}
  kill = f'--config.debug.sigkill_after_save_at_step={KILL_AFTER_SAVE}'
  killed = (-9,)  # SIGKILL, by itself
  todo = [  # the kill -> resume chains first: they are the longest.
      run('tfds_1x8_killed', 'tfds', 1, kill, expect=killed, **elastic),
      run('tfds_2x4_killed', 'tfds', 2, kill, expect=killed, **elastic),
      run('tfds_2x4', 'tfds', 2),
      run('tfds_1x8', 'tfds', 1),  # after tfds_1x8_killed: its compilation cache
      run('tfds_2x4_to_1x8', 'tfds', 1, workdir='tfds_2x4_killed', **elastic),
      run('tfds_1x8_to_2x4', 'tfds', 2, workdir='tfds_1x8_killed', **elastic),
      run('folder_2x4', 'folder', 2), run('tfds_4x2', 'tfds', 4),
      run('folder_1x8', 'folder', 1),
  ] + ([run('folder_4x2', 'folder', 4)] if 'folder' in FOUR_PROCESS_SOURCES else [])
  done = Runs(mh.run_all(todo, after={'tfds_1x8': 'tfds_1x8_killed',
                                      'tfds_2x4_to_1x8': 'tfds_2x4_killed',
                                      'tfds_1x8_to_2x4': 'tfds_1x8_killed'}))
  done.tmp = tmp
  _record(tmp, 'run_seconds', {r.name: round(r.seconds) for r in todo})
  return done


def _record(tmp: pathlib.Path, section: str, value) -> None:
  """Adds `section` to <tmp>/invariance.json (and, when recording, to RECORD_PATH)."""
  print(f'\n{section}: {json.dumps(value, indent=1)}')
  for path in [tmp / 'invariance.json'] + ([RECORD_PATH] if mh.RECORDING else []):
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc.update({
        'what': 'max |param - reference param| after the same SGD steps, over all leaves '
                '(tests/test_stream_invariance.py)',
        'command': 'VIT_JAX_RECORD_INVARIANCE=1 python -m pytest -q -s '
                   'tests/test_stream_invariance.py',
        'setup': f'configs/testing.py, optimizer=sgd lr=0.1, {STEPS} steps, batch 32, '
                 f'CPU devices via --xla_force_host_platform_device_count; '
                 f'extra XLA flags: {mh.FAST_COMPILE or "none"}; jax {jax.__version__}; '
                 f'{os.cpu_count()} cores {platform.machine()}',
        section: value})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + '\n')


def compare_params(expected: dict, got: dict) -> dict:
  """Asserts each leaf within 1e-5 of its largest magnitude (floor 1e-3, see
  test_steps.py); returns the max |delta| and the max |delta| / that magnitude."""
  paths = jax.tree_util.tree_leaves_with_path(expected)
  assert jax.tree.structure(expected) == jax.tree.structure(got)
  worst_abs = worst_rel = 0.0
  for (path, a), b in zip(paths, jax.tree.leaves(got)):
    scale = max(float(np.abs(a).max()), 1e-3)
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale,
                               err_msg=jax.tree_util.keystr(path))
    delta = float(np.abs(b - a).max())
    worst_abs, worst_rel = max(worst_abs, delta), max(worst_rel, delta / scale)
  return {'max_abs': worst_abs, 'max_rel_to_leaf_max': worst_rel}


def final_params(run: mh.Run) -> dict:
  run.check()
  return training.read_arrays(str(run.workdir), STEPS)


@pytest.mark.parametrize('source', ['folder', 'tfds'])
def test_topologies_end_with_the_same_parameters(runs, source):
  reference = final_params(runs[f'{source}_1x8'])
  # The head starts at zero: it moved, so the runs trained rather than matching at init.
  assert np.abs(reference['head']['kernel']).max() > 1e-2
  table, params = {}, {}
  for topology, processes in topologies(source).items():
    run = runs[f'{source}_{topology}']
    params[topology] = final_params(run)
    for i, log in enumerate(run.logs):
      assert f'Process {i} of {processes}, {8 // processes} local / 8 global devices' in log
    assert re.search(r'input stream +global: host-count invariant', run.logs[0])
    table[topology] = (compare_params(reference, params[topology]) if processes > 1
                       else 0.0)
  if '4x2' in params:
    # Bit for bit: gloo sums the cross-process reductions of 2 and 4 processes in the
    # same order (jax 0.10.2 on CPU): a difference here would come from the batches.
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params['2x4']),
                            jax.tree.leaves(params['4x2'])):
      np.testing.assert_array_equal(b, a, err_msg=f'2x4 vs 4x2 {jax.tree_util.keystr(path)}')
    table['4x2 vs 2x4'] = 0.0
  _record(runs.tmp, f'max_abs_dparam_vs_1x8/{source}', table)


@pytest.mark.parametrize('source', ['folder', 'tfds'])
def test_topologies_report_the_same_evaluation(runs, source):
  lines, summaries = {}, {}
  for topology in topologies(source):
    run = runs[f'{source}_{topology}']
    lines[topology] = mh.eval_line(run.check()[0])
    summaries[topology] = run.read(report.COST_SUMMARY_FILE)
  assert len(set(lines.values())) == 1, lines
  examples = 20 if source == 'folder' else 50
  assert lines['1x8'].startswith(f'eval step {STEPS}: accuracy ')
  assert f'({examples} examples)' in lines['1x8']
  for s in summaries.values():
    assert (s['final_step'], s['num_devices'], s['eval_examples']) == (STEPS, 8, examples)
    assert s['eval_accuracy'] == summaries['1x8']['eval_accuracy']
    assert s['eval_loss'] == pytest.approx(summaries['1x8']['eval_loss'], rel=1e-5)


@pytest.mark.parametrize('killed,resumed,reference', [
    ('tfds_2x4_killed', 'tfds_2x4_to_1x8', 'tfds_2x4'),
    ('tfds_1x8_killed', 'tfds_1x8_to_2x4', 'tfds_1x8')], ids=['2x4_to_1x8', '1x8_to_2x4'])
def test_a_checkpoint_resumes_on_another_topology_and_ends_the_same(
    runs, killed, resumed, reference):
  killed, resumed = runs[killed], runs[resumed]
  killed_logs = killed.check()
  assert all(f'step {KILL_AFTER_SAVE}/{STEPS}' in log for log in killed_logs)
  assert not any(f'step {STEPS}/{STEPS}' in log for log in killed_logs)
  # The save at KILL_AFTER_SAVE was in flight when the process killed itself (it may
  # have completed); the resume starts at the newest complete checkpoint.
  left = killed.checkpoints_left
  assert left and left[-1] in (KILL_AFTER_SAVE - SAVE_EVERY, KILL_AFTER_SAVE), left
  logs = resumed.check()
  checkpoints = str(resumed.workdir / 'checkpoints')
  for log in logs:
    assert f'Resumed from {checkpoints} at step {left[-1]}.' in log, log[-3000:]
  first_step = re.search(r'\] step (\d+)/', logs[0]).group(1)
  assert int(first_step) == (4 if left[-1] < 4 else 8)  # log_every_steps = 4
  expected = final_params(runs[reference])
  result = compare_params(expected, final_params(resumed))
  result['resumed_at_step'] = left[-1]
  _record(runs.tmp, f'elastic_resume/{killed.name}_then_{resumed.name}_vs_{reference}',
          result)


# ----------------------------------------------------------------------------------------
# An undecodable file, in this process (8 devices, conftest.py).
# ----------------------------------------------------------------------------------------
def _train(run_setup, compiled, init, config, mask=None):
  """STEPS updates from `init` (host arrays) on train_iterator's batches of `config`;
  `mask` (STEPS, B) bool sets those slots' weight to 0. Returns (params, the weights
  used, the last update's metrics)."""
  state = jax.device_put(init, run_setup.state_sharding)  # the step donates it
  batches = global_batches.train_iterator(config, run_setup.batch_sharding)
  weights = []
  for step in range(STEPS):
    batch = next(batches)
    if mask is not None:
      batch['weight'] = jax.device_put(
          np.where(mask[step], 0.0, np.asarray(batch['weight'])).astype(np.float32),
          run_setup.batch_sharding)
    weights.append(np.asarray(batch['weight']))
    state, metrics = compiled.train_step(state, batch)
  return jax.device_get(state.params), np.stack(weights), jax.device_get(metrics)


def test_an_unreadable_file_trains_the_parameters_of_its_slots_masked(image_folder,
                                                                      tmp_path):
  corrupt = tmp_path / 'corrupt'
  shutil.copytree(image_folder, corrupt)
  good_paths, _ = folder.list_files(str(image_folder), 'train')
  bad_index = 37
  bad = corrupt / os.path.relpath(good_paths[bad_index], image_folder)
  bad.write_bytes(b'not an image')
  assert folder.list_files(str(corrupt), 'train')[0][bad_index] == str(bad)

  def config_for(root):
    return test_train._config(None, **mh.OVERRIDES, **{  # pylint: disable=protected-access
        'data.dataset': str(root), 'data.eval_split': 'val'})

  batch = config_for(image_folder).batch_size
  seed = tf.constant(config_for(image_folder).seed, tf.int64)
  records = np.array([int(global_stream.record_index(tf.constant(p, tf.int64),
                                                     len(good_paths), seed))
                      for p in range(STEPS * batch)]).reshape(STEPS, batch)
  slots = records == bad_index
  assert slots.sum() >= 3  # 256 positions over 80 files: each is read 3 or 4 times

  config = config_for(image_folder)
  info = preflight.preflight(config)
  run_setup = build.setup(config, info.num_classes, sharding.make_mesh())
  state = build.initialize(run_setup)
  compiled = build.compile_steps(run_setup, state)
  init = jax.device_get(state)  # each jit of build.initialize would compile anew
  masked, masked_weights, _ = _train(run_setup, compiled, init, config, mask=slots)
  got, weights, metrics = _train(run_setup, compiled, init, config_for(corrupt))
  intact, _, _ = _train(run_setup, compiled, init, config)

  np.testing.assert_array_equal(weights, np.where(slots, 0.0, 1.0))
  np.testing.assert_array_equal(weights, masked_weights)
  assert metrics['data_errors'] == slots[-1].sum()
  assert str(bad) in folder.undecodable_files()
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(masked), jax.tree.leaves(got)):
    np.testing.assert_array_equal(b, a, err_msg=jax.tree_util.keystr(path))
  # Not vacuous: the slots mattered (the intact folder trains other parameters).
  assert np.abs(intact['head']['kernel'] - got['head']['kernel']).max() > 1e-4
