"""Preflight: the data, splits, image size, preprocessing and batch sizes checked before
any model is built, so a mistake costs seconds, not a TPU hour."""
from __future__ import annotations

import dataclasses

import jax

from vit_jax import run_config
from vit_jax import sharding
from vit_jax.data import DatasetError
from vit_jax.data import pipeline
from vit_jax.data import sources


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Facts about the configured dataset, all read from tfds info or the folder listing."""
  num_classes: int
  num_train_examples: int  # whole train split, all hosts
  num_eval_examples: int  # whole eval split, all hosts
  label_names: list[str] | None
  multi_label: bool
  stream: dict  # pipeline.description: stored with each checkpoint, checked on resume.
  stream_summary: str  # the start table's row.


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


def _check_global_stream(config, process_count: int) -> None:
  """What the global stream needs beyond the per-host one."""
  data = config.data
  local = config.batch_size // process_count
  mixing = data.mixup_alpha > 0 or data.get('cutmix_alpha', 0.0) > 0
  if mixing and local % 2:
    raise DatasetError(
        f'Mixup/CutMix pair rows (2k, 2k + 1) of each host\'s batch, but batch_size='
        f'{config.batch_size} over {process_count} processes gives {local} rows per host '
        '(odd); use a batch size that gives an even number of rows per host')
  if data.cache:
    raise DatasetError(
        'config.data.cache=True caches the encoded records of the per-host stream; the '
        'global stream reads records by index (an ArrayRecord lookup, or a file) and has '
        'no encoded cache: set config.data.cache=False (tiny datasets: cache_decoded=True '
        "with train_crop='resize'), or config.data.stream='per_host'")
  if data.cache_decoded and (data.train_crop != 'resize' or data.multi_label):
    raise DatasetError(
        f'config.data.cache_decoded=True holds the split as one uint8 array, which needs '
        f"train_crop='resize' (got {data.train_crop!r}) and one label per image (multi_"
        f'label={data.multi_label}); set cache_decoded=False, or train_crop=\'resize\'')


def _split_counts(config, mode: str, process_count: int) -> dict[str, int]:
  counts = {}
  for split in (config.data.train_split, config.data.eval_split):
    # The global stream reads a split by index on every host: only its size matters.
    shares = sources.split_sizes(config, split,
                                 process_count if mode == pipeline.PER_HOST else 1)
    if min(shares) == 0:
      raise DatasetError(f'split {split!r} of {config.data.dataset} gives host '
                         f'{shares.index(0)} of {len(shares)} no examples {shares}; use '
                         'a larger split or fewer hosts')
    counts[split] = sum(shares)
  return counts


def preflight(config, *, process_count: int | None = None,
              data_shards: int | None = None) -> DatasetInfo:
  """Checks data, splits, image size, preprocessing names, batch sizes and the stream;
  fails with the fix, in seconds. Run before any model is built.

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
  mode, _ = pipeline.stream_mode(config)
  if mode == pipeline.GLOBAL:
    _check_global_stream(config, process_count)
  counts = _split_counts(config, mode, process_count)
  num_train = counts[config.data.train_split]
  return DatasetInfo(num_classes=num_classes, num_train_examples=num_train,
                     num_eval_examples=counts[config.data.eval_split], label_names=names,
                     multi_label=bool(config.data.multi_label),
                     stream=pipeline.description(config, num_train, process_count),
                     stream_summary=pipeline.summary(config))
