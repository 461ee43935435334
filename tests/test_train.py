"""The training loop end to end, through `python -m vit_jax.main` subprocesses.

One chain of runs on the tiny config shares its compile cache and its assertions:
  uninterrupted: 24 steps -> TensorBoard events, checkpoints, cost summary;
  interrupted:   SIGKILL right after the step-16 save -> restart, SIGTERM after step 20
                 (checkpoint + clean exit) -> restart to 24 -> the uninterrupted params,
                 bit for bit, and the cost totals of 24 steps.
Plus in-process: the NaN stop, errors before compile, and the cost arithmetic.
"""
import collections
import glob
import json
import os
import re
import signal
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.configs import testing as testing_config
from vit_jax.cost import accounting
from vit_jax.cost import flops
from vit_jax.cost import peaks
from vit_jax import guards
from vit_jax import report
from vit_jax import sharding
from vit_jax import train
from vit_jax.checkpoints import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 24  # configs/testing.py


# ----------------------------------------------------------------------------------------
# Cost accounting (pure arithmetic, no devices).
# ----------------------------------------------------------------------------------------
def _fake_device(kind, platform='tpu', process_index=0):
  return types.SimpleNamespace(device_kind=kind, platform=platform,
                               process_index=process_index)


@pytest.mark.parametrize('kind,cores,peak_bf16', [
    ('TPU v2', 1, 22.5e12), ('TPU v3', 1, 61.5e12), ('TPU v4', 2, 275e12),
    ('TPU v5 lite', 1, 197e12), ('TPU v5', 2, 459e12), ('TPU v5p', 2, 459e12),
    ('TPU v6 lite', 1, 918e12), ('NVIDIA A100-SXM4-80GB', 1, 312e12),
    ('NVIDIA H100 80GB HBM3', 1, 989.4e12), ('NVIDIA H200', 1, 989.4e12)])
def test_device_table(kind, cores, peak_bf16):
  platform = 'gpu' if 'NVIDIA' in kind else 'tpu'
  assert peaks.cores_per_device(_fake_device(kind, platform)) == cores
  assert peaks.device_spec(kind).peak_bf16 == peak_bf16


def test_cpu_cores_are_the_hosts_cores_shared_by_its_devices():
  per_device = peaks.cores_per_device(jax.devices()[0])
  assert per_device * jax.local_device_count() == pytest.approx(peaks.host_cpu_cores())


def test_peak_total_counts_each_cpu_host_once_and_every_accelerator():
  cpus = [_fake_device('cpu', 'cpu', p) for p in (0, 0, 1, 1)]
  assert peaks.peak_flops_total(cpus, 'float32', cpu_host_peak=5e10) == 1e11
  tpus = [_fake_device('TPU v3')] * 8
  assert peaks.peak_flops_total(tpus, 'bfloat16') == 8 * 61.5e12
  assert peaks.peak_flops_total([_fake_device('TPU v9')], 'bfloat16') is None


def test_segments_and_summary_by_hand():
  # 8 TPUv3 cores for 2 hours, then 4 v4 chips (8 cores) for 1 hour; 1e18 FLOPs/step.
  kinds_v3 = {'TPU v3': (8, 1.0)}
  kinds_v4 = {'TPU v4': (4, 2.0)}
  totals = accounting.add_segment(accounting.CostTotals(), seconds=7200, steps=10, flops_per_step=1e18,
                            kinds=kinds_v3, peak_total=8 * 61.5e12)
  totals = accounting.add_segment(totals, seconds=3600, steps=5, flops_per_step=1e18,
                            kinds=kinds_v4, peak_total=4 * 275e12)
  totals = accounting.CostTotals.from_json(json.loads(json.dumps(totals.to_json())))  # survives
  s = accounting.summarize(totals)
  assert s['core_hours'] == pytest.approx(8 * 2 + 8 * 1)
  assert s['core_days/TPU v3'] == pytest.approx(16 / 24)
  assert s['core_days/TPU v4'] == pytest.approx(8 / 24)
  mfu = 15e18 / (8 * 61.5e12 * 7200 + 4 * 275e12 * 3600)
  assert s['mfu'] == pytest.approx(mfu)
  assert s['achieved_flops_per_second'] == pytest.approx(15e18 / 10800)
  assert s['tpu_v3_core_days_equivalent'] == pytest.approx(15e18 / (61.5e12 * mfu) / 86400)


