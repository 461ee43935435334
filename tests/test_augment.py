"""CutMix, the Mixup/CutMix switch and Random Erasing, against independent numpy.

References: the box geometry and label weights of timm's `rand_bbox` /
`cutmix_bbox_and_lam` (correct_lam=True) recomputed in numpy from the drawn ratio and
centre; the box is read back from the pixels; the switch is read from the output (a
CutMix image holds only pixels of itself or its partner, a Mixup image blends them);
Random Erasing statistics against a numpy transcription of timm's RandomErasing
sampling loop (area 0.02-1/3, log-uniform aspect 0.3-3.33, 10 attempts).
"""
import math

import numpy as np
import pytest
import tensorflow as tf

from tests import image_folders
from vit_jax.configs import common
from vit_jax.data import pipeline
from vit_jax.data import preflight
from vit_jax.data import batch_augment
from vit_jax.data import preprocess as pp
from vit_jax.data import DatasetError
from tests.test_preprocess import run  # eager and in tf.data, asserting they agree


def seed(i):
  return tf.constant([11, i], tf.int64)




def batch(b=6, h=12, w=20, classes=6, s=0):
  rng = np.random.default_rng(s)
  images = rng.normal(size=(b, h, w, 3)).astype(np.float32)
  labels = np.eye(classes, dtype=np.float32)[rng.integers(0, classes, b)]
  return images, labels


