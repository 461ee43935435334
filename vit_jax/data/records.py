"""Random access to a split: record i of a folder or of an ArrayRecord tfds dataset.

The global stream (global_stream.py) asks for records by index, so that each host reads
only the examples of its rows of each global batch:

  folder  the split's sorted path list (folder.list_files): record i is file i, read
          and decoded by `folder.read_and_decode` (an unreadable file gives ok=False);
  tfds    `builder.as_data_source(split)` over ArrayRecord files: record i is the
          serialized tf.train.Example i of the split (slices like 'train[:98%]' are
          resolved by tfds), parsed in-graph with the image left encoded.

tfds datasets stored only as TFRecord have no random access (a TFRecord file can only be
read from its start); `random_access_missing` says why, and pipeline.py then falls back
to the per-host stream (per_host.py) unless the dataset is converted once with
`python -m vit_jax.data.to_array_record`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import folder
from vit_jax.data import tfds_prepare
from vit_jax.data import tfds_source
from vit_jax.data import to_array_record

CONVERT_COMMAND = 'python -m vit_jax.data.to_array_record --dataset={dataset}{data_dir}'


@dataclasses.dataclass(frozen=True)
class Records:
  """One split, by index. `read(i)` (i: int64 scalar tensor, 0 <= i < num_examples)
  gives {'label', 'name' (str, for error messages), 'ok' (bool)} and either 'image'
  (decoded uint8 (h, w, 3); folders, decoded here to catch unreadable files) or
  'encoded' (image bytes; tfds, decoded later, with the crop where JPEG allows it)."""
  num_examples: int
  read: Callable[[tf.Tensor], dict]
  is_folder: bool


def convert_command(data_config) -> str:
  data_dir = f' --data_dir={data_config.data_dir}' if data_config.data_dir else ''
  return CONVERT_COMMAND.format(dataset=data_config.dataset, data_dir=data_dir)


def random_access_missing(config) -> str | None:
  """None when the train split can be read by index; else the reason (and the fix)."""
  data = config.data
  if folder.is_folder(data.dataset) or tfds_prepare.under_mock():
    return None  # tfds.testing.mock_data serves as_data_source itself.
  builder = tfds_source.prepared_builder(data)
  if to_array_record.has_array_record(builder.info):
    return None
  return (f'tfds dataset {builder.info.full_name} is stored as '
          f'{builder.info.file_format.value} only, which cannot be read by index; '
          f'convert it once with: {convert_command(data)}')


def sequential_missing(config) -> str | None:
  """None when the per-host stream can read the split (folders, TFRecord tfds data);
  else why not: tfds 4.9.10's as_dataset cannot read ArrayRecord files."""
  data = config.data
  if folder.is_folder(data.dataset) or tfds_prepare.under_mock():
    return None
  builder = tfds_source.prepared_builder(data)
  if builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD:
    return (f'tfds dataset {builder.info.full_name} is stored as ArrayRecord only, which '
            "the per-host stream (tfds as_dataset) cannot read; use config.data.stream="
            "'auto' (the global stream)")
  return None


def split_records(config, split: str) -> Records:
  if folder.is_folder(config.data.dataset):
    return _folder_records(config.data, split)
  return _tfds_records(config.data, split)


def _folder_records(data_config, split: str) -> Records:
  paths, labels = folder.list_files(data_config.dataset, split)
  paths_t = tf.constant(paths)
  labels_t = tf.constant(np.asarray(labels, np.int64))

  def read(i):
    image, ok = folder.read_and_decode(paths_t[i])
    return {'image': image, 'ok': ok, 'label': labels_t[i], 'name': paths_t[i]}
  return Records(len(paths), read, is_folder=True)


def _tfds_records(data_config, split: str) -> Records:
  builder = tfds_source.prepared_builder(data_config)
  key, _ = tfds_source.label_feature(builder, data_config.multi_label)
  # The image stays encoded (decoded after the crop is drawn; JPEG decodes only the
  # crop window); other features (masks, boxes, file names) are not parsed at all.
  decoding = tfds.decode.PartialDecoding({'image': True, key: True},
                                         decoders={'image': tfds.decode.SkipDecoding()})
  # Real ArrayRecord files return whole serialized examples whatever `decoders` says;
  # tfds.testing.mock_data then generates only these features (its random head_bbox of
  # oxford_iiit_pet, ymin > ymax, would not serialize).
  source = to_array_record.random_access_builder(builder).as_data_source(
      split=split, decoders=decoding,
      deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  features = decoding.extract_features(builder.info.features)
  name = f'{builder.info.full_name}[{split}] record '

  def fetch(i):  # ArrayRecord lookup: ~9 us per record on this CPU (Python, GIL held).
    return np.asarray(source[int(i)], dtype=object)

  def read(i):
    serialized = tf.numpy_function(fetch, [i], tf.string, stateful=False)
    serialized.set_shape([])
    example = features.deserialize_example(serialized, decoders=decoding.decoders)
    return {'encoded': example['image'], 'ok': tf.constant(True), 'label': example[key],
            'name': tf.strings.join([name, tf.strings.as_string(i)])}
  return Records(len(source), read, is_folder=False)
