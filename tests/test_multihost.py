"""Two processes on 127.0.0.1 (jax.distributed + gloo, 4 CPU devices each) train the tiny
config on the demo data, each reading its own half of the split, and end with the
parameters of one process with 8 devices fed the same global batches.

The global batch of a 2-host run is [host 0's 16 examples, host 1's 16 examples], each
host reading only its half of the split (no file read twice); a 1-host run reads the whole
split, so its batches differ. The reference therefore runs in this process on 8 devices
with its train iterator playing both hosts (pipeline.host_train_dataset with
process_index 0 and 1): the same global batches, one process instead of two.
"""
import os
import socket
import subprocess

import jax
import numpy as np
import pytest

from tests import test_train
from vit_jax import report
from vit_jax import train
from vit_jax.checkpoints import training
from vit_jax.data import global_batches
from vit_jax.data import pipeline

STEPS = 8
# SGD: its update is linear in the gradient. Adam maps the ~1e-10 float noise of
# mathematically-zero gradients (attention key biases) to +-lr updates, which no
# tolerance between differently-summed runs can absorb.
OVERRIDES = {'optimizer': 'sgd', 'lr': 0.1, 'total_steps': STEPS, 'log_every_steps': 4,
             'eval_every_steps': STEPS, 'checkpoint_every_steps': STEPS}


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _start_process(index, workdir, data_dir, port, log_dir):
  overrides = [f'--config.{k}={v}' for k, v in OVERRIDES.items()]
  command = test_train.main_command(workdir, data_dir, *overrides) + [
      f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
      f'--process_id={index}']
  env = test_train.main_env(log_dir / 'no_cache', devices=4)
  log = open(log_dir / f'process_{index}.log', 'w')
  return subprocess.Popen(command, cwd=test_train.REPO, env=env, stdout=log,
                          stderr=subprocess.STDOUT), log


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory, demo_data_dir):
  workdir = tmp_path_factory.mktemp('two_processes')
  port = _free_port()
  procs = [_start_process(i, workdir, demo_data_dir, port, workdir) for i in range(2)]
  codes = []
  for proc, log in procs:
    try:
      codes.append(proc.wait(timeout=300))
    finally:
      log.close()
  logs = [(workdir / f'process_{i}.log').read_text() for i in range(2)]
  assert codes == [0, 0], '\n\n'.join(log[-5000:] for log in logs)
  return workdir, logs


def _two_host_train_iterator(config, sharding, *, start_step=0):
  """Global batches exactly as two hosts assemble them, built in one process."""
  hosts = [pipeline.host_train_dataset(
      config, start_step=start_step, process_index=i, process_count=2).as_numpy_iterator()
           for i in range(2)]
  for local_batches in zip(*hosts):
    batch = {k: np.concatenate([b[k] for b in local_batches]) for k in local_batches[0]}
    yield jax.device_put(batch, sharding)


@pytest.fixture(scope='module')
def one_process_run(tmp_path_factory, demo_data_dir):
  workdir = tmp_path_factory.mktemp('one_process')
  config = test_train._config(demo_data_dir, **OVERRIDES)  # pylint: disable=protected-access
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(global_batches, 'train_iterator', _two_host_train_iterator)
    train.train_and_evaluate(config, str(workdir))
  return workdir


def test_two_processes_equal_one_process_with_eight_devices(two_process_run,
                                                            one_process_run):
  workdir, logs = two_process_run
  assert 'Process 0 of 2, 4 local / 8 global devices' in logs[0]
  assert 'Process 1 of 2, 4 local / 8 global devices' in logs[1]
  got = training.read_arrays(str(workdir), STEPS)
  expected = training.read_arrays(str(one_process_run), STEPS)
  # The head starts at zero: it moved, so the runs trained rather than matching at init.
  assert np.abs(expected['head']['kernel']).max() > 1e-3
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected),
                          jax.tree.leaves(got)):
    # Per leaf, within 1e-5 of its largest magnitude (floor 1e-3: see test_steps.py).
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * max(np.abs(a).max(), 1e-3),
                               err_msg=jax.tree_util.keystr(path))


def test_only_process_zero_writes_logs_and_metadata(two_process_run):
  workdir, _ = two_process_run
  events = [f for f in os.listdir(workdir) if f.startswith('events.out.tfevents')]
  assert len(events) == 1
  assert (workdir / report.COST_SUMMARY_FILE).exists()
  assert (workdir / 'config.json').exists()
  assert sorted(os.listdir(workdir / 'checkpoints')) == [str(STEPS)]
