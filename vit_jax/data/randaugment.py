"""RandAugment on uint8 (height, width, 3) images; stateless: a pure function of the
image and a (2,) seed, like every op of preprocess.py.

Ops and magnitude mapping are those of the TPU `autoaugment.py` used by AugReg and
big_vision (a level L is read on that code's 0..10 scale and may exceed 10: AugReg
used 10, 15 and 20). Written here with tf ops because that code depends on
tensorflow-addons, which is no longer maintained. One deliberate difference:
TranslateX/Y and Cutout sizes are fractions of the image (100/224 and 40/224 of a side
at level 10) instead of fixed pixels, so a level means the same at 32 px as at 224 px.
"""
from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

from vit_jax.data.preprocess import fold_seed

_FILL = 128  # grey used by RandAugment's geometric ops and Cutout (as the TPU code).


def blend(image1: tf.Tensor, image2: tf.Tensor, factor: float | tf.Tensor) -> tf.Tensor:
  """image1 + factor * (image2 - image1), clipped and truncated to uint8 (as PIL)."""
  x1, x2 = tf.cast(image1, tf.float32), tf.cast(image2, tf.float32)
  return tf.cast(tf.clip_by_value(x1 + factor * (x2 - x1), 0.0, 255.0), tf.uint8)


def _luma(image: tf.Tensor) -> tf.Tensor:
  # float32 (h, w): ITU-R 601 luma rounded to integers, PIL's convert('L') (which defines
  # these ops); tf.image.rgb_to_grayscale rounds differently by one level at times.
  weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
  return tf.round(tf.reduce_sum(tf.cast(image, tf.float32) * weights, axis=-1))


def _grey(image: tf.Tensor) -> tf.Tensor:
  # uint8 (h, w, 3) with the luma in every channel.
  return tf.cast(tf.tile(_luma(image)[..., None], [1, 1, 3]), tf.uint8)


def color(image, factor):
  """Saturation: 0 gives grey, 1 the image, > 1 more saturated."""
  return blend(_grey(image), image, factor)


def contrast(image, factor):
  """Blend with the image's mean grey level (PIL ImageEnhance.Contrast)."""
  mean = tf.reduce_mean(_luma(image))
  return blend(tf.fill(tf.shape(image), tf.cast(tf.round(mean), tf.uint8)), image, factor)


def brightness(image, factor):
  return blend(tf.zeros_like(image), image, factor)


def sharpness(image, factor):
  """Blend with PIL's SMOOTH filter ([[1,1,1],[1,5,1],[1,1,1]] / 13); borders kept."""
  kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
  kernel = tf.tile(kernel[:, :, None, None], [1, 1, 3, 1])  # (3, 3, in=3, multiplier=1)
  x = tf.cast(image, tf.float32)[None]
  smooth = tf.nn.depthwise_conv2d(x, kernel, strides=[1, 1, 1, 1], padding='VALID')[0]
  smooth = tf.cast(tf.clip_by_value(tf.round(smooth), 0, 255), tf.uint8)
  interior = tf.pad(tf.ones_like(smooth, tf.bool), [[1, 1], [1, 1], [0, 0]])
  degenerate = tf.where(interior, tf.pad(smooth, [[1, 1], [1, 1], [0, 0]]), image)
  return blend(degenerate, image, factor)


def posterize(image, bits):
  """Keep the `bits` most significant bits of each channel value."""
  shift = tf.cast(8 - bits, tf.uint8)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def solarize(image, threshold):
  """Invert values >= threshold."""
  return tf.where(tf.cast(image, tf.int32) < threshold, image, 255 - image)


def solarize_add(image, addition, threshold=128):
  """Add `addition` to values below threshold (clipped)."""
  added = tf.cast(tf.clip_by_value(tf.cast(image, tf.int32) + addition, 0, 255), tf.uint8)
  return tf.where(image < threshold, added, image)


def invert(image):
  return 255 - tf.convert_to_tensor(image)


def autocontrast(image):
  """Stretch each channel to [0, 255] (PIL ImageOps.autocontrast, cutoff 0)."""
  def channel(c):
    lo, hi = tf.reduce_min(c), tf.reduce_max(c)
    scale = 255.0 / tf.maximum(hi - lo, 1.0)
    return tf.where(hi > lo, tf.clip_by_value((c - lo) * scale, 0.0, 255.0), c)
  x = tf.cast(image, tf.float32)
  return tf.cast(tf.stack([channel(x[..., i]) for i in range(3)], -1), tf.uint8)


def _equalize_channel(c: tf.Tensor) -> tf.Tensor:
  # PIL ImageOps.equalize for one uint8 (h, w) channel: lut[i] = (step // 2 + number of
  # pixels below value i) // step, with step = (pixels - pixels of the top value) // 255.
  hist = tf.math.bincount(tf.cast(c, tf.int32), minlength=256, maxlength=256)
  nonzero = tf.boolean_mask(hist, hist > 0)
  step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

  def apply():
    lut = (tf.cumsum(hist, exclusive=True) + step // 2) // tf.maximum(step, 1)
    return tf.cast(tf.gather(tf.clip_by_value(lut, 0, 255), tf.cast(c, tf.int32)), tf.uint8)
  return tf.cond(step > 0, apply, lambda: c)


def equalize(image):
  return tf.stack([_equalize_channel(image[..., i]) for i in range(3)], -1)


def _transform(image: tf.Tensor, matrix: list) -> tf.Tensor:
  """Projective transform; `matrix` (8 floats) maps OUTPUT (x, y) to INPUT coordinates."""
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=image[None], transforms=tf.cast(tf.stack(matrix)[None], tf.float32),
      output_shape=tf.shape(image)[:2], fill_value=float(_FILL), interpolation='NEAREST',
      fill_mode='CONSTANT')
  return out[0]