def test_cost_meter_times_training_segments_only():
  # A fake clock: 2 updates in 3 s, a 7 s evaluation (paused), 1 update in 1 s.
  clock = iter([100.0, 103.0, 110.0, 111.0]).__next__
  rates = dict(flops_per_step=1e18, kinds={'TPU v3': (8, 1.0)}, peak_total=8 * 61.5e12)
  meter = accounting.CostMeter(clock=clock, **rates)
  meter.count_step()
  meter.count_step()
  with meter.paused(state=None) as totals:  # pause at 103, resume at 110.
    assert (totals.train_seconds, totals.steps) == (3.0, 2)
  meter.count_step()
  totals = meter.pause(state=None)
  assert (totals.train_seconds, totals.steps, totals.flops) == (4.0, 3, 3e18)
  assert totals.core_seconds == {'TPU v3': 32.0} and meter.totals == totals
  # What a checkpoint stores and a resumed run continues from.
  again = accounting.CostMeter.from_json(json.loads(json.dumps(meter.to_json())), **rates)
  assert again.totals == totals


def test_progress_rate_and_eta_are_clus_on_the_training_clock():
  progress = report.Progress(100, start_step=10, start_seconds=50.0)  # resumed at 10.
  assert progress.steps_per_sec is None  # the first call only starts the clock.
  progress(20, 70.0)  # 10 updates in 20 training seconds.
  assert (progress.steps_per_sec, progress.eta_seconds) == (0.5, 160.0)
  progress(30, 75.0)
  assert (progress.steps_per_sec, progress.eta_seconds) == (2.0, 35.0)


def test_progress_line():
  scalars = {'train_loss': 1.4123, 'train_images_per_sec_per_core': 654.2,
             'train_mfu': 0.2, 'train_eta_hours': 88 / 3600}
  assert report.progress_line(2100, 3000, scalars) == (
      'step 2100/3000 (70%)  loss 1.41  654 img/s/core  MFU 20.0%  ETA 1m28s')
  assert report.progress_line(4, 24, {'train_loss': 4.6}) == 'step 4/24 (17%)  loss 4.6'
  assert [report.duration(s) for s in (7.2, 88, 3725)] == ['7s', '1m28s', '1h02m']


def test_xla_cost_analysis_counts_matmul_flops_per_device():
  mesh = sharding.make_mesh()
  x = jax.ShapeDtypeStruct((64, 128), jnp.float32, sharding=sharding.batch_sharding(mesh))
  w = jax.ShapeDtypeStruct((128, 256), jnp.float32, sharding=sharding.replicated(mesh))
  compiled = jax.jit(jnp.matmul).lower(x, w).compile()
  per_device = flops.compiled_flops_per_device(compiled)
  assert per_device * mesh.size == 2 * 64 * 128 * 256  # 2 FLOPs per multiply-add
  assert flops.train_step_flops(per_device, 8, accum_steps=4, micro_batch_flops=1e6) == (
      2 * 64 * 128 * 256 + 3e6)


# ----------------------------------------------------------------------------------------
# In-process runs (one compile each).
# ----------------------------------------------------------------------------------------
def _config(data_dir, **overrides):
  config = testing_config.get_config()
  config.data.data_dir = data_dir
  for key, value in overrides.items():
    target = config
    *parents, leaf = key.split('.')
    for p in parents:
      target = target[p]
    target[leaf] = value
  return config


def test_accumulation_error_before_compile(demo_data_dir, tmp_path):
  with pytest.raises(ValueError, match=r'batch_size=32 must be divisible by devices \(8\)'
                     r' x accum_steps \(3\) = 24 .* use batch_size=24'):
    train.train_and_evaluate(_config(demo_data_dir, accum_steps=3), str(tmp_path))
  assert not os.path.exists(tmp_path / 'checkpoints')  # failed before anything was built


