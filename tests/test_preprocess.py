"""Each preprocessing op against expected values, run eagerly AND inside tf.data.

References are independent of the code under test: hand-computed numbers, linear-ramp
images (bilinear resizing keeps a ramp a ramp, so the crop window can be read back from
pixel values), numpy, and PIL's ImageOps / ImageEnhance (which RandAugment's colour ops
are defined by).
"""
import io

import numpy as np
import PIL.Image
import PIL.ImageEnhance
import PIL.ImageOps
import pytest
import tensorflow as tf

from vit_jax.data import batch_augment
from vit_jax import run_config
from vit_jax.data import preprocess as pp
from vit_jax.data import randaugment


def run(fn, *args):
  """fn(*args) eagerly and inside a tf.data map; asserts both agree, returns numpy."""
  eager = fn(*args)
  ds = tf.data.Dataset.from_tensors(tuple(tf.convert_to_tensor(a) for a in args))
  graph = next(iter(ds.map(fn)))
  for e, g in zip(tf.nest.flatten(eager), tf.nest.flatten(graph)):
    np.testing.assert_array_equal(e.numpy(), g.numpy())
  return tf.nest.map_structure(lambda t: t.numpy(), eager)


def seed(i):
  return tf.constant([7, i], tf.int64)


def ramp(h, w):
  """uint8 (h, w, 3): channel 0 = column index, channel 1 = row index (both <= 255)."""
  cols, rows = np.meshgrid(np.arange(w), np.arange(h))
  return np.stack([cols, rows, np.zeros_like(cols)], -1).astype(np.uint8)


def random_image(h=24, w=32, s=0):
  return np.random.default_rng(s).integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_parse_size():
  assert run_config.parse_size(224) == (224, 224)
  assert run_config.parse_size('384x256') == (384, 256)
  assert run_config.parse_size('64') == (64, 64)
  with pytest.raises(ValueError, match=r"image_size '384-256' .* use e.g. 224"):
    run_config.parse_size('384-256')


def test_crop_box_respects_area_and_aspect_ranges():
  areas = []
  for i in range(200):
    begin, size = (t.numpy() for t in pp.sample_crop_box([200, 240, 3], seed(i), 0.05))
    (y, x), (h, w) = begin, size
    assert 0 <= y and y + h <= 200 and 0 <= x and x + w <= 240
    areas.append(h * w / (200 * 240))
    if areas[-1] < 1:  # the whole-image fallback ignores the aspect range
      # Integer rounding of h and w moves the ratio by up to ~1 px / side.
      assert 0.75 - 2 / min(h, w) <= w / h <= 4 / 3 + 2 / min(h, w)
  assert min(areas) >= 0.05 - 0.01 and max(areas) <= 1.0
  # The whole range is used; tf draws the crop *height* uniformly within the area range,
  # which skews areas small (observed mean ~0.37, not the 0.52 of a uniform area).
  assert min(areas) < 0.1 and max(areas) > 0.8 and 0.25 < np.mean(areas) < 0.5


def test_inception_crop_reads_back_as_its_window():
  image = ramp(200, 240)
  out = run(lambda x, s: pp.inception_crop(x, (16, 16), s), image, seed(3))
  begin, size = (t.numpy() for t in pp.sample_crop_box(tf.shape(image), seed(3), 0.05))
  # Output column j samples window column (j + 0.5) * w / 16 - 0.5 (half-pixel centres).
  j = np.arange(16)
  want_x = begin[1] + (j + 0.5) * size[1] / 16 - 0.5
  want_y = begin[0] + (j + 0.5) * size[0] / 16 - 0.5
  interior = slice(2, 14)  # the antialias kernel is clamped at the window border
  np.testing.assert_allclose(out[8, interior, 0], want_x[interior], atol=1.0)
  np.testing.assert_allclose(out[interior, 8, 1], want_y[interior], atol=1.0)
  assert out.shape == (16, 16, 3) and out.dtype == np.uint8


def test_inception_crop_is_deterministic_given_the_seed():
  image = random_image(64, 64)
  a = run(lambda x, s: pp.inception_crop(x, (8, 8), s), image, seed(1))
  b = run(lambda x, s: pp.inception_crop(x, (8, 8), s), image, seed(1))
  c = run(lambda x, s: pp.inception_crop(x, (8, 8), s), image, seed(2))
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG'])
def test_decode_and_inception_crop_equals_decode_then_crop(fmt):
  buffer = io.BytesIO()
  # 4:4:4 JPEG: decode_and_crop_jpeg is then bit-exact with decode + crop.
  PIL.Image.fromarray(random_image(60, 80)).save(buffer, format=fmt, quality=90,
                                                 subsampling=0)
  encoded = buffer.getvalue()
  for i in range(5):
    fast = run(lambda e, s: pp.decode_and_inception_crop(e, (16, 16), s), encoded, seed(i))
    slow = pp.inception_crop(pp.decode(encoded), (16, 16), seed(i)).numpy()
    np.testing.assert_array_equal(fast, slow)


