"""`python -m vit_jax.finetune_sweep` as a user runs it: 2 rates of the tiny config,
SIGKILLed in the second rate's training, then the same command again.

The second start must find the first rate finished (nothing retrained, only its
minival evaluation repeated), resume the second from its last checkpoint, choose on
minival and evaluate only the chosen run on the test split.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests import test_train
from vit_jax.sweep import choice

RATES = ('0.001', '0.003')
SPLITS = ('--config.data.train_split=train[:75%]', '--config.data.minival_split=train[75%:]')
MINIVAL_EXAMPLES, TEST_EXAMPLES = 24, 50  # upstream_tiny: 96 train (25% held out), 50 test.


def sweep_command(workdir, data_dir, *extra):
  return [sys.executable, '-m', 'vit_jax.finetune_sweep', '--config=configs/testing.py',
          f'--workdir={workdir}', f'--lrs={",".join(RATES)}',
          f'--config.data.data_dir={data_dir}', *SPLITS, *extra]


def start(workdir, data_dir, cache, log_path, *extra):
  log = open(log_path, 'w')  # pylint: disable=consider-using-with
  return subprocess.Popen(sweep_command(workdir, data_dir, *extra), cwd=test_train.REPO,
                          env=test_train.main_env(cache, devices=1), stdout=log,
                          stderr=subprocess.STDOUT)


def wait_for(path, proc, timeout=300):
  deadline = time.monotonic() + timeout
  while not os.path.exists(path):
    assert proc.poll() is None, f'the sweep exited ({proc.returncode}) before {path}'
    assert time.monotonic() < deadline, f'no {path} after {timeout} s'
    time.sleep(0.05)


@pytest.fixture(scope='module')
def killed_and_resumed(tmp_path_factory, demo_data_dir):
  root = tmp_path_factory.mktemp('sweep')
  workdir, cache = root / 'sweep', root / 'cache'
  first = start(workdir, demo_data_dir, cache, root / 'first.log')
  # Checkpoint 8 of the second rate committed (orbax renames it into place): kill there.
  wait_for(workdir / 'lr_0.003' / 'checkpoints' / '8', first)
  first.send_signal(signal.SIGKILL)
  first.wait(timeout=60)
  second = start(workdir, demo_data_dir, cache, root / 'second.log')
  second.wait(timeout=600)
  logs = [(root / f'{n}.log').read_text() for n in ('first', 'second')]
  return workdir, first.returncode, second.returncode, logs


def read(path):
  return json.loads(open(path).read())


def test_the_killed_sweep_resumes_where_it_stopped(killed_and_resumed):
  _, first_rc, second_rc, (_, log) = killed_and_resumed
  assert first_rc == -signal.SIGKILL
  assert second_rc == 0, log[-4000:]
  # Rate 1 had finished: the second start trains nothing for it.
  assert 'Checkpoint step 24 >= total_steps 24: nothing to train.' in log
  second_rate = log.split('Sweep: lr 0.003 in ')[1].split('has the best minival accuracy')[0]
  assert int(re.search(r'Resumed from \S+ at step (\d+)\.', second_rate).group(1)) in (8, 16)
  assert 'nothing to train' not in second_rate


def test_sweep_json_records_minival_and_the_choice(killed_and_resumed):
  workdir, *_ = killed_and_resumed
  record = read(workdir / 'sweep.json')
  assert record['rates'] == [0.001, 0.003]
  assert record['minival_examples'] == MINIVAL_EXAMPLES
  runs = {float(r): run for r, run in record['runs'].items()}
  assert [runs[r]['steps'] for r in (0.001, 0.003)] == [24, 24]
  assert all(0 <= run['minival_accuracy'] <= 1 for run in runs.values())
  chosen = record['chosen']
  assert chosen['lr'] == choice.choose(runs)
  assert chosen['minival_accuracy'] == runs[chosen['lr']]['minival_accuracy']
  assert chosen['test_examples'] == TEST_EXAMPLES and 0 <= chosen['test_accuracy'] <= 1
  with open(workdir / 'sweep.png', 'rb') as f:
    assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_only_the_chosen_run_was_ever_evaluated_on_test(killed_and_resumed):
  workdir, *_ = killed_and_resumed
  chosen = read(workdir / 'sweep.json')['chosen']['lr']
  for rate in RATES:
    run_dir = workdir / f'lr_{rate}'
    summary, config = read(run_dir / 'cost_summary.json'), read(run_dir / 'config.json')
    # Each run trains at its rate, evaluated on minival (its config.json, an ordinary run).
    assert (config['lr'], config['data']['eval_split']) == (float(rate), 'train[75%:]')
    # The last evaluation: test for the chosen run, minival for the other.
    expected = TEST_EXAMPLES if float(rate) == chosen else MINIVAL_EXAMPLES
    assert summary['eval_examples'] == expected


def test_bad_input_is_refused_before_any_compile(tmp_path, demo_data_dir):
  proc = subprocess.run(
      sweep_command(tmp_path / 'sweep', demo_data_dir, '--config.data.train_split=train'),
      cwd=test_train.REPO, env=test_train.main_env(tmp_path / 'cache', devices=1),
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert ("config.data.minival_split='train[75%:]' (train[72:96]) shares 24 examples with "
          "the training split 'train'") in proc.stderr
  assert 'Start of training' not in proc.stderr and 'compile' not in proc.stderr.lower()
  assert not os.path.exists(tmp_path / 'sweep')
