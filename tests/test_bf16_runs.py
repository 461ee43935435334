"""A run trained with dtype='bf16_matmul' (the README's CPU-speed mode) through predict
and analyze.

`predict` and `analyze` once built the model from config.json with
`jnp.dtype(config['dtype'])`, which raises TypeError for 'bf16_matmul': every such run
crashed them. They now build it with run_config.create_model, as training did. The run
is made by `python -m vit_jax.main` itself (2 steps of configs/testing.py); predict and
analyze run through their main functions, what `python -m` calls.
"""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax import inference
from vit_jax import predict

STEPS = 2


@pytest.fixture(scope='module')
def bf16_run(tmp_path_factory, demo_data_dir) -> str:
  workdir = str(tmp_path_factory.mktemp('bf16_run'))
  return tiny_checkpoints.train_with_main(
      workdir, demo_data_dir, '--config.dtype=bf16_matmul',
      f'--config.total_steps={STEPS}', '--config.warmup_steps=1',
      f'--config.checkpoint_every_steps={STEPS}',
      '--config.eval_every_steps=0', '--config.log_every_steps=1')


@pytest.fixture(scope='module')
def image_files(tmp_path_factory) -> list[str]:
  tmp = tmp_path_factory.mktemp('bf16_images')
  rng = np.random.default_rng(0)
  paths = []
  for name, (h, w) in (('a.png', (20, 30)), ('b.jpg', (40, 24))):
    pixels = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
    paths.append(str(tmp / name))
    Image.fromarray(pixels).save(paths[-1])
  return paths


def test_the_run_loads_as_training_built_it(bf16_run):
  classifier = inference.load(bf16_run)
  assert classifier.run_config['dtype'] == 'bf16_matmul'
  # float32 compute with bf16 x bf16 -> float32 matmuls (run_config.model_dtypes).
  assert classifier.model.dtype == jnp.float32
  assert classifier.model.matmul_dtype == jnp.bfloat16
  assert classifier.image_size == (16, 16)  # configs/testing.py trains at 16 px.


def test_predict_classifies_every_image(bf16_run, image_files, demo_data_dir, capsys):
  code = predict.main(['predict', f'--checkpoint={bf16_run}', '--json', *image_files])
  out, err = capsys.readouterr()
  assert code == 0, err[-3000:]
  result = json.loads(out)
  assert result['errors'] == []
  assert [p['image'] for p in result['predictions']] == image_files
  # Class names of the run's dataset (vit_demo/upstream_tiny, 100 classes), from its
  # config.json (vit_demo is registered by the demo_data_dir fixture).
  names = tfds.builder('vit_demo/upstream_tiny',
                       data_dir=demo_data_dir).info.features['label'].names
  for prediction in result['predictions']:
    top = prediction['top']
    probs = [t['probability'] for t in top]
    assert len(top) == 5
    assert all(t['label'] == names[t['class_id']] for t in top)
    assert all(0 < p < 1 for p in probs) and probs == sorted(probs, reverse=True)
    assert sum(probs) <= 1 + 1e-6  # 5 of the 100 softmax probabilities.


def test_analyze_attention_writes_the_figure(bf16_run, image_files, tmp_path, capsys):
  out = tmp_path / 'out'
  code = analyze.main(['analyze', 'attention', f'--checkpoint={bf16_run}',
                       f'--out={out}', '--layers=0,1', *image_files])
  stdout, stderr = capsys.readouterr()
  assert code == 0, stderr[-3000:]
  assert f'wrote {out / "attention.png"}' in stdout
  assert (out / 'attention.png').stat().st_size > 1000
  with np.load(out / 'attention.npz') as data:
    rollout, raw = data['rollout'], data['raw_class_attention']
  # 2 images, 4x4 token grid (16 px / 4 px patches); 2 layers shown.
  assert rollout.shape == (2, 4, 4) and raw.shape == (2, 2, 4, 4)
  assert np.all(np.isfinite(rollout)) and np.all(rollout >= 0)
  # Raw class-token attention over the grid: a softmax row without its [cls] entry.
  assert np.all(raw >= 0) and np.all(raw.sum((-1, -2)) <= 1 + 1e-5)
