"""Checkpoints for tests that read them back: random params without compiling an init,
and run directories as `vit_jax.main` leaves them (the training code's own checkpoint
writer and config serialisation)."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vit_jax import checkpoint
from vit_jax import cost
from vit_jax import steps
from vit_jax import train_checkpoint


def random_params(model, seed: int = 0) -> dict:
  """Random params for `model`, head included (its real init has a zero head, so every
  logit would tie). Shapes come from jax.eval_shape: nothing is compiled, where a
  jitted init of even the tiny models costs 5-10 CPU seconds (its random ops).
  Norm scales ~1, kernels ~ N(0, 1 / fan_in), everything else ~ N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)
  flat = {}
  for key, leaf in checkpoint.flatten(cost.abstract_params(model)).items():
    value = rng.normal(size=leaf.shape)
    if key.endswith('/scale'):
      value = 1.0 + 0.1 * value
    elif key.endswith('/kernel'):
      value = value / np.sqrt(np.prod(leaf.shape[:-1]))
    else:
      value = 0.1 * value
    flat[key] = jnp.asarray(value, leaf.dtype)
  return checkpoint.unflatten(flat)


def write_run_dir(workdir: str, config, params, step: int = 1) -> str:
  """<workdir>/config.json and checkpoints/<step> holding a TrainState with `params`."""
  os.makedirs(workdir, exist_ok=True)
  with open(f'{workdir}/config.json', 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  state = steps.init_state(params, optax.sgd(0.1), jax.random.key(0), 0.0)
  manager = train_checkpoint.create_manager(workdir, keep=1)
  train_checkpoint.save(manager, step, state,
                        {'config': json.loads(config.to_json_best_effort())})
  train_checkpoint.wait(manager)
  manager.close()
  return workdir
