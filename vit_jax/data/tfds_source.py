"""tfds datasets as a source: the builder, its label feature, split sizes, host shares.

Host i of n reads tfds.even_splits(split, n)[i]. Split sizes come from the builder's
split metadata; only a builder without any (or under tfds.testing.mock_data, which
ignores the split it is asked for) has them counted by reading.
"""
from __future__ import annotations

import difflib

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import DatasetError
from vit_jax.data import folder
from vit_jax.data import tfds_prepare
from vit_jax.data import to_array_record
# Registers the builders the project ships (vit_demo) with tfds, so that a config can
# name them like any catalog dataset.
from vit_jax import datasets  # noqa: F401  pylint: disable=unused-import


def prepared_builder(data_config) -> tfds.core.DatasetBuilder:
  """The tfds builder, prepared. Prepared here on first use when no download is needed:
  the offline demo dataset, and imagenet2012 from the archives in its manual_dir."""
  name = data_config.dataset
  try:
    builder = tfds.builder(name, data_dir=data_config.data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name.split('/')[0], tfds.list_builders(), n=3)
    raise DatasetError(
        f'config.data.dataset={name!r} is neither a tfds dataset (close names: {close}) '
        f'nor an existing folder; fix the name, or for own images give a folder path: '
        f'{folder.layout_help("<path>")}') from None
  if tfds_prepare.under_mock():
    return builder
  if builder.is_prepared():
    if builder.name == 'vit_demo' and not to_array_record.has_array_record(builder.info):
      # Ours, prepared as TFRecord by an older vit_jax: converted once (~1 s per 10k
      # images), so the demo reads the same global stream on every machine.
      tfds_prepare.convert_locked(builder, to_array_record.convert)
      return tfds.builder(name, data_dir=data_config.data_dir)
    return builder
  # Prepared here: written as ArrayRecord, the format the global stream reads by index.
  builder = tfds.builder(name, data_dir=data_config.data_dir,
                         file_format=tfds_prepare.FILE_FORMAT)
  if builder.name == 'vit_demo':
    tfds_prepare.prepare_locked(builder, 'the offline demo dataset',
                                'rendered locally, no download')
  elif builder.name in tfds_prepare.MANUAL_FILES:
    tfds_prepare.prepare_from_manual_dir(builder, data_config)
  else:
    raise DatasetError(tfds_prepare.not_prepared_message(builder, data_config))
  # A fresh builder reads the dataset_info (split sizes) just written.
  return tfds.builder(name, data_dir=data_config.data_dir)


def label_feature(builder, multi_label: bool) -> tuple[str, tfds.features.ClassLabel]:
  """(key, ClassLabel) of the label feature: 'label', or 'labels' for multi-label data."""
  features = builder.info.features
  for key in (('labels', 'label') if multi_label else ('label',)):
    feature = features[key] if key in features.keys() else None
    if isinstance(feature, tfds.features.Sequence):
      feature = feature.feature
    if isinstance(feature, tfds.features.ClassLabel):
      return key, feature
  raise DatasetError(
      f'dataset {builder.info.full_name} has no ClassLabel feature named '
      f'{"labels/label" if multi_label else "label"} (features: {list(features.keys())}); '
      'pick another dataset or set config.data.multi_label to match its labels')


def split_sizes(builder, split: str, process_count: int) -> list[int]:
  """Examples of each host's share (tfds.even_splits) of `split`, from split metadata;
  counted by reading only where there is none, or it does not say what is read (mock)."""
  try:
    shares = tfds.even_splits(split, n=process_count)
    sizes = ([builder.info.splits[s].num_examples for s in shares]
             if builder.info.splits else None)  # the check of split names, when known
  except (ValueError, KeyError, AssertionError) as e:
    available = {k: v.num_examples for k, v in builder.info.splits.items()}
    raise DatasetError(
        f'split {split!r} of tfds dataset {builder.info.full_name} is invalid ({e}); '
        f'available splits and sizes: {available}; set config.data.train_split / '
        'eval_split to one of them (slices like "train[:98%]" work)') from None
  if sizes is None or tfds_prepare.under_mock():
    return [_count_by_reading(builder, share, split) for share in shares]
  return sizes


def _count_by_reading(builder, share, split: str) -> int:
  """Examples in one host share, read from the data instead of the split metadata.

  Only for builders without split metadata, or under tfds.testing.mock_data: that mock
  serves the same `num_examples` random examples for every split, slice and host share
  (it ignores `split`) whatever a dataset_info.json says, and declares the count as the
  dataset's cardinality, so this reads nothing there. Prepared datasets use metadata.
  """
  ds = builder.as_dataset(split=share, decoders=_encoded_image_and(),
                          read_config=tfds.ReadConfig(try_autocache=False))
  count = int(ds.cardinality())
  if count < 0:  # unknown or infinite cardinality: count the (undecoded) records
    count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
  logging.info('tfds dataset %s: counted %d examples in a host share of split %r by '
               'reading it (%s)', builder.info.full_name, count, split,
               'tfds.testing.mock_data' if tfds_prepare.under_mock() else 'no split metadata')
  return count


def host_records(data_config, split: str, process_index: int, process_count: int
                 ) -> tuple[tf.data.Dataset, list[int]]:
  """This host's share of `split` as {'ref': encoded image, 'label'} in a fixed order,
  and every host's share size."""
  builder = prepared_builder(data_config)
  key, _ = label_feature(builder, data_config.multi_label)
  sizes = split_sizes(builder, split, process_count)
  ds = builder.as_dataset(
      split=tfds.even_splits(split, n=process_count)[process_index], shuffle_files=False,
      decoders=_encoded_image_and(key),
      read_config=tfds.ReadConfig(try_autocache=False))  # caching is config.data.cache
  ds = ds.map(lambda ex: {'ref': ex['image'], 'label': ex[key]})
  return ds, sizes


def _encoded_image_and(*keys: str) -> tfds.decode.PartialDecoding:
  # Parses only the image, left encoded (decoded after the shuffle), and `keys`: other
  # features (oxford_iiit_pet's segmentation_mask and head_bbox, file names) are unused.
  # Under tfds.testing.mock_data they are then not generated either: its random
  # head_bbox (ymin > ymax) fails to encode.
  return tfds.decode.PartialDecoding({'image': True, **{k: True for k in keys}},
                                     decoders={'image': tfds.decode.SkipDecoding()})
