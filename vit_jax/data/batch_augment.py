"""Batch augmentation of the training stream: Mixup, CutMix (switching per batch) and
Random Erasing, stateless like every op of preprocess.py (a pure function of the batch
and a (2,) seed), applied to float32 batches after `preprocess.value_range`.

images (batch, height, width, 3) float32; labels (batch, classes) float32.
"""
from __future__ import annotations

import math

import tensorflow as tf

from vit_jax.data.preprocess import fold_seed


def partner_of(x: tf.Tensor, partner: tf.Tensor | None) -> tf.Tensor:
  """The mixing partner of each row: row i - 1 (np.roll by 1; the per-host stream), or
  the rows `partner` (b,) names (the global stream's pairs, global_stream.py)."""
  return tf.roll(x, shift=1, axis=0) if partner is None else tf.gather(x, partner)


def mixup(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor,
          alpha: float, partner: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixes each example with its neighbour in the batch, as big_vision's `mixup`.

  One ratio p ~ Beta(alpha, alpha) per batch, folded to max(p, 1 - p) so the original
  example dominates; partner of example i is example i - 1 (np.roll by 1).
  images (batch, h, w, 3) float; labels (batch, classes) float.
  """
  # Beta(a, a) as G1 / (G1 + G2) with G ~ Gamma(a): tf has no stateless beta sampler.
  gammas = tf.random.stateless_gamma([2], seed=seed, alpha=alpha)
  p = gammas[0] / (gammas[0] + gammas[1])
  p = tf.maximum(p, 1.0 - p)
  mix = lambda x: p * x + (1.0 - p) * partner_of(x, partner)
  return mix(images), mix(labels)


def _beta(seed: tf.Tensor, alpha: float) -> tf.Tensor:
  # Beta(a, a) as G1 / (G1 + G2), G ~ Gamma(a); 0 if both gammas underflow to 0.
  gammas = tf.random.stateless_gamma([2], seed=seed, alpha=alpha)
  return tf.math.divide_no_nan(gammas[0], gammas[0] + gammas[1])


def cutmix_box(height: int | tf.Tensor, width: int | tf.Tensor, seed: tf.Tensor,
               alpha: float) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The CutMix box of timm's `rand_bbox` (margin 0): (lam, centre, box).

  lam ~ Beta(alpha, alpha) (float32 scalar; as in timm, not folded to >= 1/2 as `mixup`
  is) is the kept fraction before clipping. Each box side is cut = int(side * sqrt(1 -
  lam)) (floor); the centre (cy, cx) (int32 (2,)) is uniform over the pixels; the box
  spans cut // 2 either way of it, clipped to the image: box int32 (4,) = (y_low, y_high,
  x_low, x_high), high exclusive.
  """
  lam = _beta(fold_seed(seed, 0), alpha)
  h, w = tf.cast(height, tf.int32), tf.cast(width, tf.int32)
  ratio = tf.sqrt(1.0 - lam)
  cut_h = tf.cast(tf.floor(tf.cast(h, tf.float32) * ratio), tf.int32)
  cut_w = tf.cast(tf.floor(tf.cast(w, tf.float32) * ratio), tf.int32)
  cy = tf.random.stateless_uniform([], fold_seed(seed, 1), 0, h, tf.int32)
  cx = tf.random.stateless_uniform([], fold_seed(seed, 2), 0, w, tf.int32)
  box = tf.stack([tf.clip_by_value(cy - cut_h // 2, 0, h),
                  tf.clip_by_value(cy + cut_h // 2, 0, h),
                  tf.clip_by_value(cx - cut_w // 2, 0, w),
                  tf.clip_by_value(cx + cut_w // 2, 0, w)])
  return lam, tf.stack([cy, cx]), box


def cutmix(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor,
           alpha: float, partner: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """CutMix (Yun et al. 2019, arXiv:1905.04899) in timm's 'batch' mode: one box per batch.

  Inside the `cutmix_box` box each example takes the pixels of its partner, example
  i - 1 (np.roll by 1, the same partner as `mixup`; timm pairs i with B - 1 - i). The
  label weight is corrected for the clipped box, as timm's `cutmix_bbox_and_lam` with
  correct_lam=True: kept = 1 - box area / image area, labels = kept * own + (1 - kept)
  * partner's. images (batch, h, w, c) float; labels (batch, classes) float.
  """
  shape = tf.shape(images)
  _, _, box = cutmix_box(shape[1], shape[2], seed, alpha)
  rows, cols = tf.range(shape[1])[:, None], tf.range(shape[2])[None, :]
  inside = (rows >= box[0]) & (rows < box[1]) & (cols >= box[2]) & (cols < box[3])
  images = tf.where(inside[None, :, :, None], partner_of(images, partner), images)
  area = tf.cast((box[1] - box[0]) * (box[3] - box[2]), tf.float32)
  kept = 1.0 - area / tf.cast(shape[1] * shape[2], tf.float32)
  return images, kept * labels + (1.0 - kept) * partner_of(labels, partner)


def mix_batch(images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor, mixup_alpha: float,
              cutmix_alpha: float, switch_prob: float,
              partner: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixup and/or CutMix of a batch, as timm's Mixup(mode='batch', prob=1) chooses.

  Both alphas > 0: CutMix with probability `switch_prob`, else Mixup, one draw per batch
  (the official Swin ImageNet-1k config: mixup 0.8, cutmix 1.0, switch_prob 0.5). Only
  one > 0: that one, on every batch. Mixup gets `seed` itself, so mixup-only batches
  are exactly `mixup(images, labels, seed, mixup_alpha)`. `partner`: see `partner_of`.
  """
  def do_mixup():
    return mixup(images, labels, seed, mixup_alpha, partner)

  def do_cutmix():
    return cutmix(images, labels, fold_seed(seed, 2), cutmix_alpha, partner)

  if mixup_alpha > 0 and cutmix_alpha > 0:
    use_cutmix = tf.random.stateless_uniform([], fold_seed(seed, 1)) < switch_prob
    return tf.cond(use_cutmix, do_cutmix, do_mixup)
  if cutmix_alpha > 0:
    return do_cutmix()
  if mixup_alpha > 0:
    return do_mixup()
  return images, labels


def random_erase(images: tf.Tensor, seed: tf.Tensor, prob: float,
                 area: tuple[float, float] = (0.02, 1 / 3),
                 aspect: tuple[float, float] = (0.3, 1 / 0.3),
                 attempts: int = 10) -> tf.Tensor:
  """Random Erasing (Zhong et al. 2017, arXiv:1708.04896) of timm's RandomErasing with
  mode='pixel', count=1, vectorised over a float batch (batch, h, w, c).

  Each image, with probability `prob`: up to `attempts` draws of a target area (fraction
  of the image, uniform in `area`) and a log-uniform aspect h / w in `aspect`, giving
  h = round(sqrt(A * aspect)), w = round(sqrt(A / aspect)); the first draw with h < height
  and w < width is used (none: the image is kept), at a top-left corner uniform over the
  positions where it fits. Its pixels become N(0, 1) noise, per pixel and channel. timm
  applies this after mean/std normalisation, so N(0, 1) is data-scaled there; here it
  runs after `value_range` ([-1, 1]), where the same N(0, 1) is about twice the spread
  of natural pixel values.
  """
  shape = tf.shape(images)
  b, h, w = shape[0], shape[1], shape[2]
  hf, wf = tf.cast(h, tf.float32), tf.cast(w, tf.float32)
  erase = tf.random.stateless_uniform([b], fold_seed(seed, 0)) < prob
  target = tf.random.stateless_uniform([b, attempts], fold_seed(seed, 1), area[0],
                                       area[1]) * hf * wf
  ratio = tf.exp(tf.random.stateless_uniform([b, attempts], fold_seed(seed, 2),
                                             math.log(aspect[0]), math.log(aspect[1])))
  eh, ew = tf.round(tf.sqrt(target * ratio)), tf.round(tf.sqrt(target / ratio))
  fits = (eh < hf) & (ew < wf)
  first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)
  erase &= tf.reduce_any(fits, axis=1)
  eh = tf.cast(tf.gather(eh, first, batch_dims=1), tf.int32)
  ew = tf.cast(tf.gather(ew, first, batch_dims=1), tf.int32)
  # Uniform integer corner in [0, side - size], inclusive (random.randint).
  def corner(s, size, side):
    u = tf.random.stateless_uniform([b], s)
    room = tf.cast(side - size + 1, tf.float32)
    return tf.minimum(tf.cast(tf.floor(u * room), tf.int32), side - size)
  top, left = corner(fold_seed(seed, 3), eh, h), corner(fold_seed(seed, 4), ew, w)
  rows, cols = tf.range(h)[None, :, None], tf.range(w)[None, None, :]
  inside = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None]) &
            (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]) &
            erase[:, None, None])
  # Noise only for the erased pixels (a few % of them at prob 0.25: a whole batch of
  # normals would cost ~3x the rest), scattered in row-major pixel order.
  where = tf.where(inside)
  noise = tf.random.stateless_normal([tf.shape(where)[0], shape[3]], fold_seed(seed, 5),
                                     dtype=images.dtype)
  return tf.tensor_scatter_nd_update(images, where, noise)