def numpy_box(h, w, lam, cy, cx):
  """timm rand_bbox (margin 0) + the clipped-area lambda of cutmix_bbox_and_lam."""
  ratio = np.sqrt(np.float32(1) - np.float32(lam))
  cut_h, cut_w = int(np.float32(h) * ratio), int(np.float32(w) * ratio)
  yl, yh = np.clip(cy - cut_h // 2, 0, h), np.clip(cy + cut_h // 2, 0, h)
  xl, xh = np.clip(cx - cut_w // 2, 0, w), np.clip(cx + cut_w // 2, 0, w)
  return (yl, yh, xl, xh), 1.0 - (yh - yl) * (xh - xl) / (h * w)


def read_box(changed):
  """(yl, yh, xl, xh) of the True pixels of a (h, w) mask, asserting they fill it."""
  rows, cols = np.nonzero(changed)
  if not rows.size:
    return None
  box = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
  assert changed[box[0]:box[1], box[2]:box[3]].all(), 'changed pixels are not a box'
  return box


# --- CutMix -----------------------------------------------------------------------------

@pytest.mark.parametrize('i', range(6))
def test_cutmix_box_pixels_and_label_weights_match_numpy(i):
  images, labels = batch(s=i)
  h, w = images.shape[1:3]
  out_images, out_labels = run(lambda x, y, s: batch_augment.cutmix(x, y, s, 1.0), images, labels,
                               seed(i))
  lam, centre, box = (t.numpy() for t in batch_augment.cutmix_box(h, w, seed(i), 1.0))
  want_box, kept = numpy_box(h, w, lam, *centre)
  np.testing.assert_array_equal(box, want_box)
  partner = np.roll(images, 1, axis=0)
  changed = (out_images != images).any(-1)  # (b, h, w)
  for b in range(len(images)):
    got = read_box(changed[b])
    if got is not None:  # an empty box changes nothing
      assert tuple(got) == tuple(want_box)
    inside = np.zeros((h, w), bool)
    inside[want_box[0]:want_box[1], want_box[2]:want_box[3]] = True
    np.testing.assert_array_equal(out_images[b][inside], partner[b][inside])
    np.testing.assert_array_equal(out_images[b][~inside], images[b][~inside])
  np.testing.assert_allclose(out_labels, kept * labels + (1 - kept) * np.roll(labels, 1, 0),
                             rtol=1e-6, atol=1e-7)


def test_cutmix_box_clipping_corrects_the_label_weight():
  # Over many seeds: the kept fraction is 1 - clipped area / image, never below the
  # drawn lam by more than the floor of the side lengths allows, and often above it
  # when the box is clipped at a border (timm's correct_lam).
  h, w, clipped = 12, 20, 0
  for i in range(300):
    lam, centre, box = (t.numpy() for t in batch_augment.cutmix_box(h, w, seed(i), 1.0))
    want_box, kept = numpy_box(h, w, lam, *centre)
    assert tuple(box) == tuple(want_box)
    assert 0 <= box[0] <= box[1] <= h and 0 <= box[2] <= box[3] <= w
    side = lambda n: 2 * (int(n * np.sqrt(1 - lam)) // 2)
    unclipped = side(h) * side(w)
    clipped += (box[1] - box[0]) * (box[3] - box[2]) < unclipped
    assert kept >= lam - 1e-6
  assert clipped > 100  # centres are uniform over the image: most boxes cross a border


def draw_boxes(n, alpha, h=12, w=20):
  """cutmix_box for seeds 0..n-1, in a tf.data map (graph mode: fast)."""
  ds = tf.data.Dataset.range(n).map(
      lambda i: batch_augment.cutmix_box(h, w, tf.stack([tf.constant(11, tf.int64), i]), alpha))
  return [t.numpy() for t in next(iter(ds.batch(n)))]


def test_cutmix_ratio_is_beta_and_centre_uniform():
  lams, centres, _ = draw_boxes(2000, 1.0)
  np.testing.assert_array_equal(lams[:3], [float(batch_augment.cutmix_box(12, 20, seed(i), 1.0)[0])
                                           for i in range(3)])
  cys, cxs = centres[:, 0], centres[:, 1]
  # Beta(1, 1) = U(0, 1): mean 1/2, variance 1/12; 4-sigma bands for n = 2000.
  assert abs(lams.mean() - 0.5) < 4 * math.sqrt(1 / 12 / 2000)
  assert abs(lams.var() - 1 / 12) < 0.01
  assert abs(np.mean(lams < 0.25) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 2000)
  assert set(cys) == set(range(12)) and set(cxs) == set(range(20))
  # Beta(0.3, 0.3) piles up near 0 and 1: variance 1 / (4 (2a + 1)) = 0.15625.
  lams = draw_boxes(2000, 0.3)[0]
  assert abs(lams.var() - 0.15625) < 0.015


# --- the Mixup / CutMix switch ----------------------------------------------------------

def is_cutmix(images, out):
  """True if every output pixel is the image's own or its partner's (no blend)."""
  partner = np.roll(images, 1, axis=0)
  return bool(((out == images) | (out == partner)).all())


def test_switch_picks_cutmix_about_switch_prob_of_batches_deterministically():
  images, labels = batch()
  mixers = {p: tf.function(lambda s, p=p: batch_augment.mix_batch(images, labels, s, 0.8, 1.0, p))
            for p in (0.0, 0.2, 0.5, 1.0)}  # traced once each: fast
  mix = lambda s, p=0.5: mixers[p](s)
  picks = [is_cutmix(images, mix(seed(i))[0].numpy()) for i in range(400)]
  # Binomial(400, 0.5): sd 10; 4 sd either way.
  assert 160 <= sum(picks) <= 240, sum(picks)
  for i in range(5):  # deterministic per seed, also inside tf.data
    a = mix(seed(i))
    b = run(lambda x, y, s: batch_augment.mix_batch(x, y, s, 0.8, 1.0, 0.5), images, labels, seed(i))
    np.testing.assert_array_equal(a[0].numpy(), b[0])
    np.testing.assert_array_equal(a[1].numpy(), b[1])
  assert not any(is_cutmix(images, mix(seed(i), 0.0)[0].numpy()) for i in range(40))
  assert all(is_cutmix(images, mix(seed(i), 1.0)[0].numpy()) for i in range(40))
  picks_02 = [is_cutmix(images, mix(seed(i), 0.2)[0].numpy()) for i in range(400)]
  assert 48 <= sum(picks_02) <= 112, sum(picks_02)  # 80 +- 4 sd (sd 8)


def test_mixup_batches_are_unchanged_by_the_switch():
  # Mixup-only (cutmix_alpha 0) is exactly the old `mixup`; when both are on, a batch
  # the switch gives to Mixup is that same mixup of the same seed.
  images, labels = batch()
  mixup_batches = 0
  for i in range(30):
    want = [t.numpy() for t in batch_augment.mixup(images, labels, seed(i), 0.8)]
    only = [t.numpy() for t in batch_augment.mix_batch(images, labels, seed(i), 0.8, 0.0, 0.5)]
    both = [t.numpy() for t in batch_augment.mix_batch(images, labels, seed(i), 0.8, 1.0, 0.5)]
    for a, b in zip(want, only):
      np.testing.assert_array_equal(a, b)
    if not is_cutmix(images, both[0]):
      mixup_batches += 1
      for a, b in zip(want, both):
        np.testing.assert_array_equal(a, b)
  assert 5 <= mixup_batches <= 25


def test_cutmix_only_mixes_every_batch_with_a_box():
  images, labels = batch()
  for i in range(20):
    out, out_labels = (t.numpy() for t in batch_augment.mix_batch(images, labels, seed(i), 0.0, 1.0,
                                                       0.5))
    assert is_cutmix(images, out)
    np.testing.assert_allclose(out_labels.sum(-1), 1.0, rtol=1e-6)


# --- Random Erasing ---------------------------------------------------------------------

def numpy_random_erasing_boxes(n, h, w, rng, area=(0.02, 1 / 3), aspect=(0.3, 1 / 0.3)):
  """(h, w) of the erased box of each of n images that timm's loop erases (prob 1)."""
  boxes = []
  for _ in range(n):
    for _ in range(10):
      target = rng.uniform(*area) * h * w
      ratio = math.exp(rng.uniform(math.log(aspect[0]), math.log(aspect[1])))
      eh, ew = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
      if ew < w and eh < h:
        boxes.append((eh, ew))
        break
  return np.array(boxes)


H, W, N = 24, 40, 3000


@pytest.fixture(scope='module')
def erased():
  """N constant images (value 5) erased with prob 0.25: the noise never equals 5."""
  images = tf.fill([N, H, W, 3], 5.0)
  out = batch_augment.random_erase(images, seed(0), 0.25).numpy()
  return out


def test_random_erase_boxes_are_rectangles_of_noise_in_every_channel(erased):
  changed = erased != 5.0
  assert (changed.all(-1) == changed.any(-1)).all()  # all three channels or none
  boxes = []
  for b in range(N):
    box = read_box(changed[b, :, :, 0])
    if box is not None:
      boxes.append(box)
  boxes = np.array(boxes)
  noise = erased[changed]
  assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01  # N(0, 1)
  heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
  assert heights.max() < H and widths.max() < W and heights.min() >= 1
  # Probability: 0.25 times P(one of 10 attempts fits), from the numpy transcription.
  ref = numpy_random_erasing_boxes(20_000, H, W, np.random.default_rng(0))
  p_fit = len(ref) / 20_000
  expected = 0.25 * p_fit
  assert abs(len(boxes) / N - expected) < 4 * math.sqrt(expected * (1 - expected) / N)
  # Area and aspect distributions against the reference (4-sigma bands on the means).
  area, ref_area = heights * widths / (H * W), ref[:, 0] * ref[:, 1] / (H * W)
  assert abs(area.mean() - ref_area.mean()) < 4 * ref_area.std() / math.sqrt(len(area))
  assert area.min() >= 0.02 * 0.6 and area.max() <= 1 / 3 * 1.4  # rounding of the sides
  log_aspect, ref_log = np.log(heights / widths), np.log(ref[:, 0] / ref[:, 1])
  assert abs(log_aspect.mean() - ref_log.mean()) < 4 * ref_log.std() / math.sqrt(len(area))
  # sd of a sample sd ~ sd / sqrt(2 n): 0.66 / sqrt(1500) = 0.017; 3 of them.
  assert abs(log_aspect.std() - ref_log.std()) < 0.05, (log_aspect.std(), ref_log.std())
  assert log_aspect.min() < math.log(0.5) and log_aspect.max() > math.log(2.0)
  # Corners uniform over the positions where the box fits: the mean relative offset is
  # 1/2 and both extremes occur.
  room_y, room_x = H - heights, W - widths
  rel = np.concatenate([boxes[room_y > 0, 0] / room_y[room_y > 0],
                        boxes[room_x > 0, 2] / room_x[room_x > 0]])
  assert abs(rel.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(rel))
  assert (boxes[:, 0] == 0).any() and (boxes[:, 1] == H).any()
  assert (boxes[:, 2] == 0).any() and (boxes[:, 3] == W).any()


def test_random_erase_probability_extremes_and_determinism():
  # 12 x 40: a single attempt fits only ~72% of the time, ten attempts ~100% (timm).
  n, h, w = 400, 12, 40
  images = tf.fill([n, h, w, 3], 5.0)
  np.testing.assert_array_equal(batch_augment.random_erase(images, seed(1), 0.0).numpy(), 5.0)
  always = batch_augment.random_erase(images, seed(1), 1.0).numpy()
  frac = (always != 5.0).any(axis=(1, 2, 3)).mean()
  p_fit = len(numpy_random_erasing_boxes(20_000, h, w, np.random.default_rng(1))) / 20_000
  assert abs(frac - p_fit) < 4 * math.sqrt(max(p_fit * (1 - p_fit), 0.01) / n), frac
  again = run(lambda x, s: batch_augment.random_erase(x, s, 1.0), images, seed(1))
  np.testing.assert_array_equal(again, always)
  assert not np.array_equal(batch_augment.random_erase(images, seed(2), 1.0).numpy(), always)


# --- the pipeline -------------------------------------------------------------------

def config_for(data_dir, **data):
  config = common.get_config()
  config.data.dataset = 'vit_demo/upstream_tiny'  # 96 train / 50 test, 100 classes
  config.data.data_dir = data_dir
  config.data.shuffle_buffer = 32
  config.image_size = 16
  config.batch_size = 16
  config.data.update(data)
  return config


def host_batches(config, start=0, steps=4, process_index=0, process_count=1):
  return list(pipeline.host_train_dataset(
      config, start_step=start, process_index=process_index,
      process_count=process_count).take(steps).as_numpy_iterator())


def test_pipeline_mixup_numerics_are_unchanged(demo_data_dir):
  # The global stream: the mixed batch is the unmixed batch with rows (2k, 2k + 1) mixed,
  # with one ratio per batch drawn from the seed fold_in((config.seed, step), 1_000_000):
  # recomputed here in numpy from the Beta draw, and exactly as `mixup` with those pairs.
  plain = host_batches(config_for(demo_data_dir), steps=3)
  mixed = host_batches(config_for(demo_data_dir, mixup_alpha=0.2), steps=3)
  pairs = np.arange(16) ^ 1  # 1, 0, 3, 2, ...: every row is readable (weight 1)
  ratios = []
  for step, (p, m) in enumerate(zip(plain, mixed)):
    assert (p['weight'] == 1.0).all() and (m['weight'] == 1.0).all()
    mix_seed = pp.fold_seed(tf.constant([0, step], tf.int64), 1_000_000)
    gammas = tf.random.stateless_gamma([2], seed=mix_seed, alpha=0.2).numpy()
    lam = np.float32(max(gammas[0] / gammas.sum(), 1 - gammas[0] / gammas.sum()))
    ratios.append(lam)
    for key in ('image', 'label'):
      np.testing.assert_allclose(m[key], lam * p[key] + (1 - lam) * p[key][pairs],
                                 rtol=1e-5, atol=1e-6, err_msg=key)
    want = batch_augment.mixup(p['image'], p['label'], mix_seed, 0.2,
                               partner=tf.constant(pairs, tf.int32))
    np.testing.assert_array_equal(m['image'], want[0].numpy())
    np.testing.assert_array_equal(m['label'], want[1].numpy())
  assert len(set(ratios)) == 3 and all(0.5 <= r < 1.0 for r in ratios)
  assert min(ratios) < 0.99  # at least one batch visibly mixed


def test_per_host_mixup_numerics_are_unchanged(tmp_path):
  # The per-host stream (a folder, config.data.stream='per_host') keeps the old numerics:
  # `mixup` of the unmixed batch with each row's neighbour (np.roll by 1) and the seed
  # fold_in((config.seed, step), 1_000_000 + process_index).
  image_folders.write_split_folders(str(tmp_path), classes=4,
                                    per_class={'train': 8, 'val': 1})
  def config(**data):
    return config_for(None, dataset=str(tmp_path), train_split='train', eval_split='val',
                      stream='per_host', **data)
  for process_index in (0, 1):
    plain = host_batches(config(), steps=3, process_index=process_index, process_count=2)
    mixed = host_batches(config(mixup_alpha=0.2), steps=3, process_index=process_index,
                         process_count=2)
    for step, (p, m) in enumerate(zip(plain, mixed)):
      mix_seed = pp.fold_seed(tf.constant([0, step], tf.int64), 1_000_000 + process_index)
      want = batch_augment.mixup(p['image'], p['label'], mix_seed, 0.2)
      np.testing.assert_array_equal(m['image'], want[0].numpy())
      np.testing.assert_array_equal(m['label'], want[1].numpy())
      gammas = tf.random.stateless_gamma([2], seed=mix_seed, alpha=0.2).numpy()
      lam = np.float32(max(gammas[0] / gammas.sum(), 1 - gammas[0] / gammas.sum()))
      np.testing.assert_allclose(m['label'], lam * p['label'] + (1 - lam) * np.roll(
          p['label'], 1, axis=0), rtol=1e-5, atol=1e-6)


def test_pipeline_cutmix_mixup_erasing_resume_exactly(demo_data_dir):
  config = config_for(demo_data_dir, mixup_alpha=0.8, cutmix_alpha=1.0,
                      mix_switch_prob=0.5, random_erase_prob=0.25)
  uninterrupted, resumed = host_batches(config, steps=8), host_batches(config, 5, 3)
  for a, b in zip(uninterrupted[5:], resumed):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(a[key], b[key])
  for b in uninterrupted:
    np.testing.assert_allclose(b['label'].sum(-1), 1.0, rtol=1e-5)
    assert (b['label'].max(-1) < 1.0).any()  # mixed targets
  # The global stream: host 1 of 2 holds rows 8..15 of the same global batch, mixed and
  # erased exactly as on one host (pairs never straddle hosts; erasing is per example).
  other = host_batches(config, steps=1, process_index=1, process_count=2)[0]
  assert other['image'].shape == (8, 16, 16, 3)
  for key in ('image', 'label', 'weight'):
    np.testing.assert_array_equal(other[key], uninterrupted[0][key][8:])


def test_pipeline_random_erasing_replaces_boxes_with_noise(demo_data_dir):
  plain = host_batches(config_for(demo_data_dir), steps=4)
  erased = host_batches(config_for(demo_data_dir, random_erase_prob=1.0), steps=4)
  changed = np.concatenate([(e['image'] != p['image']).any(-1)
                            for p, e in zip(plain, erased)])
  boxes = [read_box(c) for c in changed]
  assert sum(b is not None for b in boxes) >= 0.8 * len(boxes)
  for p, e in zip(plain, erased):  # read_box checked the rest of each image is untouched
    np.testing.assert_array_equal(p['label'], e['label'])


@pytest.mark.parametrize('field,value,pattern', [
    ('cutmix_alpha', -1.0, r'config.data.cutmix_alpha=-1.0 must be >= 0 .*0 disables'),
    ('mixup_alpha', -0.2, r'config.data.mixup_alpha=-0.2 must be >= 0'),
    ('mix_switch_prob', 1.5, r'config.data.mix_switch_prob=1.5 must be in \[0, 1\]'),
    ('random_erase_prob', -0.25, r'data.random_erase_prob=-0.25 must be in \[0, 1\]'),
    ('random_erase_prob', 25.0, r'random_erase_prob=25.0 .*Swin recipe: 0.25'),
])
def test_bad_augmentation_values_fail_in_preflight(demo_data_dir, field, value, pattern):
  config = config_for(demo_data_dir, **{field: value})
  with pytest.raises(DatasetError, match=pattern):
    preflight.preflight(config)  # the data check, before any model exists
