"""Patch-size resampling (FlexiViT §3.4, vit_jax/models/vit_patch_resize.py): the
defining property against the bilinear resize it inverts, the least-squares solution
when shrinking, and the loading paths (fine-tuning, predict, analyze) that use it."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from tests import test_predict
from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax import inference
from vit_jax import models
from vit_jax import predict
from vit_jax.checkpoints import fit
from vit_jax.checkpoints import published
from vit_jax.configs import testing as testing_config
from vit_jax.cost import flops
from vit_jax.models import vit_patch_resize
from vit_jax.models import vit_posemb

KERNEL, POSEMB = vit_patch_resize.KERNEL_KEY, vit_posemb.POSEMB_KEY


def _kernel(p: int, c_in: int = 3, dim: int = 5, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(p, p, c_in, dim))


def _tokens(kernel: np.ndarray, patches: np.ndarray) -> np.ndarray:
  """(n, p, p, C) patches -> (n, D) tokens <w, x>, per output feature."""
  return np.einsum('nhwc,hwcd->nd', patches, kernel)


def _upsample(patches: np.ndarray, new: int) -> np.ndarray:
  """B x with this module's matrix B, float64: (n, p, p, C) -> (n, new, new, C)."""
  n, p, _, c = patches.shape
  b = vit_patch_resize.resize_matrix(p, new)
  flat = np.einsum('ij,njc->nic', b, patches.reshape(n, p * p, c))
  return flat.reshape(n, new, new, c)


@pytest.mark.parametrize('old,new', [(4, 8), (3, 5), (4, 6), (8, 4), (5, 3), (1, 2)])
def test_resize_matrix_is_jax_bilinear_without_antialias(old, new):
  """B column k is jax.image.resize of the k-th basis patch (an independent
  implementation of the same resize; float32 there, hence the tolerance)."""
  b = vit_patch_resize.resize_matrix(old, new)
  assert b.shape == (new * new, old * old) and b.dtype == np.float64
  for k in range(old * old):
    basis = jnp.asarray(np.eye(old * old)[k].reshape(old, old), jnp.float32)
    column = jax.image.resize(basis, (new, new), 'bilinear', antialias=False)
    np.testing.assert_allclose(b[:, k], np.asarray(column).ravel(), atol=1e-6)
  np.testing.assert_allclose(b.sum(1), 1.0)  # an interpolation: rows sum to 1.


@pytest.mark.parametrize('old,new', [(4, 8), (3, 5), (2, 6), (4, 5)])
def test_pi_resize_keeps_every_token_when_growing(old, new):
  kernel = _kernel(old)
  patches = np.random.default_rng(1).normal(size=(16, old, old, 3))
  resized = vit_patch_resize.resample_patch_embedding(kernel, new)
  assert resized.shape == (new, new, 3, 5)
  np.testing.assert_allclose(_tokens(resized, _upsample(patches, new)),
                             _tokens(kernel, patches), rtol=1e-5, atol=1e-5)
  # The same with the patches upsampled by jax's resize (float32): what a model at
  # the new patch size sees of a bilinearly upsampled image.
  up = np.asarray(jax.image.resize(jnp.asarray(patches, jnp.float32), (16, new, new, 3),
                                   'bilinear', antialias=False), np.float64)
  np.testing.assert_allclose(_tokens(resized, up), _tokens(kernel, patches), atol=1e-4)


def test_bilinear_kernel_resize_breaks_the_property():
  """Guards the test above: the plain resize of the kernel changes the tokens."""
  kernel, patches = _kernel(4), np.random.default_rng(1).normal(size=(16, 4, 4, 3))
  resized = vit_patch_resize.resample_patch_embedding(kernel, 8, method='bilinear')
  np.testing.assert_allclose(resized, np.einsum(
      'ij,jcd->icd', vit_patch_resize.resize_matrix(4, 8),
      kernel.reshape(16, 3, 5)).reshape(8, 8, 3, 5))
  want = _tokens(kernel, patches)
  error = np.abs(_tokens(resized, _upsample(patches, 8)) - want).max()
  assert error > 0.5 * np.abs(want).max()  # ~4x the scale: 4x the pixels summed.


@pytest.mark.parametrize('old,new', [(8, 4), (5, 3), (6, 4)])
def test_shrinking_is_the_least_squares_solution(old, new):
  kernel = _kernel(old, c_in=2, dim=3)
  resized = vit_patch_resize.resample_patch_embedding(kernel, new)
  b = vit_patch_resize.resize_matrix(old, new)  # (new^2, old^2)
  # B^T w' = w has old^2 equations and new^2 unknowns per (c, d): overdetermined.
  expected, residual, _, _ = np.linalg.lstsq(b.T, kernel.reshape(old * old, 6),
                                             rcond=None)
  np.testing.assert_allclose(resized.reshape(new * new, 6), expected, atol=1e-10)
  assert residual.min() > 1e-3  # not exact: shrinking loses information.


