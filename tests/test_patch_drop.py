"""Patch drop (vit_jax/analysis/patch_drop.py): kept sets, the models' patch_keep path
against hand-built references, and `analyze patch-drop` end to end in-process."""
import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vit_jax.configs import testing as testing_config
from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax.checkpoints import published
from vit_jax.data import pipeline
from vit_jax import models
from vit_jax import steps
from vit_jax.analysis import patch_drop
from vit_jax.models import swin
from vit_jax.models import vit

FRACTIONS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _jit_apply(model):
  """Compiled (params, images, patch_keep) -> logits; eager apply is op by op, slow."""
  return jax.jit(lambda params, images, keep: model.apply(
      {'params': params}, images, train=False, patch_keep=keep))


@pytest.mark.parametrize('num', [16, 49, 64])
def test_kept_sets_have_round_half_up_size_and_are_seeded_and_nested(num):
  ids = np.arange(5)
  previous = None
  for f in FRACTIONS:
    keep = patch_drop.keep_indices(num, f, seed=3, image_ids=ids)
    expected = int(np.floor((1 - f) * num + 0.5))
    assert keep.shape == (5, expected) and keep.dtype == np.int32
    assert all(len(set(row)) == expected and list(row) == sorted(row) for row in keep)
    assert keep.min() >= 0 and keep.max() < num
    np.testing.assert_array_equal(keep, patch_drop.keep_indices(num, f, 3, ids))
    if previous is not None:  # what 10% drops, 20% drops too.
      assert all(set(k) <= set(p) for k, p in zip(keep, previous))
    previous = keep
  assert patch_drop.kept_count(64, 0.1) == 58  # 57.6 -> 58.
  assert patch_drop.kept_count(10, 0.25) == 8  # 7.5 -> 8: halves round up.
  other_image = patch_drop.keep_indices(num, 0.5, 3, np.array([0, 1]))
  assert not np.array_equal(other_image[0], other_image[1])
  mask = swin.patch_mask(jnp.asarray(keep), (5, 1, num))
  np.testing.assert_array_equal(np.asarray(mask).sum(axis=(1, 2, 3)), keep.shape[1])
  with pytest.raises(ValueError, match='outside'):
    patch_drop.kept_count(num, 1.0)


@pytest.mark.parametrize('classifier', ['token', 'gap'])
def test_vit_drop_equals_the_model_run_on_the_kept_tokens_by_hand(classifier):
  model = models.create('testing', num_classes=5, classifier=classifier)
  params = tiny_checkpoints.random_params(model)
  images = np.random.default_rng(2).uniform(-1, 1, (3, 32, 32, 3)).astype(np.float32)
  keep = patch_drop.keep_indices(64, 0.7, seed=0, image_ids=np.arange(3))  # (3, 19)
  got = _jit_apply(model)(params, images, keep)
  # By hand: 4x4 patches flattened (row, col, channel) times the conv kernel, the
  # position embedding of each kept patch, then the same blocks on the short sequence.
  patches = np.asarray(images).reshape(3, 8, 4, 8, 4, 3).transpose(0, 1, 3, 2, 4, 5)
  kernel = np.asarray(params['embedding']['kernel']).reshape(48, 32)
  tokens = patches.reshape(3, 64, 48) @ kernel + np.asarray(params['embedding']['bias'])
  posemb = np.asarray(params['Transformer']['posembed_input']['pos_embedding'])[0]
  prefix = int(classifier == 'token')
  tokens = tokens + posemb[prefix:]
  seq = np.take_along_axis(tokens, keep[..., None], axis=1)  # (3, 19, 32)
  if prefix:
    cls = np.asarray(params['cls'])[0] + posemb[:1]
    seq = np.concatenate([np.broadcast_to(cls, (3, 1, 32)), seq], axis=1)
  encoder = vit.Encoder(num_layers=model.num_layers, mlp_dim=model.mlp_dim,
                        num_heads=model.num_heads, grid=model.grid,
                        num_prefix_tokens=prefix, posemb='none')
  blocks = {k: v for k, v in params['Transformer'].items() if k != 'posembed_input'}
  x = jax.jit(functools.partial(encoder.apply, train=False))(
      {'params': blocks}, jnp.asarray(seq, jnp.float32))
  x = x[:, 0] if prefix else x.mean(axis=1)
  want = x @ params['head']['kernel'] + params['head']['bias']
  np.testing.assert_allclose(got, want, atol=2e-5, rtol=2e-5)


