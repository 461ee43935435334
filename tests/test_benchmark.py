"""python -m vit_jax.benchmark on the tiny ViT: real numbers, JSON lines, flag errors.

Timing values are only checked to be positive (never compared with a wall-clock bound):
the suite runs on shared 2-core machines.
"""
import json

import jax
import pytest

from vit_jax import benchmark
from vit_jax import models
from vit_jax.cost import flops
from vit_jax.cost import peaks
from vit_jax.speed import options
from vit_jax.speed import timing

BATCH = 8  # one example per simulated device (conftest: 8 CPU devices).


@pytest.fixture(scope='module')
def sweep_lines(tmp_path_factory):
  """One CLI run, train and infer interleaved: (stdout lines, --json file lines)."""
  path = tmp_path_factory.mktemp('bench') / 'out.jsonl'
  lines = benchmark.main(['--model', 'testing', '--res', '32', '--batch', str(BATCH),
                          '--steps', '2', '--warmup', '1', '--json', str(path),
                          '--sweep', 'mode=train,infer'])
  return lines, [json.loads(line) for line in path.read_text().splitlines()]


def test_sweep_gives_one_json_line_per_value(sweep_lines):
  printed, written = sweep_lines
  assert [line['mode'] for line in printed] == ['train', 'infer']
  assert written == json.loads(json.dumps(printed))


def test_reported_numbers_are_present_and_positive(sweep_lines):
  for line in sweep_lines[0]:
    for key in ('ms_per_step', 'ms_per_step_min', 'ms_per_step_max', 'images_per_second',
                'images_per_second_per_core', 'flops_per_step',
                'achieved_flops_per_second', 'peak_flops_per_second', 'mfu',
                'cpu_matmul_peak_float32', 'cpu_matmul_peak_bf16', 'compile_seconds',
                'peak_memory_bytes', 'load_average_start'):
      assert line[key] > 0, key
    assert line['ms_per_step_min'] <= line['ms_per_step'] <= line['ms_per_step_max']
    assert line['images_per_second'] == pytest.approx(
        BATCH / (line['ms_per_step'] / 1e3))
    assert line['images_per_second_per_core'] == pytest.approx(
        line['images_per_second'] / line['cores'])
    assert line['mfu'] == pytest.approx(
        line['achieved_flops_per_second'] / line['peak_flops_per_second'])
    assert line['devices'] == jax.device_count() == 8
    assert line['xla_memory_bytes']['argument'] > 0
    assert line['warmup_calls'] >= 1 and line['steps'] == 2
    assert line['minor_page_faults_per_step'] >= 0
    assert line['host_malloc'] == 'default'  # this test process was not restarted.


def test_flops_per_step_agree_with_analytic_macs(sweep_lines):
  """XLA's count of the compiled step vs forward MACs x 2 FLOPs x batch: the forward
  alone is ~1x (plus elementwise ops), a train step ~3x (forward + two backward
  matmuls per forward one) plus the optimiser update."""
  model = models.create('testing', num_classes=1000, image_size=32)
  forward_flops = 2 * flops.forward_macs(model) * BATCH
  train, infer = sweep_lines[0]
  assert 0.95 < infer['flops_per_step'] / forward_flops < 1.3
  assert 2.9 < train['flops_per_step'] / forward_flops < 4.0


@pytest.mark.parametrize('argv, message', [
    (['--mode', 'fit'], "--mode 'fit'; use one of ('train', 'infer')"),
    (['--dtype', 'float16'], "--dtype 'float16'; use one of"),
    (['--remat', 'sometimes'], "--remat 'sometimes'; use 'off' or one of"),
    (['--model', 'ViT-Q/16'], "--model 'ViT-Q/16' is not registered"),
    (['--sweep', 'res'], "--sweep 'res': expected name=value"),
    (['--sweep', 'res=22a'], "res='22a' is not an int"),
    (['--sweep', 'dtype=float32,fp8'], "--dtype 'fp8'"),
    (['--steps', '0'], '--steps 0 and --warmup 2 must be >= 1'),
    (['--override', 'fused_qkv'], "--override 'fused_qkv': expected name=value"),
    (['--override', 'patch_drop=0.5'], "unknown override(s) ['patch_drop']"),
    (['--override', 'attention_chunks=0'], 'attention_chunks=0: use a positive int'),
    (['--res', '250'], 'image size 250 is not divisible by the token stride 16'),
    (['--devices', '16'], 'devices=16 but this process has 8; on CPU add --cpu_devices 16'),
    (['--sweep', 'devices=0'], "--devices 0 must be a positive int"),
    (['--cpu_devices', 'many'], "cpu_devices='many': expected 'auto' or a positive int"),
    (['--devices', '3'], 'must be divisible by devices (3)'),
    (['--cpu_malloc'], '--cpu_malloc needs a process of its own'),
])
def test_bad_flags_fail_before_any_compile(argv, message, capsys):
  with timing.CompileCounter() as compiles, pytest.raises(SystemExit):
    benchmark.main(['--model', 'ViT-B/16', *argv])
  assert message in capsys.readouterr().err
  assert compiles.count == 0


def test_devices_sweep_times_one_device_and_the_whole_mesh(tmp_path):
  """`--sweep devices=1,8`: the first device alone, then all 8 with one XLA thread
  each (cpu_devices.step_compiler_options); both count the host's cores once."""
  lines = benchmark.main(['--model', 'testing', '--res', '32', '--batch', str(BATCH),
                          '--steps', '1', '--warmup', '1', '--sweep', 'devices=1,8'])
  assert [l['mesh_devices'] for l in lines] == [1, 8]
  assert lines[0]['step_compiler_options'] == {}
  assert lines[1]['step_compiler_options'] == {'xla_cpu_multi_thread_eigen': False}
  assert lines[0]['cores'] == lines[1]['cores'] == peaks.host_cpu_cores()
  # One device with XLA's threads: attention in chunks of 2 examples (on a multi-core
  # host); one thread per device: none (run_config.model_fields).
  expected = (BATCH + 1) // 2 if peaks.host_cpu_cores() > 1 else 1
  assert [l['attention_chunks'] for l in lines] == [min(expected, 8), 1]
  # Same model work; each of the 8 devices also runs the replicated optimiser update
  # (7% more FLOPs on this 0.1 GFLOP model).
  assert 1.0 < lines[1]['flops_per_step'] / lines[0]['flops_per_step'] < 1.15


def test_xla_option_values_are_typed():
  """XLA's option parser rejects the string 'false' for a bool option."""
  opts = options.configurations(options.Options(), [
      'xla.xla_cpu_multi_thread_eigen=false,default',
      'xla.xla_cpu_experimental_ynn_fusion_type=DOT|'])
  assert [o.xla_options for o in opts] == [
      (('xla_cpu_experimental_ynn_fusion_type', 'DOT'),
       ('xla_cpu_multi_thread_eigen', False)),
      (('xla_cpu_experimental_ynn_fusion_type', ''),
       ('xla_cpu_multi_thread_eigen', False)),
      (('xla_cpu_experimental_ynn_fusion_type', 'DOT'),),
      (('xla_cpu_experimental_ynn_fusion_type', ''),)]
  assert options.xla_option_value('4') == 4