def test_identity_resize_returns_the_kernel_itself():
  kernel = _kernel(4).astype(np.float32)
  for method in vit_patch_resize.METHODS:
    out = vit_patch_resize.resample_patch_embedding(kernel, (4, 4), method)
    assert out is kernel
  assert vit_patch_resize.resample_patch_embedding(kernel, 8).dtype == np.float32


def test_bad_shapes_sizes_and_methods_name_the_fix():
  with pytest.raises(ValueError, match=r'shape \(4, 2, 3, 5\) is not a square'):
    vit_patch_resize.resample_patch_embedding(np.zeros((4, 2, 3, 5)), 8)
  with pytest.raises(ValueError, match=r'new patch size \(8, 4\) must be square'):
    vit_patch_resize.resample_patch_embedding(_kernel(4), (8, 4))
  with pytest.raises(ValueError, match='new patch size 0 is not positive; give p >= 1'):
    vit_patch_resize.resample_patch_embedding(_kernel(4), 0)
  with pytest.raises(ValueError, match="method 'nearest': use one of"):
    vit_patch_resize.resample_patch_embedding(_kernel(4), 8, method='nearest')
  with pytest.raises(ValueError, match='old patch size 0 is not a positive int'):
    vit_patch_resize.resize_matrix(0, 4)


def _write_npz(path, model, seed=0) -> dict:
  flat = published.flatten(tiny_checkpoints.random_params(model, seed))
  np.savez(path, **{k: np.asarray(v) for k, v in flat.items()})
  return {k: np.asarray(v) for k, v in flat.items()}


def _zeros(model):
  return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype),
                      flops.abstract_params(model))


@pytest.mark.parametrize('new,grid', [(8, 4), (2, 16)])
def test_load_pretrained_resizes_the_patch_and_follows_the_grid(tmp_path, new, grid):
  """A /4 file at 32 px (8x8 grid) into a /8 (4x4 grid) or /2 (16x16) model."""
  src = _write_npz(tmp_path / 'src.npz', models.create('testing', num_classes=10))
  target = models.create('testing', num_classes=3, patch_size=new)
  for source_size in (None, 32):  # read from the grid, or given (run directories).
    params, report = fit.load_pretrained(
        str(tmp_path / 'src.npz'), model=target, init_params=_zeros(target),
        source_image_size=source_size, patch_size=new, return_report=True)
    assert (f'resampled {KERNEL} (4, 4, 3, 32) -> ({new}, {new}, 3, 32) (patch 4 -> '
            f'{new}, pseudo-inverse resize, FlexiViT §3.4)') in report
    np.testing.assert_allclose(params['embedding']['kernel'],
                               vit_patch_resize.resample_patch_embedding(src[KERNEL], new),
                               rtol=1e-6)
    posemb = params['Transformer']['posembed_input']['pos_embedding']
    assert posemb.shape == (1, 1 + grid * grid, 32)
    np.testing.assert_allclose(posemb, vit_posemb.resample_posemb(
        src[POSEMB], (8, 8), (grid, grid), 1), rtol=1e-6)
    assert any(line.startswith(f'resampled {POSEMB}: (1, 65, 32) -> '
                               f'(1, {1 + grid * grid}, 32) (grid 8x8 -> {grid}x{grid}')
               for line in report), report


def test_patch_size_argument_must_be_the_models(tmp_path):
  _write_npz(tmp_path / 'src.npz', models.create('testing', num_classes=10))
  target = models.create('testing', num_classes=3, patch_size=8)
  with pytest.raises(ValueError, match=r'patch_size \(2, 2\) but the model was created '
                     r'with patch_size \(8, 8\); create the model with patch_size=\(2, 2\)'):
    fit.load_pretrained(str(tmp_path / 'src.npz'), model=target,
                        init_params=_zeros(target), patch_size=2)


def test_bilinear_method_is_passed_through_and_hybrid_kernels_resize(tmp_path):
  hybrid = models.create('R+ViT-testing', num_classes=4)  # (1, 1, C, D) kernel.
  flat = _write_npz(tmp_path / 'h.npz', hybrid)
  at2 = models.create('R+ViT-testing', num_classes=4, patch_size=2)
  pi, report = fit.fit_params(flat, at2)
  # 1 -> 2 upsamples a feature cell to a constant 2x2 block: w' = w / 4 keeps <w, x>.
  np.testing.assert_allclose(pi['embedding']['kernel'],
                             np.tile(flat[KERNEL] / 4, (2, 2, 1, 1)), rtol=1e-6)
  assert any('(patch 1 -> 2, pseudo-inverse resize' in line for line in report)
  assert pi['Transformer']['posembed_input']['pos_embedding'].shape[1] == 1 + 2 * 2
  plain, report = fit.fit_params(flat, at2, patch_resize_method='bilinear')
  np.testing.assert_allclose(plain['embedding']['kernel'],
                             np.tile(flat[KERNEL], (2, 2, 1, 1)), rtol=1e-6)
  assert any('(patch 1 -> 2, bilinear resize of the kernel' in line for line in report)


