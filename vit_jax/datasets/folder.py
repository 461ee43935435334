"""Own-image folders as a dataset source: `root/<split>/<class_name>/*.{jpg,jpeg,png}`.

Class names are the sorted sub-folders of `root/train` (label id = position), so every
split uses the same ids. Files are listed in sorted order and host i of n reads files
i, i + n, i + 2n, ... (a disjoint, even and class-balanced share).

A file that cannot be decoded is skipped, never replaced by a blank image and never
fatal: `decode_or_skip` tries each decode in a one-element tf.data dataset with
`ignore_errors()`, and the first time a file fails its name is logged with the running
count (`undecodable_files()` lists them).
"""
from __future__ import annotations

import os
import threading

from absl import logging
import tensorflow as tf

from vit_jax.datasets import DatasetError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_bad_files: set[str] = set()
_bad_files_lock = threading.Lock()  # tf.data runs the report from several threads.


def is_folder(name: str) -> bool:
  """True when `config.data.dataset` names a directory rather than a tfds dataset.

  Paths are recognised by existing, or by an explicit prefix ('/', './', '../', '~'),
  so that a mistyped folder path fails as a missing folder, not as a missing tfds name.
  """
  return os.path.isdir(os.path.expanduser(name)) or name.startswith(('/', './', '../', '~'))


def layout_help(root: str) -> str:
  return (f'expected layout: {root}/train/<class_name>/*.jpg|*.jpeg|*.png, and the same '
          f'for the eval split (e.g. {root}/test/<class_name>/...); the split names are '
          'config.data.train_split and config.data.eval_split')


def class_names(root: str) -> list[str]:
  """Sorted class sub-folders of root/train; their positions are the label ids."""
  root = os.path.expanduser(root)
  train = os.path.join(root, 'train')
  if not os.path.isdir(train):
    what = 'does not exist' if not os.path.isdir(root) else 'has no train/ sub-folder'
    raise DatasetError(f'dataset folder {root} {what}; {layout_help(root)}')
  names = sorted(d for d in os.listdir(train) if os.path.isdir(os.path.join(train, d)))
  if not names:
    raise DatasetError(f'{train} has no class sub-folders; {layout_help(root)}')
  return names


def list_files(root: str, split: str) -> tuple[list[str], list[int]]:
  """All image paths of `split` in sorted order, with their label ids."""
  root = os.path.expanduser(root)
  names = class_names(root)
  split_dir = os.path.join(root, split)
  if not os.path.isdir(split_dir):
    raise DatasetError(f'split {split!r} not found: {split_dir} does not exist; '
                       f'{layout_help(root)}')
  unknown = sorted(set(d for d in os.listdir(split_dir)
                       if os.path.isdir(os.path.join(split_dir, d))) - set(names))
  if unknown:
    raise DatasetError(f'{split_dir} has classes {unknown} that {root}/train lacks; '
                       'every class needs training images (add them or remove the folders)')
  paths, labels = [], []
  for label, name in enumerate(names):
    class_dir = os.path.join(split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    for file in sorted(os.listdir(class_dir)):
      if file.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(class_dir, file))
        labels.append(label)
  if not paths:
    raise DatasetError(f'{split_dir} holds no .jpg/.jpeg/.png files; {layout_help(root)}')
  return paths, labels


def host_share(items: list, process_index: int, process_count: int) -> list:
  """Items process_index, process_index + process_count, ...: disjoint across hosts."""
  return items[process_index::process_count]


def _report(path: tf.Tensor) -> bool:
  name = path.numpy().decode()
  with _bad_files_lock:
    if name not in _bad_files:
      _bad_files.add(name)
      logging.warning('skipping image that cannot be decoded: %s (%d undecodable so far)',
                      name, len(_bad_files))
  return False


def undecodable_files() -> list[str]:
  """Every file this process has skipped so far, sorted."""
  with _bad_files_lock:
    return sorted(_bad_files)


def _try_decode(example: dict) -> dict:
  # A failing op inside a map is an error of the whole pipeline; inside this one-element
  # dataset, ignore_errors() turns it into "no element", which we can branch on.
  attempt = tf.data.Dataset.from_tensors(example['encoded']).map(
      lambda b: tf.io.decode_image(b, channels=3, expand_animations=False)).ignore_errors()
  fallback = tf.data.Dataset.from_tensors(tf.zeros([0, 0, 3], tf.uint8))
  image = attempt.concatenate(fallback).take(1).get_single_element()
  ok = tf.shape(image)[0] > 0
  ok = tf.cond(ok, lambda: ok,
               lambda: tf.py_function(_report, [example['path']], Tout=tf.bool))
  out = {k: v for k, v in example.items() if k != 'encoded'}
  out.update(image=tf.ensure_shape(image, [None, None, 3]), decoded_ok=ok)
  return out


def decode_or_skip(ds: tf.data.Dataset, num_parallel_calls: int) -> tf.data.Dataset:
  """{'path', 'encoded', ...} -> {'path', 'image' uint8 (h, w, 3), ...}, bad files dropped."""
  ds = ds.map(_try_decode, num_parallel_calls=num_parallel_calls, deterministic=True)
  ds = ds.filter(lambda ex: ex['decoded_ok'])
  return ds.map(lambda ex: {k: v for k, v in ex.items() if k != 'decoded_ok'})
