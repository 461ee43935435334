"""The global stream: what every global batch holds, whatever the number of hosts.

Position p of the training stream (p = step * global_batch + row) holds record

  record(p) = index_shuffle(p mod N, seed=(config.seed, 2**40 + p div N), N - 1)

of the train split (N records): each epoch is a seeded permutation of the whole split,
computed per position without materialising it (tf.random.experimental.index_shuffle).
Its augmentation is seeded by (config.seed, p), and the batch-level draws (Mixup ratio,
CutMix box, the switch between them) by (config.seed, step). Host h of n reads and
decodes only rows [h * B / n, (h + 1) * B / n) of each global batch B, so the global
batch at step s, row for row, is the same for 1, 2 or 4 processes, and the step is all
the state a resume needs: a run checkpointed on N processes continues the same stream
on M.

Mixup and CutMix pair rows (2k, 2k + 1), which never straddle two hosts when the local
batch is even (checked at start-up); a partner whose record could not be read is
replaced by the row itself (no mixing). An unreadable record keeps its slot with
weight 0 (loss and metrics), so no later example moves and a placeholder never trains.

Evaluation: host h reads rows [h * e, (h + 1) * e) of each eval batch of the split in
its stored order; positions past the end are padding (mask 0); an unreadable example has
mask 0 and counts in `unreadable`.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from vit_jax import run_config
from vit_jax.data import batch_augment
from vit_jax.data import images
from vit_jax.data import preprocess
from vit_jax.data import records as records_lib

# Epoch e's permutation is seeded (config.seed, EPOCH_OFFSET + e): pairs no example's
# augmentation seed (config.seed, position < 2**40) can take.
EPOCH_OFFSET = 2**40
ERASE_SEED_TAG, MIX_SEED_TAG = 3, 1_000_000  # sub-streams of an example's / a step's seed.


def record_index(position, num_examples: int, seed: tf.Tensor) -> tf.Tensor:
  """The record at stream position(s) `position` (int64 scalar or vector)."""
  position = tf.convert_to_tensor(position, tf.int64)
  epoch, offset = position // num_examples, position % num_examples
  seed = tf.cast(seed, tf.int64)
  # The raw op, as tf.random.experimental.index_shuffle calls it for one (2,) seed (the
  # same constant first word, 4 rounds), so the result is the same; the wrapper cannot
  # take an (n, 2) seed: it pads the rows instead of the columns (TF 2.21).
  seeds = tf.stack([tf.fill(tf.shape(epoch), tf.constant(498247692, tf.int64)),
                    tf.broadcast_to(seed, tf.shape(epoch)), EPOCH_OFFSET + epoch], axis=-1)
  max_index = tf.broadcast_to(tf.constant(num_examples - 1, tf.int64), tf.shape(offset))
  return tf.raw_ops.RandomIndexShuffle(index=offset, seed=seeds, max_index=max_index,
                                       rounds=4)


def host_position(j: tf.Tensor, process_index: int, local: int, global_batch: int):
  """Position of this host's j-th example of a pass: row process_index * local + j %
  local of batch j // local (evaluation)."""
  return (j // local) * global_batch + process_index * local + j % local


def pair_partners(weight: tf.Tensor) -> tf.Tensor:
  """(b,) int32 partner rows for mixing: 2k <-> 2k + 1; itself where the partner has
  weight 0 (an unreadable record), so a placeholder never enters a mixed image."""
  rows = tf.range(tf.shape(weight)[0])
  swapped = tf.bitwise.bitwise_xor(rows, 1)
  return tf.where(tf.gather(weight, swapped) > 0, swapped, rows)


def _cached_decoded(records: records_lib.Records, data, size) -> records_lib.Records:
  """config.data.cache_decoded: the split decoded and resized once into memory (uint8
  (N, H, W, 3); the demo's 40k images at 16 px are 31 MB); every host holds the whole
  tiny split. Needs train_crop='resize' and one label per image (preflight checks)."""
  ds = tf.data.Dataset.range(records.num_examples).map(
      lambda i: _resized(records.read(i), size), num_parallel_calls=data.num_parallel_calls,
      deterministic=True)
  parts = list(ds.batch(1024).as_numpy_iterator())
  pixels, ok, labels = (tf.constant(np.concatenate([p[k] for p in parts]))
                        for k in ('resized', 'ok', 'label'))

  def read(i):
    return {'resized': pixels[i], 'ok': ok[i], 'label': labels[i], 'name': tf.constant('')}
  return records_lib.Records(records.num_examples, read, records.is_folder)


def _resized(example: dict, size) -> dict:
  return {'resized': preprocess.resize(images.decoded(example), size), 'ok': example['ok'],
          'label': example['label']}


def train_dataset(config, process_index: int, local: int, num_classes: int,
                  start_step: int) -> tf.data.Dataset:
  """This host's infinite local batches from global step `start_step`: {'image'
  (local, H, W, 3) float32, 'label' (local, classes), 'weight' (local,) 0 = unreadable}."""
  data, size = config.data, run_config.image_size(config)
  records = records_lib.split_records(config, data.train_split)
  if data.cache_decoded:
    records = _cached_decoded(records, data, size)
  seed = tf.constant(config.seed, tf.int64)
  erase_prob = data.get('random_erase_prob', 0.0)

  def rows(step):  # this host's rows of global step `step`, vectorised.
    positions = (step * config.batch_size + process_index * local +
                 tf.range(local, dtype=tf.int64))
    return {'position': positions, 'record': record_index(positions, records.num_examples, seed)}

  def example(row):
    ex = records.read(row['record'])
    example_seed = tf.stack([seed, row['position']])
    image = images.train_image(ex, example_seed, data, size)
    if erase_prob > 0:  # per image, after value_range and before mixing, as timm
      image = batch_augment.random_erase(
          preprocess.value_range(image)[None],
          preprocess.fold_seed(example_seed, ERASE_SEED_TAG), erase_prob)[0]
    label = (preprocess.multi_hot(ex['label'], num_classes) if data.multi_label
             else ex['label'])  # single labels: one-hot per batch (cheaper)
    return {'image': image, 'label': label, 'weight': tf.cast(ex['ok'], tf.float32)}

  def finish(step, batch):
    image = batch['image'] if erase_prob > 0 else preprocess.value_range(batch['image'])
    label = (batch['label'] if data.multi_label else
             preprocess.one_hot(batch['label'], num_classes, config.label_smoothing))
    cutmix_alpha = data.get('cutmix_alpha', 0.0)
    if data.mixup_alpha > 0 or cutmix_alpha > 0:
      mix_seed = preprocess.fold_seed(tf.stack([seed, step]), MIX_SEED_TAG)
      image, label = batch_augment.mix_batch(
          image, label, mix_seed, data.mixup_alpha, cutmix_alpha,
          data.get('mix_switch_prob', 0.5), partner=pair_partners(batch['weight']))
    return {'image': image, 'label': label, 'weight': batch['weight']}

  steps = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
  ds = steps.map(rows).unbatch()
  ds = ds.map(example, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  ds = tf.data.Dataset.zip(steps, ds.batch(local, drop_remainder=True))
  return ds.map(finish, num_parallel_calls=data.num_parallel_calls, deterministic=True)


def num_eval_batches(num_examples: int, eval_batch_size: int) -> int:
  return -(-num_examples // eval_batch_size)


def eval_dataset(config, process_index: int, local: int,
                 num_classes: int) -> tf.data.Dataset:
  """This host's rows of each eval batch, one pass: {'image', 'label', 'mask' (0 =
  padding or unreadable), 'unreadable' (1 = a real example that could not be read)}."""
  data = config.data
  records = records_lib.split_records(config, data.eval_split)
  prep = run_config.eval_preprocessing(config)
  n = records.num_examples
  batches = num_eval_batches(n, config.eval_batch_size)

  def example(j):
    position = host_position(j, process_index, local, config.eval_batch_size)
    ex = records.read(tf.minimum(position, n - 1))  # padding rows re-read the last one.
    real, ok = tf.cast(position < n, tf.float32), tf.cast(ex['ok'], tf.float32)
    return {'image': images.eval_image(images.decoded(ex), prep),
            'label': images.label(ex['label'], num_classes, data.multi_label, 0.0),
            'mask': real * ok, 'unreadable': real * (1.0 - ok)}

  ds = tf.data.Dataset.range(batches * local)
  ds = ds.map(example, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  return ds.batch(local)
