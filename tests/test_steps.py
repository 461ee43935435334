"""Train / eval steps: device-count invariance, gradient accumulation, FSDP, losses.

Runs on 8 simulated CPU devices (tests/conftest.py sets XLA_FLAGS); the 1-device
references are computed in the same process on a 1-device mesh.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vit_jax.configs import testing as testing_config
from vit_jax.platform import cpu_devices
from vit_jax import models
from vit_jax import optim
from vit_jax import sharding
from vit_jax import steps

NUM_CLASSES = 10
IMAGE = 16


def _config(**overrides):
  config = testing_config.get_config()
  with config.unlocked():
    config.update(overrides)
  return config


def _model(config):
  return models.create('testing', num_classes=NUM_CLASSES, image_size=(IMAGE, IMAGE),
                       **config.model_overrides)


def _batch(batch_size, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, NUM_CLASSES, batch_size)
  return {'image': rng.uniform(-1, 1, (batch_size, IMAGE, IMAGE, 3)).astype(np.float32),
          'label': np.eye(NUM_CLASSES, dtype=np.float32)[labels]}


def _run(config, mesh, batches, *, fsdp=False, min_size=1, compiler_options=None):
  """Initialises on `mesh`, applies len(batches) steps; returns (numpy params, metrics).

  compiler_options: compile the step ahead of time with these XLA options.
  """
  model, tx = _model(config), optim.make_optimizer(config)
  images = jnp.zeros((1, IMAGE, IMAGE, 3))
  init = jax.jit(lambda rng: model.init(rng, images, train=False)['params'])
  params = init(jax.random.PRNGKey(0))  # jit: eager init compiles every op alone (slow)
  state = steps.init_state(params, tx, jax.random.PRNGKey(1), config.ema_decay)
  state_sharding = sharding.state_shardings(state, mesh, fsdp=fsdp, min_size=min_size)
  state = jax.device_put(state, state_sharding)
  step = steps.jit_train_step(
      model=model, tx=tx, config=config, state_sharding=state_sharding,
      batch_sharding=sharding.batch_sharding(mesh), replicated=sharding.replicated(mesh))
  if compiler_options is not None:
    first = jax.device_put(batches[0], sharding.batch_sharding(mesh))
    step = step.lower(state, first).compile(compiler_options)
  metrics = []
  for batch in batches:
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
    state, m = step(state, batch)
    metrics.append(jax.device_get(m))
  return sharding.to_host(state), metrics, state_sharding


def _assert_trees_close(a, b, rtol=1e-5):
  """Each leaf within rtol of its own largest magnitude (floored at 1e-3).

  The floor covers leaves whose gradient is mathematically zero (attention key biases:
  softmax ignores a per-query constant), which hold float noise of ~1e-10 either way.
  """
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b) > 0
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(x, y, rtol=0, atol=rtol * max(np.abs(y).max(), 1e-3))


# The equality tests use SGD: its update is linear in the gradient. Adam would turn the
# ~1e-10 float noise of mathematically-zero gradients into +-lr updates (g / sqrt(v)).
SGD = dict(optimizer='sgd', lr=0.1, warmup_steps=1, weight_decay=0.1)


# One configuration for the three equality tests; each compares with the same 8-device,
# replicated, one-batch-per-update run (computed once).
EQUAL_CONFIG = dict(SGD, ema_decay=0.9)
BATCHES = [_batch(32, seed) for seed in range(2)]


@pytest.fixture(scope='module')
def reference_run():
  assert jax.device_count() == 8, 'conftest must simulate 8 CPU devices'
  return _run(_config(**EQUAL_CONFIG), sharding.make_mesh(), BATCHES)


def _assert_runs_equal(run, reference):
  state, metrics, _ = run
  ref_state, ref_metrics, _ = reference
  _assert_trees_close(state.params, ref_state.params)
  _assert_trees_close(state.opt_state, ref_state.opt_state)
  _assert_trees_close(state.ema_params, ref_state.ema_params)
  for a, b in zip(metrics, ref_metrics):
    for name in ('loss', 'grad_norm', 'update_norm', 'param_norm'):
      np.testing.assert_allclose(a[name], b[name], rtol=1e-5, err_msg=name)
  # The params moved: the comparison is not between two copies of the init.
  assert ref_metrics[-1]['update_norm'] > 1e-2 and ref_metrics[0]['loss'] > 2.0


def test_eight_devices_equal_one_device(reference_run):
  one = _run(_config(**EQUAL_CONFIG), sharding.make_mesh(jax.devices()[:1]), BATCHES)
  _assert_runs_equal(one, reference_run)


def test_one_thread_per_cpu_device_equals_one_device(reference_run):
  """The train-step options of --cpu_devices (one XLA thread per CPU device), as
  build.compile_steps picks them for this 8-device mesh, change no result."""
  mesh = sharding.make_mesh()
  options = cpu_devices.step_compiler_options(mesh)
  assert options == {'xla_cpu_multi_thread_eigen': False}
  assert cpu_devices.step_compiler_options(sharding.make_mesh(jax.devices()[:1])) == {}
  _assert_runs_equal(_run(_config(**EQUAL_CONFIG), mesh, BATCHES,
                          compiler_options=options), reference_run)


def test_accumulation_4x8_equals_batch_of_32(reference_run):
  accumulated = _run(_config(**EQUAL_CONFIG, accum_steps=4), sharding.make_mesh(), BATCHES)
  _assert_runs_equal(accumulated, reference_run)


def test_fsdp_equals_replicated(reference_run):
  fsdp = _run(_config(**EQUAL_CONFIG), sharding.make_mesh(), BATCHES, fsdp=True,
              min_size=64)
  split = [s for s in jax.tree.leaves(fsdp[2]) if s.spec != jax.sharding.PartitionSpec()]
  # Params, momentum and EMA of every kernel, the position embedding, ...
  assert len(split) >= 3 * 12, f'FSDP split only {len(split)} leaves'
  _assert_runs_equal(fsdp, reference_run)


def test_split_micro_batches_partitions_rows():
  x = jnp.arange(32)
  micro = np.asarray(steps.split_micro_batches(x, 4))
  assert micro.shape == (4, 8)
  np.testing.assert_array_equal(np.sort(micro.ravel()), np.arange(32))
  np.testing.assert_array_equal(micro[1], np.arange(1, 32, 4))


def test_softmax_xent_hand_computed():
  logits = jnp.array([[0.0, np.log(3.0)], [2.0, 2.0]])
  labels = jnp.array([[0.0, 1.0], [0.9, 0.1]])
  # Row 0: -log(3/4). Row 1: uniform softmax -> -(0.9 + 0.1) log(1/2) = log 2.
  np.testing.assert_allclose(steps.per_example_loss(logits, labels, 'softmax_xent'),
                             [-np.log(0.75), np.log(2.0)], rtol=1e-6)


def test_sigmoid_xent_matches_numpy():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (4, 5)).astype(np.float32)
  labels = (rng.uniform(size=(4, 5)) > 0.5).astype(np.float32)
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = -np.sum(labels * np.log(p) + (1 - labels) * np.log(1 - p), axis=-1)
  np.testing.assert_allclose(steps.per_example_loss(logits, labels, 'sigmoid_xent'),
                             expected, rtol=1e-5)


def test_eval_step_masks_padding():
  class Fixed:  # logits = the first NUM_CLASSES pixels of the image, no parameters.
    def apply(self, variables, images, train):
      return images.reshape(images.shape[0], -1)[:, :4]

  images = np.zeros((4, 2, 2, 3), np.float32)
  images[:, 0, 0, :] = 0
  images[[0, 1, 2, 3], 0, 0, [0, 1, 2, 0]] = 5.0  # predicted classes 0, 1, 2, 0
  labels = np.eye(4, dtype=np.float32)[[0, 1, 3, 1]]  # correct, correct, wrong, wrong
  mask = np.array([1, 1, 1, 0], np.float32)  # the last (wrong) row is padding
  out = steps.eval_step({}, {'image': images, 'label': labels, 'mask': mask},
                        model=Fixed(), config=_config())
  assert float(out['correct']) == 2.0 and float(out['count']) == 3.0


@pytest.mark.parametrize('labels,expected', [
    ([[0, 0, 1]], 1.0), ([[0, 1, 0]], 0.0),  # one-hot
    ([[0.05, 0.05, 0.9]], 1.0),  # smoothed
    ([[1, 0, 1]], 1.0), ([[1, 1, 0]], 0.0)])  # multi-hot: any positive counts
def test_correct_predictions(labels, expected):
  logits = jnp.array([[0.1, 0.2, 3.0]])
  assert float(steps.correct_predictions(logits, jnp.array(labels, jnp.float32))[0]) == expected
