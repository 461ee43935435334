"""Per-host tf.data input: tfds or folder sources -> global batches sharded over the mesh.

The training loop uses three functions:

  info = preflight(config)                        # before any model is built
  for batch in train_iterator(config, sharding, start_step=step): ...   # infinite
  for batch in eval_iterator(config, sharding): ...                     # one exact pass

Batches are dicts of global jax.Arrays: `image` float32 (batch, H, W, 3) in [-1, 1],
`label` float32 (batch, classes) (one-hot with config.label_smoothing at train time, plain
one-hot at eval, or multi-hot), and for eval `mask` float32 (batch,), 0 for padding.

Order and randomness. Host h of n reads only its share of a split (tfds.even_splits /
folder.host_share). Its training stream is epoch after epoch of that share, each epoch
shuffled with a seed made of (config.seed, epoch); example k of the stream belongs to
global step k // local_batch, and all its augmentation randomness is seeded by
(config.seed, global position in the step's global batch). Starting at step s therefore
means skipping s * local_batch encoded records (no decoding) and yields exactly the
batches an uninterrupted run yields from step s: the checkpointed step is all the state
the pipeline needs. (Folder sources: exact as long as no file is undecodable, since a
skipped file shifts the examples after it.)

`host_train_dataset` / `host_eval_dataset` are the per-host tf.data pipelines with the
process index and count as arguments, so tests can play several hosts in one process.
"""
from __future__ import annotations

import collections
import dataclasses
import math
from typing import Callable, Iterator

import jax
import numpy as np
import tensorflow as tf

from vit_jax import batch_augment
from vit_jax import preprocess
from vit_jax import randaugment
from vit_jax.datasets import DatasetError, folder, tfds_source

__all__ = ['DatasetError', 'DatasetInfo', 'preflight', 'train_iterator', 'eval_iterator',
           'host_train_dataset', 'host_eval_dataset']


def _hide_accelerators_from_tf() -> None:
  # tf.data runs on the host CPU; a TF that also grabbed the GPU/TPU would take the
  # memory JAX needs. Must run before TF initialises its devices, hence at import.
  for kind in ('GPU', 'TPU'):
    try:
      tf.config.set_visible_devices([], kind)
    except (RuntimeError, ValueError):  # already initialised, or no such device type
      pass


