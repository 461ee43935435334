"""The planner (`python -m vit_jax.plan`): topologies, the memory prediction against the
training loop's own compiled step, the paper arithmetic, the OOM preflight of `main`,
and the refusals of bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from tests.test_train import compile_cache  # noqa: F401  (session fixture)
from tests.test_train import main_command, main_env
from vit_jax import build
from vit_jax import sharding
from vit_jax.analysis import paper_compute
from vit_jax.checkpoints import errors
from vit_jax.configs import testing as testing_config
from vit_jax.cost import default_mfu
from vit_jax.cost import devices
from vit_jax.cost import forecast
from vit_jax.data import preflight as data_preflight
from vit_jax.planning import advice
from vit_jax.planning import preflight
from vit_jax.planning import topology

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_plan(*args, expect=0, timeout=300):
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO)
  env.pop('XLA_FLAGS', None)  # the planner sets the device count itself.
  proc = subprocess.run([sys.executable, '-m', 'vit_jax.plan', *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == expect, proc.stderr[-4000:]
  return proc


# ----------------------------------------------------------------------------------------
# Topologies and device facts.
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('name,device,count,hosts,cores,memory', [
    ('v2-8', 'TPU v2', 8, 1, 1, 8 * 2**30),  # 4 chips, 2 cores each, one host.
    ('v3-256', 'TPU v3', 256, 32, 1, 16 * 2**30),  # 128 chips, 4 per host.
    ('v4-128', 'TPU v4', 64, 16, 2, 32 * 2**30),  # 128 cores = 64 megacore chips.
    ('v5p-128', 'TPU v5p', 64, 16, 2, 95 * 10**9),
    ('v5e-64', 'TPU v5e', 64, 16, 1, 16 * 10**9),  # v5e counts chips.
    ('v5litepod-8', 'TPU v5e', 8, 1, 1, 16 * 10**9),  # up to 8 chips: one host.
    ('v6e-256', 'TPU v6e', 256, 64, 1, 32 * 10**9),
    ('8xH100', 'H100 SXM', 8, 1, 1, 80 * 10**9),
    ('4xH100-PCIe', 'H100 PCIe', 4, 1, 1, 80 * 10**9),
    ('16xA100-80GB', 'A100 80GB', 16, 2, 1, 80 * 10**9),
    ('8xA100-40GB', 'A100 40GB', 8, 1, 1, 40 * 10**9),
    ('2xH200', 'H200', 2, 1, 1, 141 * 10**9)])
def test_topology_parser(name, device, count, hosts, cores, memory):
  t = topology.parse(name)
  assert (t.device_name, t.devices, t.hosts, t.cores_per_device, t.memory_per_device) == (
      device, count, hosts, cores, memory)
  usable = memory * 0.75 if t.platform == 'gpu' else memory  # JAX's GPU preallocation.
  assert t.usable_memory == int(usable)


def test_cpu_topology_is_this_host_shared_by_its_devices():
  t = topology.parse('8xcpu')
  assert (t.devices, t.hosts, t.platform) == (8, 1, 'cpu')
  assert t.memory_per_device == devices.host_memory_bytes() // 8


@pytest.mark.parametrize('name,expected', [
    ('v7-8', 'no TPU v7; known: v2-{8,32,128,256,512} (cores)'),
    ('v3-100', 'v3 slices are v3-<n> with n in [8, 32, 64, 128, 256, 512, 1024, 2048]'),
    ('12xH100', '12 GPUs do not fill hosts of 8; use 1-8 or a multiple, e.g. 16xH100'),
    ('8xA100', 'A100: say A100-40GB or A100-80GB'),
    ('tpu', "'tpu' is not a topology this planner knows; known: v2-{8,")])
def test_unknown_topologies_are_refused_listing_the_known_ones(name, expected):
  with pytest.raises(ValueError) as error:
    topology.parse(name)
  assert expected in str(error.value)
  if 'GPUs do not fill' not in expected:  # that one names the size that would.
    assert '<N>xcpu' in str(error.value)


@pytest.mark.parametrize('kind,name', [
    ('NVIDIA A100-SXM4-40GB', 'A100 40GB'), ('NVIDIA A100-SXM4-80GB', 'A100 80GB'),
    ('NVIDIA A100 80GB PCIe', 'A100 80GB'), ('NVIDIA H100 80GB HBM3', 'H100 SXM'),
    ('NVIDIA H100 PCIe', 'H100 PCIe'), ('NVIDIA H200', 'H200'), ('TPU v5 lite', 'TPU v5e'),
    ('TPU v5', 'TPU v5p'), ('TPU v6 lite', 'TPU v6e'), ('TPU v4', 'TPU v4')])
def test_device_kinds_find_their_row(kind, name):
  assert devices.device_spec(kind).name == name


def test_every_device_row_is_cited_and_has_a_cited_default_mfu():
  for spec in devices.DEVICES:
    assert spec.source in devices.__doc__, spec
    figure = default_mfu.default_mfu(spec.name)
    assert 0 < figure.mfu <= 1
    assert figure.source.split(']')[0] + ']' in default_mfu.__doc__, figure
  assert default_mfu.default_mfu('CPU').source.startswith('[CPU]')


# ----------------------------------------------------------------------------------------
# The paper arithmetic.
# ----------------------------------------------------------------------------------------
def test_table2_arithmetic_on_the_imagenet21k_row_by_hand():
  row = next(r for r in paper_compute.TABLE_2 if r.data == 'ImageNet-21k' and r.epochs == 90)
  assert (row.model, row.images, row.core_days) == ('ViT-L/16', 14e6, 230.0)
  flops_per_image = 3.0e11
  # By hand: 3.0e11 x 14e6 x 90 = 3.78e20 FLOPs. At MFU 0.5 on 61.5e12 FLOP/s TPUv3
  # cores: 3.78e20 / 3.075e13 = 1.22927e7 core-seconds = 142.276 core-days.
  assert paper_compute.total_flops(row, flops_per_image) == pytest.approx(3.78e20)
  assert paper_compute.core_days_at(row, flops_per_image, 0.5) == pytest.approx(
      142.276, rel=1e-5)
  # 230 core-days are 230 x 86400 x 61.5e12 = 1.222128e21 peak FLOPs: MFU 0.309297.
  assert paper_compute.implied_mfu(row, flops_per_image) == pytest.approx(0.309297,
                                                                          rel=1e-5)


@pytest.mark.parametrize('mfu', [0.0, -0.1, 1.5])
def test_mfu_outside_zero_one_is_refused(mfu):
  with pytest.raises(ValueError, match=r'must be in \(0, 1\]'):
    forecast.step_seconds(1e12, 8, 1e12, mfu)


# ----------------------------------------------------------------------------------------
# The advice's arithmetic (measured by compiling in the tests below).
# ----------------------------------------------------------------------------------------
def test_fitting_batch_and_accum_steps_from_the_linear_memory_model():
  # fixed 100 + 10 per example, limit 200: 10 examples fit; power of two below: 8.
  assert advice._largest_fitting_batch(100, 10, 200, 16) == 8
  assert advice._largest_fitting_batch(100, 10, 105, 16) is None  # not even one.
  # 16 per device, micro-batches of 16/k: k=2 -> 180 fits 200.
  assert advice._accum_steps(100, 10, 200, 16, current=1) == 2
  assert advice._accum_steps(100, 10, 130, 16, current=1) == 8  # 100 + 10 x 2 = 120.
  assert advice._accum_steps(100, 10, 105, 16, current=1) is None


# ----------------------------------------------------------------------------------------
# The CLI: the memory prediction against the trainer's compile, and the refusals.
# ----------------------------------------------------------------------------------------
# (model, fsdp): the testing model has no leaf FSDP splits (all < 2^14 elements), so
# the FSDP case is ViT-Ti/16 (5.5M parameters) at the testing config's 32 px.
CASES = [('testing', False), ('ViT-Ti/16', True)]


def _trainer_step_memory(data_dir, model, fsdp):
  """The memory analysis of the step the training loop compiles on this process's 8
  simulated devices (state built and allocated as a run builds it)."""
  config = testing_config.get_config()
  config.data.data_dir = data_dir
  config.model = model
  config.fsdp = fsdp
  info = data_preflight.preflight(config)
  setup = build.setup(config, info.num_classes, sharding.make_mesh())
  analysis = build.compile_steps(setup, build.initialize(setup)).train_step.memory_analysis()
  return analysis, info.num_classes


@pytest.mark.parametrize('model,fsdp', CASES)
def test_memory_prediction_equals_the_trainers_compiled_step_on_8_devices(
    demo_data_dir, tmp_path, model, fsdp):
  out = tmp_path / 'plan.json'
  proc = run_plan('--config=configs/testing.py', '--topology=8xcpu',
                  f'--config.data.data_dir={demo_data_dir}', f'--config.model={model}',
                  f'--config.fsdp={fsdp}', f'--json={out}')
  plan = json.loads(out.read_text())
  analysis, num_classes = _trainer_step_memory(demo_data_dir, model, fsdp)
  assert plan['num_classes'] == num_classes == 100  # read from the tfds dataset
  memory = plan['memory']
  total = (analysis.argument_size_in_bytes + analysis.output_size_in_bytes
           - analysis.alias_size_in_bytes + analysis.temp_size_in_bytes)
  assert memory['total'] == total
  assert memory['temp'] == analysis.temp_size_in_bytes
  assert memory['argument_bytes'] == analysis.argument_size_in_bytes
  # The split of the arguments is exact: it sums to what XLA reports.
  assert (memory['parameters'] + memory['optimizer'] + memory['ema'] + memory['batch']
          + memory['other_arguments']) == memory['argument_bytes']
  # Adam's mu and nu (and its int32 step counts) follow the parameters' sharding.
  assert 0 <= memory['optimizer'] - 2 * memory['parameters'] <= 16
  if fsdp:  # ViT-Ti/16 at 32 px, 100 classes: 5,506,852 float32 parameters; FSDP
    # splits the leaves of >= 2^14 elements 8 ways (sharding.py), the rest stay whole.
    assert 5_506_852 * 4 / 8 < memory["parameters"] < 5_506_852 * 4 / 7
  else:  # testing: 22,596 float32 parameters (tests/test_param_counts.py), replicated.
    assert memory['parameters'] == 22_596 * 4
  assert 0 < plan['activations'] < memory['temp']
  assert 'fits, headroom' in proc.stdout and 'TPUv3-core-days' in proc.stdout


@pytest.mark.parametrize('args,expected', [
    (('--topology=v9-8',), 'no TPU v9; known: v2-{8,32,128,256,512}'),
    (('--topology=v2-8', '--config.batch_size=36'),
     'config.batch_size=36 must be divisible by devices (8)'),
    (('--topology=v3-32', '--config.batch_size=48'), 'use batch_size=64'),
    (('--topology=v2-8', '--mfu=0'), 'must be in (0, 1]'),
    (('--topology=v2-8', '--mfu=1.2'), 'must be in (0, 1]'),
    (('--topology=v2-8', '--config.data.dataset=/nonexistent/imagenet21k'),
     'pass --num_classes=N')])
def test_bad_input_is_refused_before_any_compile(args, expected):
  proc = run_plan('--config=configs/testing.py', *args, expect=1, timeout=120)
  assert expected in proc.stderr
  assert 'Plan:' not in proc.stdout


# ----------------------------------------------------------------------------------------
# The OOM preflight of `python -m vit_jax.main`.
# ----------------------------------------------------------------------------------------
def test_main_stops_before_the_first_step_when_the_step_cannot_fit(
    demo_data_dir, tmp_path, compile_cache):
  """8 simulated devices given 0.5 MiB each: the testing step needs ~0.7 MiB. The run
  stops with the measured options, before training anything."""
  workdir = tmp_path / 'run'
  proc = subprocess.run(
      main_command(workdir, demo_data_dir, '--config.memory_limit_gib=0.00048828125'),
      cwd=REPO, env=main_env(compile_cache), capture_output=True, text=True, timeout=300)
  log = proc.stderr
  assert proc.returncode == 1, log[-3000:]
  stopped = next(line for line in log.splitlines() if 'Stopped: ' in line)
  assert 'the train step needs' in stopped and 'a device has 512.00 KiB' in stopped
  assert 'config.memory_limit_gib=0.00048828125' in stopped
  assert 'with --config.batch_size=' in stopped and '(fits:' in stopped
  assert 'with --config.fsdp=True' in stopped and 'with --config.accum_steps=' in stopped
  assert 'Traceback' not in log
  assert 'step 1/' not in log and not (workdir / 'checkpoints').exists() or not any(
      (workdir / 'checkpoints').iterdir())


@pytest.mark.parametrize('kind,count,name', [
    ('TPU v3', 256, 'v3-256'), ('TPU v4', 64, 'v4-128'), ('TPU v5 lite', 64, 'v5e-64'),
    ('TPU v5', 64, 'v5p-128'), ('TPU v6 lite', 8, 'v6e-8'),
    ('NVIDIA H100 80GB HBM3', 8, '8xH100-SXM'), ('NVIDIA A100-SXM4-80GB', 16, '16xA100-80GB')])
def test_a_runs_devices_name_the_topology_the_planner_parses(kind, count, name):
  """The planner command a stopped run prints names its own topology."""
  fake = [types.SimpleNamespace(device_kind=kind, platform='tpu' if 'TPU' in kind else 'gpu')]
  named = topology.name_of(fake * count)
  parsed = topology.parse(named)
  assert (parsed.devices, parsed.device_name) == (topology.parse(name).devices,
                                                 devices.device_spec(kind).name)


def test_an_xla_out_of_memory_error_stops_the_run_in_one_line(tmp_path):
  # The text XLA:TPU raises when a compile cannot fit (its first line).
  xla = RuntimeError('RESOURCE_EXHAUSTED: XLA:TPU compile permanent error. Ran out of '
                     'memory in memory space hbm. Used 40.10G of 15.48G hbm.\nmore')
  with pytest.raises(errors.OutOfMemory) as stopped:
    with preflight.out_of_memory_stops(str(tmp_path)):
      raise xla
  message = str(stopped.value)
  assert 'Used 40.10G of 15.48G hbm' in message and 'more' not in message
  assert f'{tmp_path} keeps what it had' in message
  assert 'python -m vit_jax.plan --config=<this config> --topology=8xcpu' in message
  with pytest.raises(KeyError):  # anything else passes through untouched.
    with preflight.out_of_memory_stops(str(tmp_path)):
      raise KeyError('model')


def test_the_v3_default_mfu_is_the_paper_experiments_median():
  with open(os.path.join(REPO, 'experiments/paper_compute/results.json')) as f:
    rows = [r for r in json.load(f)['rows'] if not r['alternative']]
  assert [r['model'] for r in rows] == ['ViT-H/14', 'ViT-L/16', 'ViT-L/16']
  implied = sorted(r['implied_mfu'] for r in rows)
  assert default_mfu.PAPER_V3_MFU == pytest.approx(implied[1], abs=5e-4)
  assert default_mfu.default_mfu('TPU v3').mfu == default_mfu.PAPER_V3_MFU
  # Each row's figure is the arithmetic of paper_compute on its measured FLOPs.
  for r, row in zip(rows, [x for x in paper_compute.TABLE_2 if not x.alternative]):
    assert r['implied_mfu'] == pytest.approx(
        paper_compute.implied_mfu(row, r['flops_per_image']))
