"""The per-host stream (today's pipeline before the global one): each host shuffles its
own share of the split. The fallback for tfds datasets stored only as TFRecord (no random
access), or chosen with config.data.stream='per_host'.

NOT host-count invariant: host h of n reads only its share (tfds.even_splits /
folder.host_share) and shuffles it epoch after epoch with a seed made of (config.seed,
epoch) in a buffer of config.data.shuffle_buffer, so the global batch depends on n.
Within one topology it is deterministic: example k of a host's stream belongs to global
step k // local_batch, its augmentation is seeded by (config.seed, global position),
and starting at step s skips s * local_batch encoded records (no decoding), so the step
is all a resume on the same number of processes needs. A folder file that cannot be
decoded is skipped, which shifts the examples after it on its host.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from vit_jax import run_config
from vit_jax import sharding
from vit_jax.data import batch_augment
from vit_jax.data import folder
from vit_jax.data import images
from vit_jax.data import preprocess
from vit_jax.data import sources


def _load(split: sources.HostSplit, ds: tf.data.Dataset, num_parallel_calls: int) -> tf.data.Dataset:
  """{'ref', 'label'} -> {'encoded', 'label'} (tfds) or {'image', 'path', 'label'} (folder,
  decoded here so that undecodable files can be skipped)."""
  if not split.is_folder:
    return ds.map(lambda ex: {'encoded': ex['ref'], 'label': ex['label']})
  ds = ds.map(lambda ex: {'encoded': split.load(ex['ref']), 'path': ex['ref'],
                          'label': ex['label']},
              num_parallel_calls=num_parallel_calls, deterministic=True)
  return folder.decode_or_skip(ds, num_parallel_calls)


# --- per-host pipelines -----------------------------------------------------------------

def _train_source(split: sources.HostSplit, data, size) -> tf.data.Dataset:
  """The host's split, in a fixed order, as the training stream repeats it.

  Default: encoded records, decoded after the shuffle. `cache_decoded`: decoded once
  (and, with train_crop='resize', resized: key 'resized') and held in memory; for small
  datasets like the demo, where 16x16 pixels are smaller than the JPEG and decoding
  every epoch would cost more CPU than the tiny model's step.
  """
  if data.cache_decoded:
    ds = _load(split, split.dataset, data.num_parallel_calls)
    if data.train_crop == 'resize':
      ds = ds.map(lambda ex: {'resized': preprocess.resize(images.decoded(ex), size),
                              'label': ex['label']}, num_parallel_calls=data.num_parallel_calls)
    else:
      ds = ds.map(lambda ex: {'image': images.decoded(ex), 'label': ex['label']},
                  num_parallel_calls=data.num_parallel_calls)
    return ds.cache()
  return split.dataset.cache() if data.cache else split.dataset


def _epochs(source: tf.data.Dataset, data, seed: tf.Tensor,
            first_epoch: int) -> tf.data.Dataset:
  """Epochs first_epoch, first_epoch + 1, ... of `source`, each shuffled with a seed
  that depends only on (config.seed, epoch), so any epoch can be started directly."""
  def epoch(e):
    return source.shuffle(data.shuffle_buffer, seed=seed * 1_000_003 + e,
                          reshuffle_each_iteration=False)
  return tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max).flat_map(epoch)


def _host_share(config, batch_field: str, split_name: str, process_index, process_count):
  """(process index, local batch, this host's share of the split, classes)."""
  process_index, process_count = sources.process(process_index, process_count)
  local = sharding.per_host_batch(batch_field, config[batch_field],
                                 data_shards=process_count, process_count=process_count)
  split = sources.host_split(config, split_name, process_index, process_count)
  num_classes, _ = sources.classes(config)
  return process_index, local, split, num_classes


def host_train_dataset(config, *, start_step: int = 0, process_index: int | None = None,
                       process_count: int | None = None) -> tf.data.Dataset:
  """This host's infinite stream of local train batches, starting at global `start_step`.

  Yields {'image': (local_batch, H, W, 3) float32, 'label': (local_batch, classes)}.
  """
  data, size = config.data, run_config.image_size(config)
  process_index, local, split, num_classes = _host_share(
      config, 'batch_size', data.train_split, process_index, process_count)
  seed = tf.constant(config.seed, tf.int64)
  # Resume: the stream position of `start_step` inside this host's epochs; skipping it
  # reads records but decodes nothing.
  start = start_step * local
  first_epoch, offset = divmod(start, split.num_examples)
  ds = _epochs(_train_source(split, data, size), data, seed, first_epoch).skip(offset)
  if not data.cache_decoded:
    ds = _load(split, ds, data.num_parallel_calls)
  ds = ds.enumerate(start=start)  # position in this host's stream, after skipped files

  def example(position, ex):
    step, row = position // local, position % local
    global_position = step * config.batch_size + process_index * local + row
    image = images.train_image(ex, tf.stack([seed, global_position]), data, size)
    label = (preprocess.multi_hot(ex['label'], num_classes) if data.multi_label
             else ex['label'])
    return {'image': image, 'label': label}

  def finish(step, batch):  # vectorised over the batch: cheaper than per example
    # Batch-level draws (erasing, mix switch, ratio, box) are seeded by (config.seed,
    # step, process_index), as Mixup's always were: a host's local batch is a pure
    # function of them (timm's per-rank random state is the same per-process scheme).
    cutmix_alpha = data.get('cutmix_alpha', 0.0)
    erase_prob = data.get('random_erase_prob', 0.0)
    image = preprocess.value_range(batch['image'])
    if erase_prob > 0:  # per image, after value_range and before mixing, as timm
      erase_seed = preprocess.fold_seed(tf.stack([seed, step]), 2_000_000 + process_index)
      image = batch_augment.random_erase(image, erase_seed, erase_prob)
    label = (batch['label'] if data.multi_label else
             preprocess.one_hot(batch['label'], num_classes, config.label_smoothing))
    if data.mixup_alpha > 0 or cutmix_alpha > 0:
      mix_seed = preprocess.fold_seed(tf.stack([seed, step]), 1_000_000 + process_index)
      image, label = batch_augment.mix_batch(image, label, mix_seed, data.mixup_alpha,
                                          cutmix_alpha, data.get('mix_switch_prob', 0.5))
    return {'image': image, 'label': label, 'weight': tf.ones([local], tf.float32)}
  ds = ds.map(example, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  ds = ds.batch(local, drop_remainder=True).enumerate(start=start_step)
  ds = ds.map(finish, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  return ds


def num_eval_batches(config, *, process_count: int | None = None) -> int:
  """Batches every host runs for one exact pass (the largest host share, rounded up)."""
  _, process_count = sources.process(None, process_count)
  largest = max(sources.split_sizes(config, config.data.eval_split, process_count))
  return -(-largest // (config.eval_batch_size // process_count))


def host_eval_dataset(config, *, process_index: int | None = None,
                      process_count: int | None = None) -> tf.data.Dataset:
  """This host's share of the eval split once, padded to the same number of batches on
  every host. Yields {'image', 'label', 'mask'}; mask is 0.0 on padding rows."""
  data, size = config.data, run_config.image_size(config)
  _, local, split, num_classes = _host_share(
      config, 'eval_batch_size', data.eval_split, process_index, process_count)
  ds = _load(split, split.dataset, data.num_parallel_calls)
  prep = run_config.eval_preprocessing(config)
  ds = ds.map(lambda ex: {'image': images.eval_image(images.decoded(ex), prep),
                          'label': images.label(ex['label'], num_classes, data.multi_label, 0.0),
                          'mask': tf.constant(1.0), 'unreadable': tf.constant(0.0)},
              num_parallel_calls=data.num_parallel_calls, deterministic=True)
  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([*size, 3], tf.float32), 'label': tf.zeros([num_classes]),
      'mask': tf.constant(0.0), 'unreadable': tf.constant(0.0)}).repeat()
  # Pad, then cut at the same length on every host (an undecodable folder file only
  # means one more padding row).
  batches = -(-split.max_host_examples // local)
  ds = ds.concatenate(padding).take(batches * local).batch(local)
  return ds
