"""Image and label ops of the input pipeline, each usable eagerly or inside tf.data.

Images are uint8 (height, width, 3) between ops, as in big_vision, so RandAugment sees the
value range it was defined on; `value_range` turns them into float32 [-1, 1] at the end.

Randomness is stateless: every random op takes `seed`, an int32/int64 tensor of shape (2,),
and is a pure function of (inputs, seed). The pipeline derives that seed from
(config.seed, global example position), so a resumed run redraws exactly the same crops.

RandAugment follows the op list and magnitude mapping of the TPU `autoaugment.py` that
AugReg / big_vision use (`randaug(2, 15)` etc.); see `randaugment`.
"""
from __future__ import annotations

import math
from typing import Callable

import tensorflow as tf

_FILL = 128  # grey used by RandAugment's geometric ops and Cutout (as the TPU code).


def parse_size(size: int | str) -> tuple[int, int]:
  """224 -> (224, 224); '384x256' -> (384, 256) as (height, width)."""
  if isinstance(size, int) and size > 0:
    return size, size
  if isinstance(size, str):
    parts = size.lower().split('x')
    if len(parts) == 2 and all(p.strip().isdigit() and int(p) > 0 for p in parts):
      return int(parts[0]), int(parts[1])
    if size.strip().isdigit() and int(size) > 0:
      return int(size), int(size)
  raise ValueError(f'image_size {size!r} is not a positive int or an "HxW" string; '
                   'use e.g. 224 or "384x256"')


def fold_seed(seed: tf.Tensor, data: int | tf.Tensor) -> tf.Tensor:
  """A new (2,) seed from `seed` and an integer; different `data` -> independent streams."""
  return tf.random.experimental.stateless_fold_in(seed, tf.cast(data, tf.int64))


# --- decoding, crops, resizing ----------------------------------------------------------

