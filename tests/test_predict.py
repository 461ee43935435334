"""`python -m vit_jax.predict` in-process, on checkpoints whose answers are known.

The model is the tiny 'testing' ViT with classifier='gap' and hand-set weights: each
patch token holds the patch's mean R, G, B in channels 0..2 (the rest 0), the blocks
are identities (attention and MLP outputs zeroed), and the head reads channel c into
class c. The final LayerNorm is monotone within a token, so class 0 / 1 / 2 wins for a
red / green / blue image, whatever its size. Classes 3..9 have zero weights.
"""
import json

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vit_jax.configs import testing as testing_config
from tests import tiny_checkpoints
from vit_jax.checkpoints import published
from vit_jax.cost import flops
from vit_jax import inference
from vit_jax import models
from vit_jax import predict
from vit_jax import run_config
from vit_jax.data import images

NUM_CLASSES = 10  # the downstream demo task's, so a run directory can name them.
COLOURS = {'red': (230, 20, 30), 'green': (10, 200, 40), 'blue': (20, 30, 220)}


def colour_params() -> dict:
  """Flat params of the colour classifier (numpy; shapes from jax.eval_shape)."""
  model = models.create('testing', num_classes=NUM_CLASSES, classifier='gap')
  # All zero (blocks: zero attention output and MLP output, so identities; no position
  # embedding), LayerNorm scales 1, then the patch embedding and head by hand.
  flat = {k: np.full(v.shape, 1.0 if k.endswith('/scale') else 0.0, np.float32)
          for k, v in published.flatten(flops.abstract_params(model)).items()}
  for c in range(3):
    flat['embedding/kernel'][:, :, c, c] = 1 / 16  # (4, 4, 3, 32): channel c mean.
  flat['head/kernel'][[0, 1, 2], [0, 1, 2]] = 5.0  # (32, classes)
  return flat


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('predict')
  rng = np.random.default_rng(0)
  paths = {}
  for (name, rgb), (h, w), ext in zip(COLOURS.items(), [(40, 50), (64, 48), (32, 32)],
                                       ['png', 'jpg', 'png']):
    pixels = np.clip(np.array(rgb) + rng.integers(-15, 16, (h, w, 3)), 0, 255)
    paths[name] = str(tmp / f'{name}.{ext}')
    Image.fromarray(pixels.astype(np.uint8)).save(paths[name])
  paths['corrupt'] = str(tmp / 'corrupt.jpg')
  with open(paths['corrupt'], 'wb') as f:
    f.write(b'\xff\xd8 this is not a jpeg')
  paths['missing'] = str(tmp / 'no_such_image.png')
  flat = colour_params()
  paths['npz'] = str(tmp / 'colour.npz')
  np.savez(paths['npz'], **flat)
  paths['labels'] = str(tmp / 'labels.txt')
  with open(paths['labels'], 'w') as f:
    f.write('\n'.join([*COLOURS, *[f'other{i}' for i in range(3, NUM_CLASSES)]]) + '\n')
  return paths


@pytest.fixture(scope='module')
def run_dir(files, demo_data_dir, tmp_path_factory):
  """A run directory written by the training code's checkpoint and config writers."""
  workdir = str(tmp_path_factory.mktemp('run'))
  config = testing_config.get_config()
  config.model_overrides = ml_collections.ConfigDict({'classifier': 'gap'})
  config.image_size = 32
  config.data.dataset = 'vit_demo/downstream_tiny'
  config.data.data_dir = demo_data_dir
  params = published.unflatten({k: jnp.asarray(v) for k, v in colour_params().items()})
  return tiny_checkpoints.write_run_dir(workdir, config, params)


def _run(capsys, *argv):
  code = predict.main(['predict', *map(str, argv)])
  out, err = capsys.readouterr()
  return code, out, err


