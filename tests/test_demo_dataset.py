"""The offline demo dataset: deterministic scenes, labels that mean what they say,
resolution-independent rendering, and the registered tfds builder."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax.datasets import demo


def test_examples_are_a_pure_function_of_their_index():
  a, label_a = demo.example('upstream', 'train', 5)
  b, label_b = demo.example('upstream', 'train', 5)
  c, _ = demo.example('upstream', 'train', 6)
  assert label_a == label_b
  np.testing.assert_array_equal(demo.render(a, 32), demo.render(b, 32))
  assert not np.array_equal(demo.render(a, 32), demo.render(c, 32))
  test, _ = demo.example('upstream', 'test', 5)  # splits draw different scenes
  assert not np.array_equal(demo.render(a, 32), demo.render(test, 32))


def test_upstream_label_is_upper_shape_then_lower_shape():
  names = demo.label_names('upstream')
  assert len(names) == 100 and names[23] == 'triangle_above_plus'
  labels = []
  for i in range(300):
    scene, label = demo.example('upstream', 'train', i)
    upper, lower = np.argsort(scene.centre[:, 1])  # y points down
    assert (scene.shape[upper], scene.shape[lower]) == divmod(label, 10)
    assert scene.centre[lower, 1] - scene.centre[upper, 1] > 0.12
    assert scene.radius[0] == scene.radius[1] >= 0.18
    labels.append(label)
  assert len(set(labels)) > 90  # labels are drawn uniformly over 100 classes


def test_downstream_label_is_the_shape_of_the_topmost_object():
  assert demo.label_names('downstream')[3] == 'topmost_plus'
  for i in range(200):
    scene, label = demo.example('downstream', 'train', i)
    assert len(set(scene.shape.tolist())) == 3
    order = np.argsort(scene.centre[:, 1])
    assert scene.shape[order[0]] == label
    assert scene.centre[order[1], 1] - scene.centre[order[0], 1] > 0.06


def test_render_is_resolution_independent():
  scene, _ = demo.example('downstream', 'train', 0)
  big = demo.render(scene, 128).astype(float)
  small = demo.render(scene, 32).astype(float)
  pooled = big.reshape(32, 4, 32, 4, 3).mean((1, 3))  # the same picture, box-filtered
  # Equal up to edge anti-aliasing, which is 1 pixel wide at either resolution.
  assert np.abs(pooled - small).mean() < 3.0
  assert demo.render(scene, (24, 48)).shape == (24, 48, 3)


def test_objects_are_drawn_where_the_scene_says():
  scene, _ = demo.example('upstream', 'train', 0)
  image = demo.render(scene, 64)
  kind = demo.SHAPES[scene.shape[0]]
  x, y = (scene.centre[0] * 64).astype(int)
  centre_pixel = image[y, x] / 255
  if kind not in ('ring', 'frame', 'hbars', 'vbars'):  # shapes with a hole in the middle
    np.testing.assert_allclose(centre_pixel, scene.color[0], atol=2 / 255)


@pytest.mark.parametrize('kind', range(len(demo.SHAPES)))
def test_each_shape_has_a_distinct_mask(kind):
  u, v = np.meshgrid(np.linspace(-1.2, 1.2, 25), np.linspace(1.2, -1.2, 25))
  mask = demo.shape_sdf(kind, u, v) < 0
  assert 0.1 < mask.mean() < 0.6
  for other in range(len(demo.SHAPES)):
    if other != kind:
      assert (mask != (demo.shape_sdf(other, u, v) < 0)).mean() > 0.05


def test_builder_configs_have_the_documented_sizes():
  configs = {c.name: c for c in demo.VitDemo.BUILDER_CONFIGS}
  assert (configs['upstream'].num_train, configs['upstream'].num_test) == (40_000, 4_000)
  assert (configs['downstream'].num_train, configs['downstream'].num_test) == (1_000, 2_000)
  assert configs['upstream'].image_size == configs['downstream'].image_size == 64


def test_registered_builder_stores_the_rendered_examples(demo_data_dir):
  builder = tfds.builder('vit_demo/upstream_tiny', data_dir=demo_data_dir)
  assert builder.info.features['label'].num_classes == 100
  assert builder.info.splits['train'].num_examples == 96
  assert builder.info.splits['test'].num_examples == 50
  # Prepared as ArrayRecord (what vit_jax prepares): read by index, in index order.
  source = builder.as_data_source(split='test')
  for i, ex in enumerate(source[i] for i in range(10)):
    scene, label = demo.example('upstream', 'test', i)
    assert ex['label'] == label
    # JPEG q95 4:4:4 of a 32 px texture, decoded by tf: ~2 levels off on average.
    assert np.abs(ex['image'].astype(float) - demo.render(scene, 32)).mean() < 3.0
  down = tfds.builder('vit_demo/downstream_tiny', data_dir=demo_data_dir)
  assert down.info.features['label'].names[0] == 'topmost_disc'
  assert down.info.splits['train'].num_examples == 64