def decode(encoded: tf.Tensor) -> tf.Tensor:
  """JPEG/PNG/GIF/BMP bytes -> uint8 (h, w, 3); greyscale images become RGB."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def resize(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
  """Resize uint8 (h, w, 3) to (height, width), back to uint8, without aliasing.

  Shrinking uses area averaging (a box filter over the source pixels: no aliasing of
  thin strokes, e.g. the demo's 64 -> 16 px, and ~3x faster than antialiased bilinear,
  measured 40k vs 14k images/s at 64 -> 16 px); enlarging uses bilinear interpolation.
  Both map output pixel centres to input pixel centres, so a linear ramp stays one.
  """
  shape = tf.shape(image)
  shrink = (shape[0] >= size[0]) & (shape[1] >= size[1])
  out = tf.cond(shrink, lambda: tf.image.resize(image, size, method='area'),
                lambda: tf.image.resize(image, size, method='bilinear', antialias=True))
  return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def sample_crop_box(image_shape: tf.Tensor, seed: tf.Tensor, area_min: float = 0.05,
                    area_max: float = 1.0,
                    aspect: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[tf.Tensor, tf.Tensor]:
  """Inception-style crop window: (offset (y, x), size (h, w)), both int32 (2,).

  Area is a fraction of the image area, aspect is width / height. After 100 failed
  attempts tf.image falls back to the whole image, as the Inception code did.
  """
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      image_size=image_shape, bounding_boxes=tf.zeros([1, 0, 4], tf.float32), seed=seed,
      min_object_covered=0.0, aspect_ratio_range=aspect, area_range=(area_min, area_max),
      max_attempts=100, use_image_if_no_bounding_boxes=True)
  return begin[:2], size[:2]


def inception_crop(image: tf.Tensor, size: tuple[int, int], seed: tf.Tensor,
                   area_min: float = 0.05) -> tf.Tensor:
  """Random resized crop of a decoded uint8 image to `size` (height, width)."""
  begin, crop = sample_crop_box(tf.shape(image), seed, area_min)
  return resize(tf.slice(image, tf.concat([begin, [0]], 0), tf.concat([crop, [3]], 0)),
                size)


def decode_and_inception_crop(encoded: tf.Tensor, size: tuple[int, int], seed: tf.Tensor,
                              area_min: float = 0.05) -> tf.Tensor:
  """`inception_crop(decode(encoded))`, decoding only the crop window for JPEGs.

  For a JPEG the window is drawn from the header's shape and only that window is decoded
  (tf.image.decode_and_crop_jpeg): at ImageNet sizes this is ~2x faster. Other formats
  are decoded in full. Both paths draw the same window for the same seed.
  """
  def jpeg():
    begin, crop = sample_crop_box(tf.image.extract_jpeg_shape(encoded), seed, area_min)
    image = tf.image.decode_and_crop_jpeg(encoded, tf.concat([begin, crop], 0), channels=3)
    return resize(image, size)

  def other():
    return inception_crop(decode(encoded), size, seed, area_min)

  image = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
  image.set_shape([size[0], size[1], 3])
  return image


def flip(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """Horizontal flip with probability 1/2."""
  return tf.image.stateless_random_flip_left_right(image, seed)


def central_crop(image: tf.Tensor, size: tuple[int, int]) -> tf.Tensor:
  """The central (height, width) window; the image must be at least that large."""
  h, w = tf.shape(image)[0], tf.shape(image)[1]
  return tf.image.crop_to_bounding_box(image, (h - size[0]) // 2, (w - size[1]) // 2,
                                       size[0], size[1])


def resize_and_central_crop(image: tf.Tensor, size: tuple[int, int],
                            ratio: float = 1.143) -> tf.Tensor:
  """Eval crop: scale (keeping aspect) so the image covers ratio x size, crop the centre.

  For a square target this is big_vision's `resize_small(256) | central_crop(224)` with
  ratio 256/224; for rectangular targets both sides are covered.
  """
  hw = tf.cast(tf.shape(image)[:2], tf.float32)
  target = tf.constant(size, tf.float32)
  scale = ratio * tf.reduce_max(target / hw)
  new = tf.maximum(tf.cast(tf.round(hw * scale), tf.int32), tf.constant(size, tf.int32))
  return central_crop(resize(image, new), size)


def value_range(image: tf.Tensor, vmin: float = -1.0, vmax: float = 1.0) -> tf.Tensor:
  """uint8 [0, 255] -> float32 [vmin, vmax]."""
  return tf.cast(image, tf.float32) * ((vmax - vmin) / 255.0) + vmin


# --- labels and batch ops ---------------------------------------------------------------

def one_hot(label: tf.Tensor, num_classes: int, smoothing: float = 0.0) -> tf.Tensor:
  """float32 (num_classes,): (1 - smoothing) * one_hot + smoothing / num_classes."""
  off = smoothing / num_classes
  return tf.one_hot(label, num_classes, on_value=1.0 - smoothing + off, off_value=off)


def multi_hot(labels: tf.Tensor, num_classes: int) -> tf.Tensor:
  """float32 (num_classes,) with 1 at each id in the 1-D `labels` (which may be empty)."""
  hot = tf.reduce_sum(tf.one_hot(labels, num_classes), axis=0)
  return tf.minimum(hot, 1.0)


def mixup(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor,
          alpha: float) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixes each example with its neighbour in the batch, as big_vision's `mixup`.

  One ratio p ~ Beta(alpha, alpha) per batch, folded to max(p, 1 - p) so the original
  example dominates; partner of example i is example i - 1 (np.roll by 1).
  images (batch, h, w, 3) float; labels (batch, classes) float.
  """
  # Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a): tf has no stateless beta sampler.
  gammas = tf.random.stateless_gamma([2], seed=seed, alpha=alpha)
  p = gammas[0] / (gammas[0] + gammas[1])
  p = tf.maximum(p, 1.0 - p)
  mix = lambda x: p * x + (1.0 - p) * tf.roll(x, shift=1, axis=0)
  return mix(images), mix(labels)


# --- RandAugment ------------------------------------------------------------------------
# Ops and magnitude mapping are those of the TPU `autoaugment.py` used by AugReg and
# big_vision (a level L is read on that code's 0..10 scale and may exceed 10: AugReg
# used 10, 15 and 20). Written here with tf ops because that code depends on
# tensorflow-addons, which is no longer maintained. One deliberate difference:
# TranslateX/Y and Cutout sizes are fractions of the image (100/224 and 40/224 of a side
# at level 10) instead of fixed pixels, so a level means the same at 32 px as at 224 px.

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
