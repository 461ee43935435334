"""The source grid of a published checkpoint: one rule (vit_posemb.source_grid) for
fit.load_pretrained, build.initialize (training), predict and analyze.

Published-layout files (old block numbering under a 'params/' prefix) of the tiny
models hold random params; nothing here compiles an init except the one test that
goes through build.initialize.
"""
import numpy as np
import pytest
from PIL import Image

from vit_jax.configs import common
from vit_jax.configs import testing as testing_config
from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax import build
from vit_jax.checkpoints import published
from vit_jax.checkpoints import fit
from vit_jax import inference
from vit_jax import models
from vit_jax import predict
from vit_jax import sharding
from vit_jax.models import vit_posemb

POSEMB = vit_posemb.POSEMB_KEY
# name, overrides, source size, fine-tuning size. 'testing': stride 4 (8x8 at 32 px);
# 'R+ViT-testing': ResNet stem stride 8 x patch 1 (4x4 at 32 px).
CASES = {'cls': ('testing', {}, 32, 48),
         'gap': ('testing', {'classifier': 'gap'}, 32, 48),
         'hybrid': ('R+ViT-testing', {}, 32, 64)}


def _write_published(path, model, seed=0) -> dict:
  """Random params of `model` as a published .npz stores them; returns ours, flat."""
  flat = {k: np.asarray(v) for k, v in
          published.flatten(tiny_checkpoints.random_params(model, seed)).items()}
  old_names = {'MultiHeadDotProductAttention_0': 'MultiHeadDotProductAttention_1',
               'LayerNorm_1/': 'LayerNorm_2/', 'MlpBlock_0': 'MlpBlock_3'}
  stored = {}
  for key, value in flat.items():
    for ours, theirs in old_names.items():
      key = key.replace(ours, theirs) if 'encoderblock_' in key else key
    stored['params/' + key] = value
  np.savez(path, **stored)
  return flat


def _load(path, model, **kwargs):
  init = tiny_checkpoints.random_params(model, seed=1)
  return fit.load_pretrained(str(path), model=model, init_params=init,
                                    return_report=True, **kwargs)


def _posemb(params):
  return np.asarray(published.flatten(params)[POSEMB])


@pytest.mark.parametrize('case', CASES, ids=str)
def test_inferred_grid_gives_the_params_of_the_explicit_size(tmp_path, case):
  name, overrides, source, size = CASES[case]
  path = tmp_path / 'published.npz'
  flat = _write_published(path, models.create(name, num_classes=10, **overrides))
  target = models.create(name, num_classes=5, image_size=size, **overrides)
  inferred, report = _load(path, target)
  explicit, _ = _load(path, target, source_image_size=source)
  for key, value in published.flatten(explicit).items():
    np.testing.assert_array_equal(published.flatten(inferred)[key], value, err_msg=key)
  prefix, side, new = int(case != 'gap'), source // target.stride, size // target.stride
  assert _posemb(inferred).shape == (1, prefix + new * new, 32)
  assert any(f'(grid {side}x{side} -> {new}x{new}, bilinear; source grid from: '
             f'{side}x{side} position-embedding grid x stride {target.stride})' in line
             for line in report)
  # predict / analyze read the same resolution and resample to the same embedding.
  assert vit_posemb.trained_image_size(flat, target) == (
      (source, source), f'{side}x{side} position-embedding grid x stride {target.stride}')
  assert inference.load(str(path), model_name=name).image_size == (source, source)
  at_size = inference.load(str(path), model_name=name, image_size=size)
  np.testing.assert_array_equal(_posemb(at_size.params), _posemb(inferred))


def test_explicit_size_wins_over_the_grid(tmp_path):
  path = tmp_path / 'published.npz'
  flat = _write_published(path, models.create('testing', num_classes=10))  # 8x8 grid
  target = models.create('testing', num_classes=5, image_size=48)  # 12x12 grid
  inferred, _ = _load(path, target)
  # 64x16 px is a 16x4 grid: the same 64 tokens, read as another layout.
  given, report = _load(path, target, source_image_size=(64, 16))
  expected = vit_posemb.resample_posemb(flat[POSEMB], (16, 4), (12, 12), 1)
  np.testing.assert_allclose(_posemb(given), expected, rtol=1e-6)
  assert not np.allclose(_posemb(given), _posemb(inferred))
  assert any('source_image_size 64x16 given, stride 4' in line for line in report)
  classifier = inference.load(str(path), model_name='testing', source_image_size='64x16')
  assert classifier.image_size == (64, 16)
  assert 'checkpoint resolution 64x16 (source_image_size 64x16 given' in classifier.notes[0]


def test_explicit_size_with_another_token_count_is_refused(tmp_path):
  path = tmp_path / 'published.npz'
  _write_published(path, models.create('testing', num_classes=10))
  target = models.create('testing', num_classes=5, image_size=48)
  with pytest.raises(ValueError, match=r'source_image_size 64x64 gives a 16x16 grid '
                     r'\(256 tokens at stride 4\).* has 64 grid tokens; give the size it '
                     r'was trained at \(32, as its 8x8 grid says'):
    _load(path, target, source_image_size=64)


