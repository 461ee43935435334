"""Checkpoints for tests that read them back: random params without compiling an init,
and run directories as `vit_jax.main` leaves them: written by the training code's own
checkpoint writer and config serialisation, or trained by `python -m vit_jax.main`."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_jax.checkpoints import published
from vit_jax.cost import flops
from vit_jax import steps
from vit_jax.checkpoints import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def random_params(model, seed: int = 0) -> dict:
  """Random params for `model`, head included (its real init has a zero head, so every
  logit would tie). Shapes come from jax.eval_shape: nothing is compiled, where a
  jitted init of even the tiny models costs 5-10 CPU seconds (its random ops).
  Norm scales ~1, kernels ~ N(0, 1 / fan_in), everything else ~ N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)
  flat = {}
  for key, leaf in published.flatten(flops.abstract_params(model)).items():
    value = rng.normal(size=leaf.shape)
    if key.endswith('/scale'):
      value = 1.0 + 0.1 * value
    elif key.endswith('/kernel'):
      value = value / np.sqrt(np.prod(leaf.shape[:-1]))
    else:
      value = 0.1 * value
    flat[key] = jnp.asarray(value, leaf.dtype)
  return published.unflatten(flat)


def write_run_dir(workdir: str, config, params, step: int = 1) -> str:
  """<workdir>/config.json and checkpoints/<step> holding a TrainState with `params`."""
  os.makedirs(workdir, exist_ok=True)
  with open(f'{workdir}/config.json', 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  state = steps.init_state(params, optax.sgd(0.1), jax.random.key(0), 0.0)
  manager = training.create_manager(workdir, keep=1)
  training.save(manager, step, state,
                        {'config': json.loads(config.to_json_best_effort())})
  training.wait(manager)
  manager.close()
  return workdir


def train_with_main(workdir: str, data_dir: str, *overrides: str, timeout: int = 300
                    ) -> str:
  """Trains configs/testing.py with `python -m vit_jax.main` in a child process (the
  real entry point, flags and config overrides as a user gives them); one simulated
  CPU device. Returns the workdir, a run directory as users get it."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS='--xla_force_host_platform_device_count=1')
  command = [sys.executable, '-m', 'vit_jax.main', '--config=configs/testing.py',
             f'--workdir={workdir}', f'--config.data.data_dir={data_dir}', *overrides]
  proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)
  if proc.returncode != 0:
    raise AssertionError(f'{" ".join(command)} exited with {proc.returncode}:\n'
                         f'{proc.stderr[-6000:]}')
  return workdir