_hide_accelerators_from_tf()


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about the configured dataset, all read from tfds info or the folder listing."""
  num_classes: int
  num_train_examples: int  # whole train split, all hosts
  num_eval_examples: int  # whole eval split, all hosts
  label_names: list[str] | None
  multi_label: bool


@dataclasses.dataclass(frozen=True)
class _HostSplit:
  """One host's share of a split, not yet decoded.

  `dataset` yields {'ref', 'label'} in a fixed order: `ref` is the encoded image (tfds)
  or the file path (folder); `load` turns a ref into encoded bytes after shuffling.
  """
  dataset: tf.data.Dataset
  num_examples: int  # this host's share
  max_host_examples: int  # largest share over all hosts: eval pads every host to it
  load: Callable[[tf.Tensor], tf.Tensor]
  is_folder: bool


# --- sources ----------------------------------------------------------------------------

def _tfds_host_split(data_config, split, process_index, process_count) -> _HostSplit:
  ds, sizes = tfds_source.host_records(data_config, split, process_index, process_count)
  return _HostSplit(ds, sizes[process_index], max(sizes), load=lambda ref: ref,
                    is_folder=False)


def _folder_host_split(data_config, split, process_index, process_count) -> _HostSplit:
  paths, labels = folder.list_files(data_config.dataset, split)
  sizes = [len(folder.host_share(paths, i, process_count)) for i in range(process_count)]
  ds = tf.data.Dataset.from_tensor_slices({
      'ref': folder.host_share(paths, process_index, process_count),
      'label': np.asarray(folder.host_share(labels, process_index, process_count), np.int64)})
  return _HostSplit(ds, sizes[process_index], max(sizes), load=tf.io.read_file,
                    is_folder=True)


def _host_split(config, split, process_index, process_count) -> _HostSplit:
  if folder.is_folder(config.data.dataset):
    return _folder_host_split(config.data, split, process_index, process_count)
  return _tfds_host_split(config.data, split, process_index, process_count)


def _split_sizes(config, split: str, process_count: int) -> list[int]:
  """Examples of `split` on each host, from metadata only (no reading)."""
  if folder.is_folder(config.data.dataset):
    paths, _ = folder.list_files(config.data.dataset, split)
    return [len(folder.host_share(paths, i, process_count)) for i in range(process_count)]
  return tfds_source.split_sizes(tfds_source.prepared_builder(config.data), split, process_count)


# --- preflight --------------------------------------------------------------------------

def _process(process_index, process_count) -> tuple[int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def _check_batch(name: str, batch: int, data_shards: int, process_count: int) -> int:
  """Returns the per-host batch, or raises with the numbers and a size that works."""
  unit = math.lcm(data_shards, process_count)
  if batch <= 0 or batch % unit:
    good = max(unit, round(batch / unit) * unit)
    raise DatasetError(
        f'config.{name}={batch} must be a multiple of both the {data_shards} devices on '
        f"the 'data' mesh axis and the {process_count} hosts "
        f'({data_shards // max(1, process_count)} devices per host); use {good}')
  return batch // process_count


def _check_preprocessing(data) -> None:
  for field, value, valid in (('train_crop', data.train_crop, ('inception', 'resize')),
                              ('eval_resize', data.eval_resize, ('resize_crop', 'resize'))):
    if value not in valid:
      raise DatasetError(f'config.data.{field}={value!r}; expected one of {valid}')
  for field, fix in (('mixup_alpha', '0 disables Mixup; the Swin/DeiT recipes use 0.8'),
                     ('cutmix_alpha', '0 disables CutMix; the Swin/DeiT recipes use 1.0')):
    value = data.get(field, 0.0)
    if not value >= 0:  # also refuses NaN
      raise DatasetError(f'config.data.{field}={value} must be >= 0 (Beta(alpha, alpha)); '
                         f'{fix}')
  for field, fix in (
      ('mix_switch_prob', 'the probability of CutMix instead of Mixup per batch (timm '
       'and the Swin recipe: 0.5)'),
      ('random_erase_prob', 'the probability of erasing a box of each image (0 '
       'disables; the Swin recipe: 0.25)')):
    value = data.get(field, 0.0)
    if not 0 <= value <= 1:
      raise DatasetError(f'config.data.{field}={value} must be in [0, 1]: {fix}')


def preflight(config, *, process_count: int | None = None,
              data_shards: int | None = None) -> DatasetInfo:
  """Checks data, splits, image size, preprocessing names and batch sizes; fails with
  the fix, in seconds. Run before any model is built.

  `data_shards` is the size of the mesh's batch axis (default: all devices);
  `process_count` defaults to jax.process_count(). Prepares the offline demo dataset
  if it is missing, and imagenet2012 from the archives in its manual_dir (single process
  only; no download; logged).
  """
  _, process_count = _process(0, process_count)
  data_shards = jax.device_count() if data_shards is None else data_shards
  preprocess.parse_size(config.image_size)
  _check_preprocessing(config.data)
  _check_batch('batch_size', config.batch_size, data_shards, process_count)
  _check_batch('eval_batch_size', config.eval_batch_size, data_shards, process_count)
  num_classes, names = _classes(config)  # before listing: a wrong label mode fails first.
  counts = {}
  for split in (config.data.train_split, config.data.eval_split):
    shares = _split_sizes(config, split, process_count)
    if min(shares) == 0:
      raise DatasetError(f'split {split!r} of {config.data.dataset} gives host '
                         f'{shares.index(0)} of {process_count} no examples {shares}; use '
                         'a larger split or fewer hosts')
    counts[split] = sum(shares)
  return DatasetInfo(num_classes=num_classes, num_train_examples=counts[config.data.train_split],
                     num_eval_examples=counts[config.data.eval_split], label_names=names,
                     multi_label=bool(config.data.multi_label))


def _classes(config) -> tuple[int, list[str] | None]:
  if folder.is_folder(config.data.dataset):
    if config.data.multi_label:
      # A folder gives each image one label (its class folder): there are no label
      # sets to make multi-hot targets of, and summing a one-hot would give (B,) labels.
      raise DatasetError(
          f'config.data.multi_label=True, but {config.data.dataset} is an image folder, '
          'whose images have one label each (their class folder); set '
          'config.data.multi_label=False (loss=sigmoid_xent still trains one-hot '
          'targets, as the ViT ImageNet-21k recipe does)')
    names = folder.class_names(config.data.dataset)
    return len(names), names
  _, feature = tfds_source.label_feature(tfds_source.prepared_builder(config.data), config.data.multi_label)
  return feature.num_classes, list(feature.names) if feature.names else None


# --- per-example preprocessing ----------------------------------------------------------

def _label(label: tf.Tensor, num_classes: int, multi_label: bool,
           smoothing: float) -> tf.Tensor:
  if multi_label:
    return preprocess.multi_hot(label, num_classes)
  return preprocess.one_hot(label, num_classes, smoothing)


def _train_image(example: dict, seed: tf.Tensor, data, size) -> tf.Tensor:
  """Decoded or encoded image -> augmented uint8 (H, W, 3); value range is set per batch.

  Sub-seeds are folded in only for the ops that run (each op costs ~5 us per image, which
  matters at the demo's 16 px).
  """
  if data.train_crop == 'inception':
    crop_seed = preprocess.fold_seed(seed, 0)
    if 'image' in example:  # already decoded (folder source)
      image = preprocess.inception_crop(example['image'], size, crop_seed, data.crop_area_min)
    else:
      image = preprocess.decode_and_inception_crop(example['encoded'], size, crop_seed,
                                                   data.crop_area_min)
  elif data.train_crop == 'resize':
    image = example['resized'] if 'resized' in example else preprocess.resize(
        _decoded(example), size)
  else:
    raise DatasetError(f"config.data.train_crop={data.train_crop!r}; expected "
                       "'inception' or 'resize'")
  if data.flip:
    image = preprocess.flip(image, preprocess.fold_seed(seed, 1))
  if data.randaug_layers > 0:
    image = randaugment.randaugment(image, data.randaug_layers, data.randaug_magnitude,
                                   preprocess.fold_seed(seed, 2))
  return image


def _eval_image(example: dict, data, size) -> tf.Tensor:
  """Decoded or encoded image -> float32 (H, W, 3) in [-1, 1], deterministic."""
  image = _decoded(example)
  if data.eval_resize == 'resize_crop':
    image = preprocess.resize_and_central_crop(image, size, data.eval_crop_ratio)
  elif data.eval_resize == 'resize':
    image = preprocess.resize(image, size)
  else:
    raise DatasetError(f"config.data.eval_resize={data.eval_resize!r}; expected "
                       "'resize_crop' or 'resize'")
  return preprocess.value_range(image)


def _decoded(example: dict) -> tf.Tensor:
  return example['image'] if 'image' in example else preprocess.decode(example['encoded'])


def _load(split: _HostSplit, ds: tf.data.Dataset, num_parallel_calls: int) -> tf.data.Dataset:
  """{'ref', 'label'} -> {'encoded', 'label'} (tfds) or {'image', 'path', 'label'} (folder,
  decoded here so that undecodable files can be skipped)."""
  if not split.is_folder:
    return ds.map(lambda ex: {'encoded': ex['ref'], 'label': ex['label']})
  ds = ds.map(lambda ex: {'encoded': split.load(ex['ref']), 'path': ex['ref'],
                          'label': ex['label']},
              num_parallel_calls=num_parallel_calls, deterministic=True)
  return folder.decode_or_skip(ds, num_parallel_calls)


def _options(data) -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True  # parallel maps keep input order: reproducible batches
  # Bounded threads: a 2-core laptop must not run 2 x cores tf.data threads beside XLA.
  options.threading.private_threadpool_size = data.num_parallel_calls
  options.threading.max_intra_op_parallelism = 1
  return options


# --- per-host pipelines -----------------------------------------------------------------

def _train_source(split: _HostSplit, data, size) -> tf.data.Dataset:
  """The host's split, in a fixed order, as the training stream repeats it.

  Default: encoded records, decoded after the shuffle. `cache_decoded`: decoded once
  (and, with train_crop='resize', resized: key 'resized') and held in memory; for small
  datasets like the demo, where 16x16 pixels are smaller than the JPEG and decoding
  every epoch would cost more CPU than the tiny model's step.
  """
  if data.cache_decoded:
    ds = _load(split, split.dataset, data.num_parallel_calls)
    if data.train_crop == 'resize':
      ds = ds.map(lambda ex: {'resized': preprocess.resize(_decoded(ex), size),
                              'label': ex['label']}, num_parallel_calls=data.num_parallel_calls)
    else:
      ds = ds.map(lambda ex: {'image': _decoded(ex), 'label': ex['label']},
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


def host_train_dataset(config, *, start_step: int = 0, process_index: int | None = None,
                       process_count: int | None = None) -> tf.data.Dataset:
  """This host's infinite stream of local train batches, starting at global `start_step`.

  Yields {'image': (local_batch, H, W, 3) float32, 'label': (local_batch, classes)}.
  """
  process_index, process_count = _process(process_index, process_count)
  data, size = config.data, preprocess.parse_size(config.image_size)
  local = _check_batch('batch_size', config.batch_size, process_count, process_count)
  split = _host_split(config, data.train_split, process_index, process_count)
  num_classes, _ = _classes(config)
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
    image = _train_image(ex, tf.stack([seed, global_position]), data, size)
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
    return {'image': image, 'label': label}
  ds = ds.map(example, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  ds = ds.batch(local, drop_remainder=True).enumerate(start=start_step)
  ds = ds.map(finish, num_parallel_calls=data.num_parallel_calls, deterministic=True)
  return ds.prefetch(data.prefetch).with_options(_options(data))


def num_eval_batches(config, *, process_count: int | None = None) -> int:
  """Batches every host runs for one exact pass (the largest host share, rounded up)."""
  _, process_count = _process(None, process_count)
  largest = max(_split_sizes(config, config.data.eval_split, process_count))
  return -(-largest // (config.eval_batch_size // process_count))


def host_eval_dataset(config, *, process_index: int | None = None,
                      process_count: int | None = None) -> tf.data.Dataset:
  """This host's share of the eval split once, padded to the same number of batches on
  every host. Yields {'image', 'label', 'mask'}; mask is 0.0 on padding rows."""
  process_index, process_count = _process(process_index, process_count)
  data, size = config.data, preprocess.parse_size(config.image_size)
  local = _check_batch('eval_batch_size', config.eval_batch_size, process_count,
                       process_count)
  split = _host_split(config, data.eval_split, process_index, process_count)
  num_classes, _ = _classes(config)
  ds = _load(split, split.dataset, data.num_parallel_calls)
  ds = ds.map(lambda ex: {'image': _eval_image(ex, data, size),
                          'label': _label(ex['label'], num_classes, data.multi_label, 0.0),
                          'mask': tf.constant(1.0)},
              num_parallel_calls=data.num_parallel_calls, deterministic=True)
  padding = tf.data.Dataset.from_tensors({
      'image': tf.zeros([*size, 3], tf.float32), 'label': tf.zeros([num_classes]),
      'mask': tf.constant(0.0)}).repeat()
  # Pad, then cut at the same length on every host (an undecodable folder file only
  # means one more padding row).
  batches = -(-split.max_host_examples // local)
  ds = ds.concatenate(padding).take(batches * local).batch(local)
  return ds.prefetch(data.prefetch).with_options(_options(data))


# --- global arrays ----------------------------------------------------------------------

def _data_shards(sharding: jax.sharding.NamedSharding) -> int:
  """Number of shards of the batch dimension (the mesh axes named in spec[0])."""
  axes = sharding.spec[0] if len(sharding.spec) else None
  axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  return math.prod(sharding.mesh.shape[a] for a in axes)


def _to_global(batch: dict, sharding, global_batch: int) -> dict:
  return {k: jax.make_array_from_process_local_data(
              sharding, v, (global_batch,) + v.shape[1:]) for k, v in batch.items()}


def _prefetch_to_device(iterator: Iterator[dict], size: int) -> Iterator[dict]:
  # Hand-written because flax.jax_utils.prefetch_to_device targets pmap's leading device
  # axis. make_array_from_process_local_data starts the host->device copies
  # asynchronously, so holding `size` global batches keeps them in flight.
  queue = collections.deque()
  for item in iterator:
    queue.append(item)
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()


def train_iterator(config, sharding: jax.sharding.NamedSharding, *,
                   start_step: int = 0) -> Iterator[dict]:
  """Infinite global train batches from `start_step` on (the checkpointed step)."""
  _check_batch('batch_size', config.batch_size, _data_shards(sharding), jax.process_count())
  ds = host_train_dataset(config, start_step=start_step)
  batches = (_to_global(b, sharding, config.batch_size) for b in ds.as_numpy_iterator())
  return _prefetch_to_device(batches, config.data.device_prefetch)


def eval_iterator(config, sharding: jax.sharding.NamedSharding) -> Iterator[dict]:
  """One pass over the eval split; every example once, padding rows have mask 0."""
  _check_batch('eval_batch_size', config.eval_batch_size, _data_shards(sharding),
               jax.process_count())
  ds = host_eval_dataset(config)
  batches = (_to_global(b, sharding, config.eval_batch_size) for b in ds.as_numpy_iterator())
  return _prefetch_to_device(batches, config.data.device_prefetch)