def test_nan_loss_stops_naming_step_and_last_checkpoint(demo_data_dir, tmp_path):
  config = _config(demo_data_dir, **{'total_steps': 8, 'checkpoint_every_steps': 2,
                                     'eval_every_steps': 0, 'debug.nan_loss_at_step': 5})
  with pytest.raises(guards.NonFiniteLoss) as error:
    train.train_and_evaluate(config, str(tmp_path))
  message = str(error.value)
  assert 'loss is nan at step 5' in message
  assert f'last good checkpoint is step 4: {tmp_path}/checkpoints/4' in message
  saved = sorted(int(os.path.basename(p)) for p in glob.glob(f'{tmp_path}/checkpoints/*'))
  assert saved == [2, 4]  # nothing from the NaN update on
  params = training.read_arrays(str(tmp_path), 4)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(params))


# ----------------------------------------------------------------------------------------
# Subprocess runs of `python -m vit_jax.main`.
# ----------------------------------------------------------------------------------------
def main_env(cache_dir, devices=8):
  """Environment of a child `vit_jax.main`: CPU only, `devices` devices, shared cache."""
  env = dict(os.environ)
  env.update({
      'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
      'JAX_PLATFORMS': 'cpu',
      'PYTHONPATH': REPO,
      # Identical programs (the same config resumed) compile once per test session.
      'JAX_COMPILATION_CACHE_DIR': str(cache_dir),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
      'TF_CPP_MIN_LOG_LEVEL': '2',
  })
  return env


def main_command(workdir, data_dir, *overrides):
  return [sys.executable, '-m', 'vit_jax.main', '--config=configs/testing.py',
          f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *overrides]


def run_main(workdir, data_dir, cache_dir, *overrides, expect=0):
  proc = subprocess.run(main_command(workdir, data_dir, *overrides), cwd=REPO,
                        env=main_env(cache_dir), capture_output=True, text=True,
                        timeout=300)
  if proc.returncode != expect:
    raise AssertionError(f'exit code {proc.returncode}, expected {expect}:\n'
                         f'{proc.stderr[-6000:]}')
  return proc.stderr


Runs = collections.namedtuple('Runs', 'uninterrupted interrupted logs')


@pytest.fixture(scope='session')
def compile_cache(tmp_path_factory):
  return tmp_path_factory.mktemp('jax_cache')


@pytest.fixture(scope='session')
def finished_run(tmp_path_factory, demo_data_dir, compile_cache):
  """Workdir of an uninterrupted run of configs/testing.py (8 devices) and its log."""
  workdir = tmp_path_factory.mktemp('uninterrupted')
  log = run_main(workdir, demo_data_dir, compile_cache)
  return workdir, log


@pytest.fixture(scope='module')
def runs(tmp_path_factory, demo_data_dir, compile_cache, finished_run):
  workdir = tmp_path_factory.mktemp('interrupted')
  logs = {
      'sigkill': run_main(workdir, demo_data_dir, compile_cache,
                          '--config.debug.sigkill_after_save_at_step=16',
                          expect=-signal.SIGKILL),
      'sigterm': run_main(workdir, demo_data_dir, compile_cache,
                          '--config.debug.sigterm_at_step=20'),
      'final': run_main(workdir, demo_data_dir, compile_cache),
  }
  return Runs(finished_run[0], workdir, dict(logs, uninterrupted=finished_run[1]))


def _event_values(workdir):
  """{tag: [(step, value)]} of the scalars and texts of the event files in `workdir`."""
  import tensorflow as tf  # only for reading event files.
  tags = collections.defaultdict(list)
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data.plugin_name
        if plugin in ('scalars', 'text'):
          item = tf.make_ndarray(value.tensor).item()
          tags[value.tag].append((event.step, item.decode() if plugin == 'text' else item))
  return tags