def rotate(image, degrees):
  """Rotate about the image centre (counter-clockwise for positive degrees)."""
  h, w = tf.cast(tf.shape(image)[0], tf.float32), tf.cast(tf.shape(image)[1], tf.float32)
  cy, cx = (h - 1) / 2, (w - 1) / 2
  a = degrees * math.pi / 180
  cos, sin = tf.cos(a), tf.sin(a)
  # Output pixel (x, y) samples input R(-a) (p - c) + c; y points down, so +a looks CCW.
  return _transform(image, [cos, -sin, cx - cos * cx + sin * cy,
                            sin, cos, cy - sin * cx - cos * cy, 0.0, 0.0])


def shear_x(image, level):
  return _transform(image, [1.0, level, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])


def shear_y(image, level):
  return _transform(image, [1.0, 0.0, 0.0, level, 1.0, 0.0, 0.0, 0.0])


def translate_x(image, pixels):
  """Content moves right by `pixels` (left if negative)."""
  return _transform(image, [1.0, 0.0, -pixels, 0.0, 1.0, 0.0, 0.0, 0.0])


def translate_y(image, pixels):
  """Content moves down by `pixels`."""
  return _transform(image, [1.0, 0.0, 0.0, 0.0, 1.0, -pixels, 0.0, 0.0])


def cutout(image, pad, seed):
  """Grey square of side 2 * pad at a uniformly random centre (clipped at the borders)."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  cy = tf.random.stateless_uniform([], seed, 0, h, tf.int32)
  cx = tf.random.stateless_uniform([], fold_seed(seed, 1), 0, w, tf.int32)
  rows, cols = tf.range(h)[:, None], tf.range(w)[None, :]
  inside = ((rows >= cy - pad) & (rows < cy + pad) & (cols >= cx - pad) & (cols < cx + pad))
  return tf.where(inside[..., None], tf.constant(_FILL, tf.uint8), image)


def _signed(value, seed):
  # The TPU code negates geometric magnitudes with probability 1/2.
  negate = tf.random.stateless_uniform([], seed) < 0.5
  return tf.where(negate, -value, value)


def randaugment_ops(level: float) -> list[tuple[str, Callable]]:
  """(name, fn(image, seed)) for the 16 ops at `level`, in the TPU code's order."""
  m = level / 10.0  # the TPU code's level / _MAX_LEVEL
  enhance = m * 1.8 + 0.1

  def side(image):
    return tf.cast(tf.reduce_min(tf.shape(image)[:2]), tf.float32)
  return [
      ('AutoContrast', lambda x, s: autocontrast(x)),
      ('Equalize', lambda x, s: equalize(x)),
      ('Invert', lambda x, s: invert(x)),
      ('Rotate', lambda x, s: rotate(x, _signed(m * 30.0, s))),
      ('Posterize', lambda x, s: posterize(x, int(m * 4))),
      ('Solarize', lambda x, s: solarize(x, int(m * 256))),
      ('Color', lambda x, s: color(x, enhance)),
      ('Contrast', lambda x, s: contrast(x, enhance)),
      ('Brightness', lambda x, s: brightness(x, enhance)),
      ('Sharpness', lambda x, s: sharpness(x, enhance)),
      ('ShearX', lambda x, s: shear_x(x, _signed(m * 0.3, s))),
      ('ShearY', lambda x, s: shear_y(x, _signed(m * 0.3, s))),
      ('TranslateX', lambda x, s: translate_x(x, _signed(m * 100 / 224 * side(x), s))),
      ('TranslateY', lambda x, s: translate_y(x, _signed(m * 100 / 224 * side(x), s))),
      ('Cutout', lambda x, s: cutout(x, tf.cast(m * 40 / 224 * side(x), tf.int32), s)),
      ('SolarizeAdd', lambda x, s: solarize_add(x, int(m * 110))),
  ]


def randaugment(image: tf.Tensor, num_layers: int, magnitude: float,
                seed: tf.Tensor) -> tf.Tensor:
  """RandAugment on uint8 (h, w, 3): `num_layers` times, pick one of 16 ops uniformly
  and apply it with probability p ~ U(0.2, 0.8), all at level `magnitude` (TPU code)."""
  image = tf.convert_to_tensor(image)
  branches = [fn for _, fn in randaugment_ops(magnitude)]
  for layer in range(num_layers):
    s = fold_seed(seed, layer)
    op = tf.random.stateless_uniform([], fold_seed(s, 0), 0, len(branches), tf.int32)
    prob = tf.random.stateless_uniform([], fold_seed(s, 1), 0.2, 0.8)
    apply = tf.random.stateless_uniform([], fold_seed(s, 2)) < prob
    op_seed = fold_seed(s, 3)
    # Bind the loop variables now; tf.switch_case traces the branches immediately anyway.
    choose = lambda x=image, i=op, r=op_seed: tf.switch_case(
        i, [lambda fn=fn: fn(x, r) for fn in branches])
    image = tf.cond(apply, choose, lambda x=image: x)
  return image
