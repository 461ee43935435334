"""`python -m vit_jax.analyze` end to end on a tiny published-layout checkpoint.

The command runs in-process (`analyze.main(argv)`, what `python -m` calls with
sys.argv): the same flag parsing, loading and plotting without a Python start-up and
JAX / TensorFlow import per call.
"""
import types

import numpy as np
import pytest
from PIL import Image

from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax.checkpoints import published
from vit_jax import models


@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('analyze')
  model = models.create('testing', num_classes=4)
  params = tiny_checkpoints.random_params(model)  # no init to compile.
  np.savez(tmp / 'tiny.npz', **{k: np.asarray(v)
                                for k, v in published.flatten(params).items()})
  image = (np.random.default_rng(0).uniform(size=(40, 50, 3)) * 255).astype(np.uint8)
  Image.fromarray(image).save(tmp / 'img.png')
  return tmp


def _analyze(capsys, what, tmp, *images):
  argv = ['analyze', what, '--model=testing', f'--checkpoint={tmp / "tiny.npz"}',
          f'--out={tmp / "out"}', '--image_size=32', '--source_image_size=32',
          '--components=6', *map(str, images)]
  returncode = analyze.main(argv)
  out, err = capsys.readouterr()
  return types.SimpleNamespace(returncode=returncode, stdout=out, stderr=err)


@pytest.mark.parametrize('what,png,npz_key', [
    ('posemb', 'posemb_similarity.png', ('posemb_similarity.npz', 'similarity', (8, 8, 8, 8))),
    ('filters', 'filters_pca.png', ('filters_pca.npz', 'components', (6, 4, 4, 3))),
    ('attention', 'attention.png', ('attention.npz', 'rollout', (1, 8, 8))),
    ('attention-distance', 'attention_distance.png',
     ('attention_distance.npz', 'distance_pixels', (2, 2))),
])
def test_each_analysis_writes_png_and_numbers(tiny_checkpoint, what, png, npz_key,
                                              capsys):
  result = _analyze(capsys, what, tiny_checkpoint, tiny_checkpoint / 'img.png')
  assert result.returncode == 0, result.stderr[-2000:]
  out = tiny_checkpoint / 'out'
  assert (out / png).stat().st_size > 1000
  name, key, shape = npz_key
  with np.load(out / name) as data:
    assert data[key].shape == shape
    assert np.all(np.isfinite(data[key]))


def test_attention_distance_lies_within_the_image(tiny_checkpoint, capsys):
  result = _analyze(capsys, 'attention-distance', tiny_checkpoint,
                    tiny_checkpoint / 'img.png')
  assert result.returncode == 0, result.stderr[-2000:]
  with np.load(tiny_checkpoint / 'out' / 'attention_distance.npz') as data:
    distance = data['distance_pixels']
  # 8x8 grid of 4 px patches: the largest centre-to-centre distance is 7 * 4 * sqrt(2).
  assert np.all(distance > 0) and np.all(distance < 7 * 4 * np.sqrt(2))