def test_published_npz_gives_the_known_top1_and_ordered_probabilities(files, capsys):
  code, out, err = _run(capsys, '--model=testing', f'--checkpoint={files["npz"]}',
                        f'--labels={files["labels"]}', '--json', '--top=10',
                        '--batch_size=2', files['red'], files['green'], files['blue'])
  assert code == 0, err
  result = json.loads(out)
  assert result['image_size'] == [32, 32]
  assert 'no crop' in result['preprocessing']  # the ViT fine-tuning convention.
  assert 'checkpoint resolution 32x32 (8x8 position-embedding grid' in err
  assert [r['image'] for r in result['predictions']] == [files[c] for c in COLOURS]
  for colour, prediction in zip(COLOURS, result['predictions']):
    probs = [t['probability'] for t in prediction['top']]
    assert prediction['top'][0]['label'] == colour
    assert probs[0] > 0.99
    assert probs == sorted(probs, reverse=True)
    np.testing.assert_allclose(sum(probs), 1.0, rtol=1e-5)  # all 10 classes shown.


def test_run_directory_defaults_model_size_and_labels_from_its_config(
    files, run_dir, demo_data_dir, capsys):
  code, out, err = _run(capsys, f'--checkpoint={run_dir}', files['blue'], files['red'])
  assert code == 0, err
  lines = out.splitlines()
  # Text output: the path, then the top 5 as '  probability  label'.
  assert lines[0] == files['blue'] and lines[6] == files['red']
  names = _demo_names(demo_data_dir)  # the run's dataset, read from config.json.
  assert lines[1].split()[1] == names[2] and lines[7].split()[1] == names[0]
  probs = [float(line.split()[0]) for line in lines[1:6]]
  assert len(probs) == 5 and probs == sorted(probs, reverse=True) and probs[0] > 0.99


def _demo_names(data_dir):
  """(vit_demo is registered by the demo_data_dir fixture, which rendered it.)"""
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
  return tfds.builder('vit_demo/downstream_tiny',
                      data_dir=data_dir).info.features['label'].names


def test_bad_path_and_corrupt_file_are_reported_and_the_rest_classified(files, capsys):
  code, out, err = _run(capsys, '--model=testing', f'--checkpoint={files["npz"]}',
                        f'--labels={files["labels"]}', '--json', files['missing'],
                        files['green'], files['corrupt'], files['red'])
  assert code == 1
  result = json.loads(out)
  assert [r['top'][0]['label'] for r in result['predictions']] == ['green', 'red']
  assert {e['image'] for e in result['errors']} == {files['missing'], files['corrupt']}
  assert f'error: {files["missing"]}: No such file or directory' in err
  assert f'error: {files["corrupt"]}: cannot decode image: Unknown image file format' in err


def test_usage_errors_name_the_fix(files, capsys):
  code, _, err = _run(capsys, f'--checkpoint={files["npz"]}', files['red'])
  assert code == 2 and '--model is required' in err
  code, _, err = _run(capsys, '--model=testing', f'--checkpoint={files["npz"]}',
                      '--labels=vit_demo/upstream_tiny', files['red'])
  assert code == 2 and 'name 100 classes but the checkpoint head has 10' in err
  code, out, _ = _run(capsys, '--help')
  assert code == 0 and '--batch_size' in out


def test_preprocessing_equals_the_eval_pipeline(files, run_dir):
  classifier = inference.load(run_dir)
  # The run's config, not the published files' 'resize'.
  assert classifier.preprocessing.resize == 'resize_crop'
  assert 'central 32x32 crop' in classifier.preprocessing.describe()
  with open(files['green'], 'rb') as f:
    encoded = f.read()
  # What the eval pipeline (data/pipeline.py) maps over an encoded record of this run.
  prep = run_config.eval_preprocessing(classifier.run_config)
  expected = images.eval_image(images.decoded({'encoded': tf.constant(encoded)}),
                               prep).numpy()
  np.testing.assert_array_equal(inference.image_preprocessor(classifier)(encoded),
                                expected)