def test_flip_is_a_fair_coin():
  image = ramp(4, 6)
  flipped = 0
  for i in range(100):
    out = run(pp.flip, image, seed(i))
    if np.array_equal(out, image[:, ::-1]):
      flipped += 1
    else:
      np.testing.assert_array_equal(out, image)
  assert 35 <= flipped <= 65


def test_resize_keeps_a_ramp_a_ramp():
  out = run(lambda x: pp.resize(x, (20, 30)), ramp(40, 90))
  j = np.arange(30)
  np.testing.assert_allclose(out[10, 2:-2, 0], ((j + 0.5) * 3 - 0.5)[2:-2], atol=0.5)
  assert run(lambda x: pp.resize(x, (5, 7)), np.full((9, 11, 3), 77, np.uint8)).max() == 77


def test_resize_and_central_crop():
  # 100x200 -> covers 1.143 x 50 = 57.15: scale 0.5715 -> (57, 114) -> offsets (3, 32).
  out = run(lambda x: pp.resize_and_central_crop(x, (50, 50), 1.143), ramp(100, 200))
  assert out.shape == (50, 50, 3)
  j = np.arange(50)
  want = (32 + j + 0.5) * 200 / 114 - 0.5
  np.testing.assert_allclose(out[25, 2:-2, 0], want[2:-2], atol=1.0)
  # Rectangular target (height 20, width 40) from a square image: width decides.
  out = run(lambda x: pp.resize_and_central_crop(x, (20, 40), 1.0), ramp(80, 80))
  assert out.shape == (20, 40, 3)
  np.testing.assert_allclose(out[10:12, 20, 1].mean(), 40, atol=2.0)  # centre row


def test_value_range():
  out = run(pp.value_range, np.array([[[0, 51, 255]]], np.uint8))
  np.testing.assert_allclose(out, [[[-1.0, -0.6, 1.0]]], atol=1e-6)
  assert out.dtype == np.float32


def test_one_hot_with_label_smoothing():
  np.testing.assert_allclose(run(lambda l: pp.one_hot(l, 4, 0.1), np.int64(1)),
                             [0.025, 0.925, 0.025, 0.025], atol=1e-7)
  np.testing.assert_array_equal(run(lambda l: pp.one_hot(l, 3), np.int64(2)), [0, 0, 1])


def test_multi_hot():
  np.testing.assert_array_equal(run(lambda l: pp.multi_hot(l, 5), np.array([1, 3, 3])),
                                [0, 1, 0, 1, 0])
  np.testing.assert_array_equal(pp.multi_hot(tf.zeros([0], tf.int64), 3), [0, 0, 0])


def test_mixup_mixes_each_example_with_its_neighbour():
  images = np.random.default_rng(0).random((4, 2, 2, 3)).astype(np.float32)
  labels = np.eye(4, dtype=np.float32)
  mixed_images, mixed_labels = run(lambda x, y, s: batch_augment.mixup(x, y, s, 1.0), images, labels,
                                   seed(0))
  p = mixed_labels[0, 0]
  assert 0.5 <= p <= 1.0
  np.testing.assert_allclose(mixed_labels, p * labels + (1 - p) * np.roll(labels, 1, 0),
                             atol=1e-6)
  np.testing.assert_allclose(mixed_images, p * images + (1 - p) * np.roll(images, 1, 0),
                             atol=1e-6)
  # p = max(u, 1 - u) with u ~ Beta(1, 1) = U(0, 1): mean 3/4.
  ps = [batch_augment.mixup(images, labels, seed(i), 1.0)[1].numpy()[0, 0] for i in range(400)]
  assert abs(np.mean(ps) - 0.75) < 0.03


# --- RandAugment colour ops against PIL ----------------------------------------------------