def test_main_writes_events_checkpoints_and_cost_summary(finished_run):
  workdir, log = finished_run
  tags = _event_values(workdir)
  assert 'FLOPs per step' in tags['start_table'][0][1]
  for tag in ('train_loss', 'train_lr', 'train_grad_norm', 'train_param_norm',
              'train_update_norm', 'train_images_per_sec_per_core', 'train_eta_hours',
              'train_core_hours', 'train_core_days/cpu', 'train_mfu',
              'eval_accuracy', 'eval_loss'):
    assert tag in tags, f'{tag} missing; have {sorted(tags)}'
  assert [s for s, _ in tags['train_loss']] == [4, 8, 12, 16, 20, 24]
  assert [s for s, _ in tags['eval_accuracy']] == [12, 24]
  assert 0.0 <= tags['eval_accuracy'][-1][1] <= 1.0
  # Linear decay to 0 at the last update (lr of update 24 = 0).
  assert tags['train_lr'][-1][1] == pytest.approx(0.0, abs=1e-9)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['16', '24', '8']
  with open(os.path.join(workdir, report.COST_SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert summary['steps_timed'] == TOTAL_STEPS and summary['final_step'] == TOTAL_STEPS
  assert summary['total_flops'] == pytest.approx(TOTAL_STEPS * summary['flops_per_step'])
  assert summary['flops_source'] == 'XLA cost analysis of the compiled step'
  assert summary['core_days/cpu'] == pytest.approx(summary['core_days']) and (
      summary['core_days'] > 0)
  assert summary['core_hours'] == pytest.approx(
      summary['train_seconds'] * peaks.host_cpu_cores() / 3600)
  assert 0 < summary['mfu'] < 1 and summary['tpu_v3_core_days_equivalent'] > 0
  assert 'Start of training' in log and 'FLOPs per step' in log and 'Cost:' in log
  # The console: one progress line per log interval and one per evaluation, no raw
  # scalar dump (TensorBoard has the scalars) and no work-unit notes line.
  assert re.findall(r'\] step (\d+)/24 \(\d+%\)  loss ', log) == [
      '4', '8', '12', '16', '20', '24']
  assert re.findall(r'\] eval step (\d+): accuracy [.\d]+ \(50 examples\)', log) == [
      '12', '24']
  assert 'train_loss=' not in log and 'work unit notes' not in log


def test_sigkill_then_restart_equals_uninterrupted_run(runs):
  resumed_from = [int(line.rsplit('step ', 1)[1].rstrip('.'))
                  for line in runs.logs['sigterm'].splitlines() if 'Resumed from' in line]
  assert resumed_from and resumed_from[0] in (8, 16), runs.logs['sigterm'][-3000:]
  expected = training.read_arrays(str(runs.uninterrupted), TOTAL_STEPS)
  got = training.read_arrays(str(runs.interrupted), TOTAL_STEPS)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected),
                          jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))
  with open(os.path.join(runs.interrupted, report.COST_SUMMARY_FILE)) as f:
    summary = json.load(f)
  assert summary['steps_timed'] == TOTAL_STEPS  # totals came back from the checkpoints


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(runs):
  log = runs.logs['sigterm']
  assert 'SIGTERM received' in log and 'Preempted at step 20' in log
  assert 'Resumed from' in runs.logs['final'] and 'at step 20' in runs.logs['final']


def test_checkpoint_dir_keeps_gcs_urls_and_absolutises_local_paths():
  # Multi-host TPU runs share one gs:// workdir; os.path.abspath would turn it into a
  # local './gs:/...' folder on every worker.
  assert training.checkpoint_dir('gs://bucket/run') == 'gs://bucket/run/checkpoints'
  assert training.checkpoint_dir('run') == os.path.join(os.getcwd(), 'run',
                                                                'checkpoints')


def test_main_cpu_flags_restart_with_malloc_settings_and_use_two_devices(
    tmp_path, demo_data_dir, compile_cache):
  """--cpu_malloc re-executes the command with host_malloc's settings (logged by the
  child), and --cpu_devices=2 gives the mesh 2 CPU devices; the run still trains."""
  env = main_env(compile_cache)
  del env['XLA_FLAGS']  # the device count must come from --cpu_devices alone.
  proc = subprocess.run(
      main_command(tmp_path, demo_data_dir, '--cpu_malloc', '--cpu_devices=2',
                   '--config.total_steps=8', '--config.eval_every_steps=8'),
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert "glibc malloc settings: {'MALLOC_ARENA_MAX': '1'" in proc.stderr
  assert '2 local / 2 global devices' in proc.stderr
  summary = json.loads((tmp_path / 'cost_summary.json').read_text())
  assert (summary['final_step'], summary['num_devices']) == (8, 2)
