"""Preflight: the data, splits, image size, preprocessing and batch sizes checked before
any model is built, so a mistake costs seconds, not a TPU hour."""
from __future__ import annotations

import dataclasses

import jax

from vit_jax import run_config
from vit_jax import sharding
from vit_jax.data import DatasetError
from vit_jax.data import sources


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about the configured dataset, all read from tfds info or the folder listing."""
  num_classes: int
  num_train_examples: int  # whole train split, all hosts
  num_eval_examples: int  # whole eval split, all hosts
  label_names: list[str] | None
  multi_label: bool


def _check_augmentation(data) -> None:
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
  _, process_count = sources.process(0, process_count)
  data_shards = jax.device_count() if data_shards is None else data_shards
  run_config.image_size(config)
  run_config.check_preprocessing(config.data)
  _check_augmentation(config.data)
  sharding.check_batch_sizes(config, data_shards=data_shards, process_count=process_count)
  # Before listing: a wrong label mode fails first.
  num_classes, names = sources.classes(config)
  counts = {}
  for split in (config.data.train_split, config.data.eval_split):
    shares = sources.split_sizes(config, split, process_count)
    if min(shares) == 0:
      raise DatasetError(f'split {split!r} of {config.data.dataset} gives host '
                         f'{shares.index(0)} of {process_count} no examples {shares}; use '
                         'a larger split or fewer hosts')
    counts[split] = sum(shares)
  return DatasetInfo(num_classes=num_classes,
                     num_train_examples=counts[config.data.train_split],
                     num_eval_examples=counts[config.data.eval_split], label_names=names,
                     multi_label=bool(config.data.multi_label))
