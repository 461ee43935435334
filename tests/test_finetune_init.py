"""Fine-tuning initialisation: position-embedding resampling and load_pretrained."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from vit_jax.checkpoints import published

from vit_jax.checkpoints import fit
from vit_jax import models
from vit_jax.models import vit_posemb


def test_resample_same_grid_is_exact_noop():
  posemb = np.random.default_rng(0).normal(size=(1, 1 + 14 * 14, 8)).astype(np.float32)
  out = vit_posemb.resample_posemb(posemb, (14, 14), (14, 14), 1)
  assert out is posemb


def test_corner_aligned_bilinear_keeps_a_linear_ramp_linear():
  rows, cols = np.mgrid[:14, :14]
  ramp = np.stack([rows * 2.0 + cols * 0.5, -cols * 1.0], -1).reshape(1, 196, 2)
  cls = np.array([[[7.0, -7.0]]])
  out = vit_posemb.resample_posemb(np.concatenate([cls, ramp], 1), (14, 14), (24, 24), 1)
  np.testing.assert_array_equal(out[0, 0], [7.0, -7.0])  # class token untouched.
  # Corner-aligned: output pixel i sits at input coordinate i * 13 / 23.
  r, c = np.mgrid[:24, :24] * (13 / 23)
  expected = np.stack([r * 2.0 + c * 0.5, -c], -1).reshape(576, 2)
  np.testing.assert_allclose(out[0, 1:], expected, atol=1e-9)


def test_resample_equals_scipy_zoom_for_a_non_square_grid():
  grid = np.random.default_rng(0).normal(size=(14, 14, 4))
  posemb = np.concatenate([np.zeros((1, 1, 4)), grid.reshape(1, 196, 4)], 1)
  out = vit_posemb.resample_posemb(posemb, (14, 14), (24, 16), 1)  # 224x224 -> 384x256
  expected = ndimage.zoom(grid, (24 / 14, 16 / 14, 1), order=1)
  np.testing.assert_allclose(out[0, 1:].reshape(24, 16, 4), expected, atol=1e-12)


def test_resample_methods_and_errors():
  posemb = np.random.default_rng(0).normal(size=(1, 16, 4))
  out = vit_posemb.resample_posemb(posemb, (4, 4), (8, 8), 0, method='bicubic')
  assert out.shape == (1, 64, 4)
  with pytest.raises(ValueError, match="method 'nearest'"):
    vit_posemb.resample_posemb(posemb, (4, 4), (8, 8), 0, method='nearest')
  with pytest.raises(ValueError, match='has 16 grid tokens but the source grid 5x5'):
    vit_posemb.resample_posemb(posemb, (5, 5), (8, 8), 0)


def _init(model):
  h, w = model.image_size
  return model.init(jax.random.key(1), jnp.zeros((1, h, w, 3)), train=False)['params']


def _save_npz(path, params):
  np.savez(path, **{k: np.asarray(v) for k, v in published.flatten(params).items()})


def test_load_pretrained_resamples_and_replaces_head(tmp_path, caplog):
  source = models.create('testing', num_classes=100, representation_size=32)
  src = jax.tree_util.tree_map(lambda x: x + 1.0, _init(source))  # nonzero head
  _save_npz(tmp_path / 'src.npz', src)
  target = models.create('testing', num_classes=5, image_size=(48, 32))
  with caplog.at_level(logging.INFO):
    params, report = fit.load_pretrained(
        str(tmp_path / 'src.npz'), model=target, init_params=_init(target),
        source_image_size=32, return_report=True)
  posemb = params['Transformer']['posembed_input']['pos_embedding']
  assert posemb.shape == (1, 1 + 12 * 8, 32)
  np.testing.assert_array_equal(posemb[0, 0],
                                src['Transformer']['posembed_input']['pos_embedding'][0, 0])
  np.testing.assert_array_equal(params['head']['kernel'], np.zeros((32, 5)))
  assert 'pre_logits' not in params
  np.testing.assert_array_equal(params['embedding']['kernel'], src['embedding']['kernel'])
  assert any(l.startswith('resampled Transformer/posembed_input/pos_embedding: '
                          '(1, 65, 32) -> (1, 97, 32) (grid 8x8 -> 12x8') for l in report)
  assert 'dropped pre_logits/kernel (model has representation_size=None)' in report
  assert any(l.startswith('re-initialised head/kernel (32, 5)') for l in report)
  assert 'resampled Transformer/posembed_input/pos_embedding' in caplog.text
  assert not any(l.startswith('loaded Transformer/posembed_input') for l in report)
  assert 'loaded embedding/kernel (4, 4, 3, 32)' in report


def test_load_pretrained_keeps_pre_logits_when_configured(tmp_path):
  source = models.create('testing', num_classes=100, representation_size=32)
  src = jax.tree_util.tree_map(lambda x: x + 1.0, _init(source))
  _save_npz(tmp_path / 'src.npz', src)
  target = models.create('testing', num_classes=5, representation_size=32)
  params = fit.load_pretrained(str(tmp_path / 'src.npz'), model=target,
                                      init_params=_init(target))
  np.testing.assert_array_equal(params['pre_logits']['kernel'],
                                src['pre_logits']['kernel'])


def test_load_pretrained_lists_what_does_not_fit(tmp_path):
  _save_npz(tmp_path / 'src.npz', _init(models.create('testing', num_classes=10)))
  wider = models.create('testing', num_classes=10, mlp_dim=48)
  with pytest.raises(published.CheckpointMismatchError, match='MlpBlock_0/Dense_0/kernel: '
                     r'file \(32, 64\) vs model \(32, 48\)'):
    fit.load_pretrained(str(tmp_path / 'src.npz'), model=wider,
                               init_params=_init(wider))


def test_grid_change_without_source_size_reads_the_square_grid(tmp_path):
  """No source_image_size: the 8x8 grid of the file (32 px) is read from its 65 tokens
  and resampled to 16x16, exactly as with source_image_size=32 (tests/
  test_source_grid.py has the other cases and the refusals)."""
  _save_npz(tmp_path / 'src.npz', _init(models.create('testing', num_classes=10)))
  big = models.create('testing', num_classes=10, image_size=64)
  init = _init(big)
  inferred, report = fit.load_pretrained(str(tmp_path / 'src.npz'), model=big,
                                                init_params=init, return_report=True)
  given = fit.load_pretrained(str(tmp_path / 'src.npz'), model=big,
                                     init_params=init, source_image_size=32)
  np.testing.assert_array_equal(inferred['Transformer']['posembed_input']['pos_embedding'],
                                given['Transformer']['posembed_input']['pos_embedding'])
  assert any('(grid 8x8 -> 16x16, bilinear; source grid from: 8x8 position-embedding '
             'grid x stride 4)' in line for line in report)
