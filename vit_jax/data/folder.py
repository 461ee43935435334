"""Own-image folders as a dataset source, in the two layouts people download.

  split folders  root/<split>/<class>/*.jpg   (own data; ImageNet-21K-P: root/train, root/val)
  one tree       root/<class>/*.JPEG          (the full ImageNet-21k release, extracted):
                 a single split named 'train'; hold out a slice for evaluation,
                 e.g. train_split='train[:98%]', eval_split='train[98%:]'

Class names are the sorted class folders (of root/train, or of root for one tree), and
a label id is a name's position, so every split uses the same ids. Splits take tfds
slices ('train[:98%]', 'train[98%:]', 'train[:5000]+val', see split_slices.py): a
slice's positions index the split's files ranked by a hash of their path relative to
the split folder, so a held-out slice samples every class in proportion and a file stays
in it wherever the tree is mounted. The files a split selects are listed in sorted
order: record i of the split is file i (the global stream, data/records.py, reads them
by index); the per-host stream's host i of n reads files i, i + n, i + 2n, ...

A file that cannot be read or decoded is never replaced by a blank image that trains and
is never fatal: `read_and_decode` tries each read + decode in a one-element tf.data
dataset with `ignore_errors()`; the global stream keeps the slot with weight 0, the
per-host stream (`decode_or_skip`) drops it. The first few failures are logged by name
with the running count (`undecodable_files()` lists them all).
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading

from absl import logging
import tensorflow as tf

from vit_jax.data import DatasetError
from vit_jax.data import split_slices

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
SPLIT_FOLDERS, ONE_TREE = 'split folders', 'one tree'
ONE_TREE_SPLIT = 'train'  # the name of a one-tree folder's only split.
_bad_files: set[str] = set()
_bad_files_lock = threading.Lock()  # tf.data runs the report from several threads.


def is_folder(name: str) -> bool:
  """True when `config.data.dataset` names a directory rather than a tfds dataset.

  Paths are recognised by existing, or by an explicit prefix ('/', './', '../', '~'),
  so that a mistyped folder path fails as a missing folder, not as a missing tfds name.
  """
  return os.path.isdir(os.path.expanduser(name)) or name.startswith(('/', './', '../', '~'))


def layout_help(root: str) -> str:
  return (f'expected one of two layouts: split folders {root}/train/<class_name>/*.jpg'
          f'|*.jpeg|*.png (and the same for the eval split, e.g. {root}/val/<class_name>/'
          f'...; the split names are config.data.train_split and eval_split), or one tree '
          f"{root}/<class_name>/*.JPEG with the single split '{ONE_TREE_SPLIT}' "
          "(train_split='train[:98%]', eval_split='train[98%:]')")


def _subdirs(path: str) -> list[str]:
  with os.scandir(path) as entries:
    return sorted(e.name for e in entries if e.is_dir())


def _has_images(path: str) -> bool:
  with os.scandir(path) as entries:
    return any(e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS) for e in entries)


@functools.lru_cache(maxsize=64)
def layout(root: str) -> str:
  """SPLIT_FOLDERS when root/train exists, ONE_TREE when root's folders hold images."""
  root = os.path.expanduser(root)
  if not os.path.isdir(root):
    raise DatasetError(f'dataset folder {root} does not exist; {layout_help(root)}')
  if os.path.isdir(os.path.join(root, 'train')):
    return SPLIT_FOLDERS
  if any(_has_images(os.path.join(root, d)) for d in _subdirs(root)):
    return ONE_TREE
  raise DatasetError(f'dataset folder {root} has neither a train/ sub-folder nor class '
                     f'folders holding images; {layout_help(root)}')


def class_names(root: str) -> list[str]:
  """Sorted class folders (of root/train, or of root for one tree): ids by position."""
  root = os.path.expanduser(root)
  classes_dir = os.path.join(root, 'train') if layout(root) == SPLIT_FOLDERS else root
  names = _subdirs(classes_dir)
  if not names:
    raise DatasetError(f'{classes_dir} has no class sub-folders; {layout_help(root)}')
  return names


def _split_dir(root: str, name: str) -> str:
  if layout(root) == ONE_TREE:
    if name != ONE_TREE_SPLIT:
      raise DatasetError(
          f'split {name!r}: {root} is one tree of class folders (no split folders), so '
          f"its only split is '{ONE_TREE_SPLIT}'; hold out a slice of it, e.g. "
          "train_split='train[:98%]', eval_split='train[98%:]'")
    return root
  split_dir = os.path.join(root, name)
  if not os.path.isdir(split_dir):
    raise DatasetError(f'split {name!r} not found: {split_dir} does not exist; '
                       f'{layout_help(root)}')
  return split_dir