PIL_REFERENCES = {
    'autocontrast': (randaugment.autocontrast, PIL.ImageOps.autocontrast),
    'equalize': (randaugment.equalize, PIL.ImageOps.equalize),
    'invert': (randaugment.invert, PIL.ImageOps.invert),
    'posterize3': (lambda x: randaugment.posterize(x, 3), lambda im: PIL.ImageOps.posterize(im, 3)),
    'solarize100': (lambda x: randaugment.solarize(x, 100),
                    lambda im: PIL.ImageOps.solarize(im, 100)),
    'brightness1.6': (lambda x: randaugment.brightness(x, 1.6),
                      lambda im: PIL.ImageEnhance.Brightness(im).enhance(1.6)),
    'color0.3': (lambda x: randaugment.color(x, 0.3),
                 lambda im: PIL.ImageEnhance.Color(im).enhance(0.3)),
    'contrast1.9': (lambda x: randaugment.contrast(x, 1.9),
                    lambda im: PIL.ImageEnhance.Contrast(im).enhance(1.9)),
    'sharpness0.1': (lambda x: randaugment.sharpness(x, 0.1),
                     lambda im: PIL.ImageEnhance.Sharpness(im).enhance(0.1)),
}


@pytest.mark.parametrize('name', sorted(PIL_REFERENCES))
def test_colour_op_matches_pil(name):
  ours, theirs = PIL_REFERENCES[name]
  # Low-contrast input (values 40..180) so autocontrast/equalize do real work.
  image = (random_image(24, 32) * 0.55 + 40).astype(np.uint8)
  got = run(ours, image).astype(int)
  want = np.asarray(theirs(PIL.Image.fromarray(image))).astype(int)
  # PIL rounds luma and blends in integer steps; allow 1 level, and most pixels exact.
  assert np.abs(got - want).max() <= 1, name
  assert np.mean(got == want) > 0.9, name


def test_solarize_add():
  image = np.array([[[0, 127, 128], [200, 20, 255]]], np.uint8)
  out = run(lambda x: randaugment.solarize_add(x, 110), image)
  np.testing.assert_array_equal(out, [[[110, 237, 128], [200, 130, 255]]])


# --- RandAugment geometric ops ----------------------------------------------------------------

def test_rotate_90_is_rot90_and_translate_shifts_with_grey_fill():
  image = random_image(6, 6)
  np.testing.assert_array_equal(run(lambda x: randaugment.rotate(x, 90.0), image), np.rot90(image))
  out = run(lambda x: randaugment.translate_x(x, 2.0), image)
  np.testing.assert_array_equal(out[:, 2:], image[:, :-2])
  assert (out[:, :2] == 128).all()
  out = run(lambda x: randaugment.translate_y(x, -1.0), image)
  np.testing.assert_array_equal(out[:-1], image[1:])
  np.testing.assert_array_equal(run(lambda x: randaugment.shear_x(x, 0.0), image), image)
  out = run(lambda x: randaugment.shear_y(x, 1.0), ramp(4, 4))
  # Output (x, y) samples input (x, y + x): column 1 shows rows 1.., then fill.
  np.testing.assert_array_equal(out[:3, 1, 1], [1, 2, 3])
  assert (out[3, 1] == 128).all()


def test_cutout_greys_one_clipped_square():
  image = np.zeros((20, 20, 3), np.uint8)
  for i in range(10):
    out = run(lambda x, s: randaugment.cutout(x, 3, s), image, seed(i))
    rows, cols = np.nonzero(out[..., 0] == 128)
    assert (out[out != 128] == 0).all()
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert height <= 6 and width <= 6 and len(rows) == height * width


def test_every_randaugment_op_is_uint8_and_graph_safe():
  image = random_image()
  names = []
  for name, fn in randaugment.randaugment_ops(15):
    out = run(fn, image, seed(0))
    assert out.dtype == np.uint8 and out.shape == image.shape, name
    names.append(name)
  assert len(names) == 16


def test_randaugment_is_deterministic_and_changes_images():
  image = random_image()
  np.testing.assert_array_equal(run(lambda x, s: randaugment.randaugment(x, 0, 10, s), image,
                                    seed(0)), image)
  a = run(lambda x, s: randaugment.randaugment(x, 2, 10, s), image, seed(4))
  np.testing.assert_array_equal(a, run(lambda x, s: randaugment.randaugment(x, 2, 10, s), image,
                                       seed(4)))
  # p(no op applied in 2 layers) <= 0.8^2 = 0.64 per seed; over 20 seeds most change.
  changed = sum(not np.array_equal(randaugment.randaugment(image, 2, 10, seed(i)).numpy(), image)
                for i in range(20))
  assert changed >= 8
