"""Own-image folders: labels from sorted class names; a corrupt file keeps its slot with
weight 0 (global stream) or is skipped (per-host stream, config.data.stream='per_host',
with its disjoint host shares), and is reported once; clear errors for a wrong layout."""
import logging
import os

import numpy as np
import PIL.Image
import pytest

from vit_jax.configs import common
from vit_jax.data import pipeline
from vit_jax.data import preflight
from vit_jax.data import DatasetError
from vit_jax.data import folder

# Solid colours identify each image after decoding (channel 0 = 10 * image number).
CLASSES = {'train': {'cat': 3, 'dog': 2, 'emu': 2}, 'test': {'cat': 1, 'dog': 2}}


@pytest.fixture(scope='module')
def image_root(tmp_path_factory):
  root = tmp_path_factory.mktemp('images')
  n = 0
  for split, classes in CLASSES.items():
    for name, count in classes.items():
      os.makedirs(root / split / name)
      for i in range(count):
        n += 1
        image = PIL.Image.fromarray(np.full((12, 10, 3), (10 * n, 7, 200), np.uint8))
        ext = ('png', 'jpg', 'JPEG')[i % 3]
        image.save(root / split / name / f'{i}.{ext}', format='PNG' if ext == 'png' else 'JPEG')
  (root / 'train' / 'dog' / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
  (root / 'train' / 'dog' / 'notes.txt').write_text('not an image, not listed')
  return str(root)


def config_for(root, **overrides):
  config = common.get_config()
  config.data.dataset = root
  config.image_size = 8
  config.batch_size = config.eval_batch_size = 8
  config.data.eval_resize = 'resize'
  config.data.train_crop = 'resize'
  config.data.flip = False
  config.data.shuffle_buffer = 16
  config.update(overrides)
  return config


def image_ids(images):
  """Number of each image in the fixture, read from its red level (JPEG: +-1 level)."""
  return np.round((images[:, 0, 0, 0] + 1) * 127.5 / 10).astype(int).tolist()


def real_ids(batches):
  return sum((image_ids(b['image'][b['mask'] > 0]) for b in batches), [])


def test_is_folder():
  assert not folder.is_folder('vit_demo/upstream')
  assert not folder.is_folder('cifar10')
  assert folder.is_folder('/no/such/dir') and folder.is_folder('./images')


def test_labels_come_from_sorted_class_names(image_root):
  assert folder.class_names(image_root) == ['cat', 'dog', 'emu']
  paths, labels = folder.list_files(image_root, 'train')
  assert labels == [0, 0, 0, 1, 1, 1, 2, 2]  # dog has 2 images + broken.jpg
  assert sum(p.endswith('broken.jpg') for p in paths) == 1
  assert not any(p.endswith('.txt') for p in paths)
  _, test_labels = folder.list_files(image_root, 'test')
  assert test_labels == [0, 1, 1]


def test_hosts_read_disjoint_shares(image_root):
  paths, _ = folder.list_files(image_root, 'train')
  shares = [folder.host_share(paths, i, 3) for i in range(3)]
  assert sorted(sum(shares, [])) == sorted(paths)
  assert len(set(sum(shares, []))) == len(paths)
  assert [len(s) for s in shares] == [3, 3, 2]


BROKEN_SLOT = 5  # dog/broken.jpg in the sorted list of train files (ids 1-5, broken, 6, 7)


@pytest.fixture
def fresh_reports(monkeypatch):
  """Each test starts with no file reported yet in this process (reports are per process:
  another test of this module may have read broken.jpg already)."""
  monkeypatch.setattr(folder, '_bad_files', set())


def broken_reports(caplog, broken):
  return [r.getMessage() for r in caplog.records
          if r.getMessage().startswith(f'cannot read or decode {broken} ')]


def test_corrupt_image_keeps_its_slot_with_weight_0_and_is_reported_once(
    image_root, caplog, fresh_reports):
  # The global stream: nothing is skipped and nothing shifts.
  config = config_for(image_root, eval_batch_size=4)
  config.data.eval_split = 'train'
  broken = os.path.join(image_root, 'train', 'dog', 'broken.jpg')
  with caplog.at_level(logging.WARNING):
    evals = [list(pipeline.host_eval_dataset(config).as_numpy_iterator()) for _ in range(2)]
    train = list(pipeline.host_train_dataset(config).take(3).as_numpy_iterator())
  assert broken_reports(caplog, broken) == [
      f'cannot read or decode {broken} (1 unreadable so far; its slot gets weight 0)']
  assert folder.undecodable_files() == [broken]
  # Eval: 8 files in 2 batches of 4, in sorted order; the broken one is not evaluated
  # but counted as unreadable; the others keep their positions.
  for batches in evals:
    assert len(batches) == 2
    mask = np.concatenate([b['mask'] for b in batches])
    unreadable = np.concatenate([b['unreadable'] for b in batches])
    assert mask.tolist() == [1, 1, 1, 1, 1, 0, 1, 1]
    assert unreadable.tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    assert real_ids(batches) == [1, 2, 3, 4, 5, 6, 7]
  labels = np.concatenate([b['label'] for b in evals[0]])
  assert labels.argmax(1).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
  # Train: a global batch of 8 is one epoch of the 8 files (a permutation): each step
  # has exactly one weight-0 row, the broken file's slot with its label (dog) and the
  # black placeholder, which never trains; the other 7 rows are the 7 good images.
  for b in train:
    weight = b['weight']
    assert sorted(weight.tolist()) == [0.0] + [1.0] * 7
    bad = weight == 0
    assert (b['image'][bad] == -1.0).all()  # black (0) in [-1, 1]
    assert b['label'][bad].argmax(1).tolist() == [1]
    assert sorted(image_ids(b['image'][~bad])) == [1, 2, 3, 4, 5, 6, 7]


def test_per_host_stream_skips_the_corrupt_image_and_reports_it_once(
    image_root, caplog, fresh_reports):
  config = config_for(image_root, eval_batch_size=4)
  config.data.update(eval_split='train', stream='per_host')
  with caplog.at_level(logging.WARNING):
    first = list(pipeline.host_eval_dataset(config).as_numpy_iterator())
    second = list(pipeline.host_eval_dataset(config).as_numpy_iterator())
  broken = os.path.join(image_root, 'train', 'dog', 'broken.jpg')
  assert len(broken_reports(caplog, broken)) == 1
  assert folder.undecodable_files() == [broken]
  # 7 good images of 8 files: 2 batches of 4, one padding row at the end, no black image.
  for batches in (first, second):
    assert len(batches) == 2
    assert real_ids(batches) == [1, 2, 3, 4, 5, 6, 7]
    assert np.concatenate([b['mask'] for b in batches]).tolist() == [1] * 7 + [0]
    assert sum(b['unreadable'].sum() for b in batches) == 0
  labels = np.concatenate([b['label'] for b in first])[np.concatenate(
      [b['mask'] for b in first]) > 0]
  assert labels.argmax(1).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_per_host_train_stream_skips_the_corrupt_image_and_keeps_running(image_root):
  config = config_for(image_root)
  config.data.stream = 'per_host'
  ds = pipeline.host_train_dataset(config, process_index=1, process_count=2)
  batches = list(ds.take(3).as_numpy_iterator())  # 3 x 4 examples > 3 good files on host 1
  assert [b['image'].shape for b in batches] == [(4, 8, 8, 3)] * 3
  ids = set(image_ids(np.concatenate([b['image'] for b in batches])))
  # Host 1 owns files 1, 3, 5, 7 of the sorted list: cat/1, dog/0, dog/broken, emu/1.
  assert ids == {2, 4, 7}
  assert all((b['weight'] == 1.0).all() for b in batches)


def test_missing_folder_and_split_fail_with_the_layout(tmp_path, image_root):
  missing = str(tmp_path / 'nothing_here')
  with pytest.raises(DatasetError, match=r'nothing_here does not exist; expected one of two '
                     r'layouts: split folders .*nothing_here/train/<class_name>/\*\.jpg.*'
                     r'one tree .*nothing_here/<class_name>/\*\.JPEG'):
    preflight.preflight(config_for(missing))
  config = config_for(image_root)
  config.data.eval_split = 'validation'
  with pytest.raises(DatasetError, match=r"split 'validation' not found: .*validation "
                     'does not exist'):
    preflight.preflight(config)


def test_preflight_reports_folder_facts(image_root):
  info = preflight.preflight(config_for(image_root))
  assert info.num_classes == 3 and info.label_names == ['cat', 'dog', 'emu']
  assert (info.num_train_examples, info.num_eval_examples) == (8, 3)
  assert not info.multi_label


def test_folder_images_get_the_inception_crop_too(image_root):
  config = config_for(image_root, data=dict(train_crop='inception', flip=True))
  batch = next(pipeline.host_train_dataset(config).as_numpy_iterator())
  assert batch['image'].shape == (8, 8, 8, 3) and batch['label'].shape == (8, 3)
  # Solid-colour images: any crop keeps the colour. Step 0's 8 rows are the 8 files; the
  # broken one's slot has weight 0 and the black placeholder (cropped: still black).
  good = batch['weight'] > 0
  assert sorted(image_ids(batch['image'][good])) == [1, 2, 3, 4, 5, 6, 7]
  assert (batch['image'][~good] == -1.0).all() and (~good).sum() == 1
