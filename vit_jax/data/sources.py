"""One host's share of a split, from a tfds builder or an image folder, not yet decoded."""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np
import tensorflow as tf

from vit_jax.data import DatasetError
from vit_jax.data import folder
from vit_jax.data import tfds_source


@dataclasses.dataclass(frozen=True)
class HostSplit:
  """One host's share of a split, not yet decoded.

  `dataset` yields {'ref', 'label'} in a fixed order: `ref` is the encoded image (tfds)
  or the file path (folder); `load` turns a ref into encoded bytes after shuffling.
  """
  dataset: tf.data.Dataset
  num_examples: int  # this host's share
  max_host_examples: int  # largest share over all hosts: eval pads every host to it
  load: Callable[[tf.Tensor], tf.Tensor]
  is_folder: bool


def _tfds_host_split(data_config, split, process_index, process_count) -> HostSplit:
  ds, sizes = tfds_source.host_records(data_config, split, process_index, process_count)
  return HostSplit(ds, sizes[process_index], max(sizes), load=lambda ref: ref,
                    is_folder=False)


def _folder_host_split(data_config, split, process_index, process_count) -> HostSplit:
  paths, labels = folder.list_files(data_config.dataset, split)
  sizes = [len(folder.host_share(paths, i, process_count)) for i in range(process_count)]
  ds = tf.data.Dataset.from_tensor_slices({
      'ref': folder.host_share(paths, process_index, process_count),
      'label': np.asarray(folder.host_share(labels, process_index, process_count), np.int64)})
  return HostSplit(ds, sizes[process_index], max(sizes), load=tf.io.read_file,
                    is_folder=True)


def host_split(config, split, process_index, process_count) -> HostSplit:
  if folder.is_folder(config.data.dataset):
    return _folder_host_split(config.data, split, process_index, process_count)
  return _tfds_host_split(config.data, split, process_index, process_count)


def split_sizes(config, split: str, process_count: int) -> list[int]:
  """Examples of `split` on each host, from metadata only (no reading)."""
  if folder.is_folder(config.data.dataset):
    paths, _ = folder.list_files(config.data.dataset, split)
    return [len(folder.host_share(paths, i, process_count)) for i in range(process_count)]
  return tfds_source.split_sizes(tfds_source.prepared_builder(config.data), split, process_count)


def process(process_index, process_count) -> tuple[int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def classes(config) -> tuple[int, list[str] | None]:
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