def test_swin_hook_takes_the_patch_resize_keyword():
  """The Family contract: fit_params passes patch_resize_method to every family's
  adapt_checkpoint hook as a keyword; Swin's ignores it."""
  model = models.create('Swin-testing', num_classes=4)
  flat = published.flatten(tiny_checkpoints.random_params(model))
  params, _ = fit.fit_params(flat, model, patch_resize_method='pi')
  assert set(published.flatten(params)) == set(flat)


@pytest.fixture(scope='module')
def colour(tmp_path_factory):
  """test_predict's colour classifier (/4, classifier='gap') and three images."""
  tmp = tmp_path_factory.mktemp('patch_resize')
  np.savez(tmp / 'colour.npz', **test_predict.colour_params())
  rng = np.random.default_rng(0)
  for name, rgb in test_predict.COLOURS.items():
    pixels = np.clip(np.array(rgb) + rng.integers(-15, 16, (40, 48, 3)), 0, 255)
    Image.fromarray(pixels.astype(np.uint8)).save(tmp / f'{name}.png')
  return tmp


def test_predict_at_patch_8_equals_the_resized_model(colour, capsys):
  paths = [str(colour / f'{name}.png') for name in test_predict.COLOURS]
  code = predict.main(['predict', '--model=testing', f'--checkpoint={colour}/colour.npz',
                       '--patch_size=8', '--json', '--top=10', *paths])
  out, err = capsys.readouterr()
  assert code == 0, err
  assert 'resampled embedding/kernel (4, 4, 3, 32) -> (8, 8, 3, 32)' in err
  result = json.loads(out)
  # Independently: the /8 model with the kernel resized by hand, the all-zero
  # position embedding at the 4x4 grid.
  flat = test_predict.colour_params()
  flat[KERNEL] = vit_patch_resize.resample_patch_embedding(flat[KERNEL], 8)
  flat[POSEMB] = np.zeros((1, 16, 32), np.float32)
  model = models.create('testing', num_classes=10, classifier='gap', patch_size=8)
  classifier = inference.load(f'{colour}/colour.npz', model_name='testing')
  images = np.stack([inference.image_preprocessor(classifier)(open(p, 'rb').read())
                     for p in paths])
  logits = model.apply({'params': published.unflatten(flat)}, images, train=False)
  expected = np.asarray(jax.nn.softmax(logits))
  for row, prediction in zip(expected, result['predictions']):
    got = {t['class_id']: t['probability'] for t in prediction['top']}
    np.testing.assert_allclose([got[i] for i in range(10)], row, rtol=1e-5, atol=1e-6)
  assert [p['top'][0]['class_id'] for p in result['predictions']] == [0, 1, 2]


def test_analyze_filters_at_another_patch_size(colour, capsys):
  code = analyze.main(['analyze', 'filters', '--model=testing', '--components=3',
                       f'--checkpoint={colour}/colour.npz', f'--out={colour}/out',
                       '--patch_size=2'])
  assert code == 0, capsys.readouterr().err
  assert np.load(colour / 'out' / 'filters_pca.npz')['components'].shape[1:] == (2, 2, 3)


def test_patch_size_the_image_does_not_divide_is_refused(colour):
  with pytest.raises(ValueError, match='--patch_size 3: image size 32 is not divisible '
                     'by the token stride 3'):
    inference.load(f'{colour}/colour.npz', model_name='testing', patch_size=3)


def test_patch_size_is_refused_for_swin(tmp_path, colour, capsys):
  config = testing_config.get_config()
  config.model, config.image_size = 'Swin-testing', 32
  config.model_overrides = ml_collections.ConfigDict({})
  params = tiny_checkpoints.random_params(models.create('Swin-testing', num_classes=10))
  run = tiny_checkpoints.write_run_dir(str(tmp_path / 'swin'), config, params)
  code = predict.main(['predict', f'--checkpoint={run}', '--patch_size=2',
                       str(colour / 'red.png')])
  err = capsys.readouterr().err
  assert code == 2
  assert ('error: --patch_size 2: resizing the patch embedding (FlexiViT pseudo-inverse '
          'resize) is implemented for ViT and hybrids, and Swin-testing is a Swin model'
          in err), err
  assert 'leave --patch_size out' in err
