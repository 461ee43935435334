"""--cpu_devices and --cpu_malloc: parsing, the too-late error, and fresh processes."""
import json
import os
import subprocess
import sys

import jax
import pytest

from vit_jax.cost import peaks
from vit_jax.platform import cpu_devices
from vit_jax.platform import host_malloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('value, expected', [
    ('auto', peaks.host_cpu_cores()), ('AUTO', peaks.host_cpu_cores()), ('3', 3), (2, 2)])
def test_resolve(value, expected):
  assert cpu_devices.resolve(value) == expected


@pytest.mark.parametrize('value', ['0', '-2', 'two', '', None, 1.5])
def test_resolve_rejects_naming_the_value(value):
  with pytest.raises(ValueError, match=f"cpu_devices={value!r}: expected 'auto' or a "
                     'positive int'):
    cpu_devices.resolve(value)


def test_configure_after_the_backend_started_says_when_to_set_it():
  jax.devices()  # this test process's backend exists (8 devices, conftest).
  with pytest.raises(RuntimeError, match='must be set before JAX creates its CPU backend'):
    cpu_devices.configure(2)


def test_benchmark_process_gets_the_devices_and_malloc_settings(tmp_path):
  """A fresh process: --cpu_devices 2 gives 2 CPU devices and a 2-device mesh;
  --cpu_malloc restarts it with host_malloc's settings, recorded in the JSON line."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
  env.pop('XLA_FLAGS', None)  # conftest's 8 simulated devices would override it.
  out = subprocess.run(
      [sys.executable, '-m', 'vit_jax.benchmark', '--model', 'testing', '--res', '32',
       '--batch', '4', '--steps', '1', '--warmup', '1', '--cpu_devices', '2', '--cpu_malloc'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=True)
  line = json.loads(out.stdout.strip().splitlines()[-1])
  assert (line['devices'], line['mesh_devices']) == (2, 2)
  assert line['step_compiler_options'] == {'xla_cpu_multi_thread_eigen': False}
  assert line['host_malloc'] == host_malloc.TUNED_ENV


def test_host_malloc_is_active_only_with_every_setting(monkeypatch):
  for name, value in host_malloc.TUNED_ENV.items():
    monkeypatch.setenv(name, value)
  assert host_malloc.active() and host_malloc.describe() == host_malloc.TUNED_ENV
  host_malloc.reexec()  # already in place: returns instead of replacing this process.
  monkeypatch.setenv('MALLOC_ARENA_MAX', '8')
  assert not host_malloc.active() and host_malloc.describe() == 'default'