@pytest.mark.parametrize('name,invariant', [
    ('testing', True), ('Swin-testing', True),
    ('R+ViT-testing', False),  # the ResNet stem mixes dropped pixels into kept cells.
])
def test_dropped_patch_pixels_do_not_matter_except_for_hybrids(name, invariant):
  model = models.create(name, num_classes=5)
  params = tiny_checkpoints.random_params(model)
  rng = np.random.default_rng(2)
  images = rng.uniform(-1, 1, (2, 32, 32, 3)).astype(np.float32)
  grid_h, grid_w = model.grid
  keep = patch_drop.keep_indices(grid_h * grid_w, 0.5, 0, np.arange(2))
  dropped = np.ones((2, grid_h * grid_w), bool)
  np.put_along_axis(dropped, keep, False, axis=1)
  side = 32 // grid_h  # input pixels per patch side.
  pixel_mask = np.kron(dropped.reshape(2, grid_h, grid_w), np.ones((side, side)))
  noise = rng.uniform(-1, 1, images.shape).astype(np.float32)
  changed = np.where(pixel_mask[..., None] > 0, noise, images)
  apply = _jit_apply(model)
  same = np.allclose(apply(params, images, keep), apply(params, changed, keep),
                     atol=1e-6)
  assert same == invariant


@pytest.fixture(scope='module')
def eval_setup(demo_data_dir):
  return patch_drop.eval_config(
      dataset='vit_demo/downstream_tiny', split='test', data_dir=demo_data_dir,
      image_size=(32, 32), batch_size=16, eval_resize='resize_crop',
      eval_crop_ratio=1.143)  # 50 test images: 3 full batches and a padded one.


@pytest.mark.parametrize('name', ['testing', 'Swin-testing'])
def test_zero_drop_equals_plain_evaluation(name, eval_setup):
  model = models.create(name, num_classes=10)
  params = tiny_checkpoints.random_params(model, seed=4)
  batches = list(pipeline.host_eval_dataset(
      eval_setup, process_index=0, process_count=1).as_numpy_iterator())
  eval_step = jax.jit(functools.partial(
      steps.eval_step, model=model, config=ml_collections.ConfigDict(
          {'loss': 'softmax_xent'})))
  sums = [jax.device_get(eval_step(params, b)) for b in batches]
  plain = sum(s['correct'] for s in sums) / sum(s['count'] for s in sums)
  curve = patch_drop.accuracy_curve(model, params, batches, [0.0], seeds=[0, 1])
  assert curve['num_images'] == 50
  assert curve['accuracy'] == [plain] and plain > 0  # exactly equal
  full = np.arange(64)  # every patch kept, in order: the same predictions.
  both = jax.jit(lambda p, x: [model.apply({'params': p}, x, train=False, patch_keep=k)
                               for k in (None, full)])
  for batch in batches:
    plain_logits, kept_logits = both(params, batch['image'])
    np.testing.assert_array_equal(plain_logits.argmax(-1), kept_logits.argmax(-1))


def test_patch_drop_cli_end_to_end_on_a_run_directory(demo_data_dir, tmp_path, capsys):
  config = testing_config.get_config()  # model 'testing' at 16 px: 4x4 = 16 patches.
  config.data.dataset = 'vit_demo/downstream_tiny'
  config.data.data_dir = demo_data_dir
  model = models.create('testing', num_classes=10, image_size=16)
  tiny_checkpoints.write_run_dir(str(tmp_path / 'run'), config, tiny_checkpoints.random_params(model))
  argv = ['analyze', 'patch-drop', f'--checkpoint={tmp_path / "run"}',
          f'--out={tmp_path / "out"}', '--fractions=0,0.5,0.9', '--seeds=2',
          '--batch_size=32']
  assert analyze.main(argv) == 0, capsys.readouterr().err
  with open(tmp_path / 'out' / 'patch_drop.json') as f:
    result = json.load(f)
  assert result['fractions'] == [0.0, 0.5, 0.9] and result['kept_patches'] == [16, 8, 2]
  assert result['num_images'] == 50 and result['dataset'] == 'vit_demo/downstream_tiny'
  assert result['model'] == 'testing' and result['method'] == 'tokens removed'
  assert np.asarray(result['accuracy_per_seed']).shape == (2, 3)
  assert result['accuracy_per_seed'][0][0] == result['accuracy_per_seed'][1][0]
  assert (tmp_path / 'out' / 'patch_drop.png').stat().st_size > 1000
  # A published file has no run config: the dataset must be named.
  params = tiny_checkpoints.random_params(model)
  np.savez(tmp_path / 'tiny.npz', **{k: np.asarray(v) for k, v in
                                     published.flatten(params).items()})
  argv = ['analyze', 'patch-drop', '--model=testing', f'--out={tmp_path / "out"}',
          f'--checkpoint={tmp_path / "tiny.npz"}']
  assert analyze.main(argv) == 2
  assert 'patch-drop on a published file needs --dataset' in capsys.readouterr().err
  argv = ['analyze', 'patch-drop', f'--out={tmp_path / "out"}',
          f'--checkpoint={tmp_path / "run"}', '--fractions=0,1']
  assert analyze.main(argv) == 2
  assert 'drop fraction 1.0 is outside [0, 1)' in capsys.readouterr().err