def _non_square_file(tmp_path) -> tuple[str, dict]:
  path = str(tmp_path / 'wide.npz')  # trained at 48x32: a 12x8 grid, 96 tokens.
  model = models.create('testing', num_classes=10, image_size=(48, 32))
  return path, _write_published(path, model)


def test_non_square_grid_is_refused_naming_the_fix(tmp_path):
  path, flat = _non_square_file(tmp_path)
  target = models.create('testing', num_classes=5, image_size=64)
  with pytest.raises(ValueError) as error:
    _load(path, target)
  message = str(error.value)
  for part in (f'{POSEMB} has 96 grid tokens (after its class token): not a square',
               'nearest squares 9x9 = 36 px and 10x10 = 40 px', '48x32', '32x48',
               'source_image_size=(H, W) to checkpoints.fit.load_pretrained',
               'config.init_image_size', '--source_image_size=HxW'):
    assert part in message
  given, _ = _load(path, target, source_image_size=(48, 32))
  np.testing.assert_allclose(
      _posemb(given), vit_posemb.resample_posemb(flat[POSEMB], (12, 8), (16, 16), 1), rtol=1e-6)
  # A file made for exactly the model's grid needs nothing: loaded unchanged.
  same = models.create('testing', num_classes=5, image_size=(48, 32))
  np.testing.assert_array_equal(_posemb(_load(path, same)[0]), flat[POSEMB])


def test_non_square_grid_in_predict_and_analyze(tmp_path, capsys):
  path, _ = _non_square_file(tmp_path)
  with pytest.raises(ValueError, match='not a square grid'):
    inference.load(path, model_name='testing')
  assert inference.load(path, model_name='testing',
                        source_image_size='48x32').image_size == (48, 32)
  own = inference.load(path, model_name='testing', image_size='48x32')
  assert "the model's own 12x8 grid" in own.notes[0]
  image = str(tmp_path / 'img.png')
  Image.fromarray(np.full((40, 30, 3), 128, np.uint8)).save(image)
  assert predict.main(['predict', '--model=testing', f'--checkpoint={path}', image]) == 2
  assert '--source_image_size=HxW' in capsys.readouterr().err
  assert predict.main(['predict', '--model=testing', f'--checkpoint={path}',
                       '--source_image_size=48x32', image]) == 0
  assert 'checkpoint resolution 48x32' in capsys.readouterr().err
  argv = ['analyze', 'posemb', '--model=testing', f'--checkpoint={path}',
          f'--out={tmp_path / "out"}']
  assert analyze.main(argv) == 2
  assert analyze.main([*argv, '--source_image_size=48x32']) == 0
  with np.load(tmp_path / 'out' / 'posemb_similarity.npz') as data:
    assert data['similarity'].shape == (12, 8, 12, 8)


def test_analyze_reads_the_grid_of_a_hybrid(tmp_path, capsys):
  path = str(tmp_path / 'hybrid.npz')
  _write_published(path, models.create('R+ViT-testing', num_classes=10))
  assert analyze.main(['analyze', 'posemb', '--model=R+ViT-testing',
                       f'--checkpoint={path}', f'--out={tmp_path}']) == 0, \
      capsys.readouterr().err
  with np.load(tmp_path / 'posemb_similarity.npz') as data:
    assert data['similarity'].shape == (4, 4, 4, 4)  # 32 px / stride 8.


@pytest.mark.parametrize('file_classifier,model_classifier', [('token', 'gap'),
                                                              ('gap', 'token')])
def test_class_token_must_match_the_model(tmp_path, file_classifier, model_classifier):
  path = tmp_path / 'published.npz'
  _write_published(path, models.create('testing', num_classes=10,
                                       classifier=file_classifier))
  target = models.create('testing', num_classes=5, image_size=48,
                         classifier=model_classifier)
  with pytest.raises(ValueError, match=f"create the model with classifier='"
                     f"{file_classifier}'"):
    _load(path, target)


def test_init_image_size_defaults_to_none():
  assert common.get_config().init_image_size is None


def test_train_initialize_infers_the_grid_of_a_published_init(tmp_path):
  """build.initialize (training's) with init_image_size None: the 16 px file (4x4
  grid) is read as such and resampled to 24 px (6x6), as with init_image_size=16; a
  wrong explicit value is refused, not silently used."""
  path = str(tmp_path / 'published.npz')
  flat = _write_published(path, models.create('testing', num_classes=100,
                                              image_size=16))
  config = testing_config.get_config()
  config.image_size, config.init = 24, path
  assert config.init_image_size is None
  mesh = sharding.make_mesh()
  state = build.initialize(build.setup(config, 10, mesh))
  expected = vit_posemb.resample_posemb(flat[POSEMB], (4, 4), (6, 6), 1)
  np.testing.assert_allclose(_posemb(state.params), expected, rtol=1e-6)
  np.testing.assert_array_equal(state.params['embedding']['kernel'],
                                flat['embedding/kernel'])
  config.init_image_size = 32  # an 8x8 grid: not what the file holds.
  with pytest.raises(ValueError, match='source_image_size 32x32 gives a 8x8 grid'):
    build.initialize(build.setup(config, 10, mesh))