@functools.lru_cache(maxsize=16)
def _scan(root: str, name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
  """Every image of split `name` in sorted order, with label ids; read once per process
  (a 14M-file ImageNet-21k tree is worth not listing three times)."""
  names = class_names(root)
  split_dir = _split_dir(root, name)
  unknown = sorted(set(_subdirs(split_dir)) - set(names))
  if unknown:
    raise DatasetError(f'{split_dir} has classes {unknown} that {root}/train lacks; '
                       'every class needs training images (add them or remove the folders)')
  paths, labels = [], []
  for label, class_name in enumerate(names):
    class_dir = os.path.join(split_dir, class_name)
    if not os.path.isdir(class_dir):
      continue
    for file in sorted(os.listdir(class_dir)):
      if file.lower().endswith(IMAGE_EXTENSIONS):
        paths.append(os.path.join(class_dir, file))
        labels.append(label)
  if not paths:
    raise DatasetError(f'{split_dir} holds no .jpg/.jpeg/.png files; {layout_help(root)}')
  return tuple(paths), tuple(labels)


@functools.lru_cache(maxsize=16)
def _rank(root: str, name: str) -> tuple[int, ...]:
  """Positions of split `name`'s files ordered by a hash of the path below the split
  folder; computed once per process like `_scan` (preflight, the host shares and the
  eval pass all slice the same split)."""
  paths, split_dir = _scan(root, name)[0], _split_dir(root, name)
  def key(i):
    return hashlib.sha1(os.path.relpath(paths[i], split_dir).encode()).digest()
  return tuple(sorted(range(len(paths)), key=key))


def list_files(root: str, split: str) -> tuple[list[str], list[int]]:
  """Image paths of `split` (a tfds split string) in sorted order, with label ids."""
  root = os.path.expanduser(root)
  slices = split_slices.select(split, lambda name: len(_scan(root, name)[0]))
  paths, labels = [], []
  for s in slices:
    split_paths, split_labels = _scan(root, s.name)
    if (s.start, s.stop) == (0, len(split_paths)):
      chosen = range(len(split_paths))  # the whole split: no ranking needed.
    else:
      chosen = sorted(_rank(root, s.name)[s.start:s.stop])
    paths += [split_paths[i] for i in chosen]
    labels += [split_labels[i] for i in chosen]
  return paths, labels


def host_share(items: list, process_index: int, process_count: int) -> list:
  """Items process_index, process_index + process_count, ...: disjoint across hosts."""
  return items[process_index::process_count]


LOGGED_BAD_FILES = 10  # names logged one by one; after that, every 100th count only.


def report_unreadable(name: tf.Tensor) -> bool:
  """Logs an unreadable file or record (the first few by name, then a running count)
  and returns False (the value decode's ok flag takes)."""
  name = name.numpy().decode()
  with _bad_files_lock:
    if name not in _bad_files:
      _bad_files.add(name)
      count = len(_bad_files)
      if count <= LOGGED_BAD_FILES or count % 100 == 0:
        logging.warning('cannot read or decode %s (%d unreadable so far; its slot gets '
                        'weight 0)', name, count)
  return False


def undecodable_files() -> list[str]:
  """Every file this process has skipped so far, sorted."""
  with _bad_files_lock:
    return sorted(_bad_files)


def read_and_decode(path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """File path -> (uint8 (h, w, 3), ok). A file that is missing, unreadable or not an
  image gives ok=False and an 8x8 black placeholder (which the stream weights 0: it
  keeps the slot, so no later example moves, and never trains)."""
  # A failing op inside a map is an error of the whole pipeline; inside this one-element
  # dataset, ignore_errors() turns it into "no element", which we can branch on.
  attempt = tf.data.Dataset.from_tensors(path).map(
      lambda p: tf.io.decode_image(tf.io.read_file(p), channels=3,
                                   expand_animations=False)).ignore_errors()
  fallback = tf.data.Dataset.from_tensors(tf.zeros([0, 0, 3], tf.uint8))
  image = attempt.concatenate(fallback).take(1).get_single_element()
  ok = tf.shape(image)[0] > 0
  ok = tf.cond(ok, lambda: ok, lambda: tf.py_function(report_unreadable, [path], Tout=tf.bool))
  image = tf.cond(ok, lambda: image, lambda: tf.zeros([8, 8, 3], tf.uint8))
  return tf.ensure_shape(image, [None, None, 3]), ok


def _try_decode(example: dict) -> dict:
  # A failing op inside a map is an error of the whole pipeline; inside this one-element
  # dataset, ignore_errors() turns it into "no element", which we can branch on.
  attempt = tf.data.Dataset.from_tensors(example['encoded']).map(
      lambda b: tf.io.decode_image(b, channels=3, expand_animations=False)).ignore_errors()
  fallback = tf.data.Dataset.from_tensors(tf.zeros([0, 0, 3], tf.uint8))
  image = attempt.concatenate(fallback).take(1).get_single_element()
  ok = tf.shape(image)[0] > 0
  ok = tf.cond(ok, lambda: ok,
               lambda: tf.py_function(report_unreadable, [example['path']], Tout=tf.bool))
  out = {k: v for k, v in example.items() if k != 'encoded'}
  out.update(image=tf.ensure_shape(image, [None, None, 3]), decoded_ok=ok)
  return out


def decode_or_skip(ds: tf.data.Dataset, num_parallel_calls: int) -> tf.data.Dataset:
  """{'path', 'encoded', ...} -> {'path', 'image' uint8 (h, w, 3), ...}, bad files dropped."""
  ds = ds.map(_try_decode, num_parallel_calls=num_parallel_calls, deterministic=True)
  ds = ds.filter(lambda ex: ex['decoded_ok'])
  return ds.map(lambda ex: {k: v for k, v in ex.items() if k != 'decoded_ok'})
