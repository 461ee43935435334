"""Own-image folders: labels from sorted class names, disjoint host shares, corrupt files
skipped and reported once, and clear errors for a wrong layout."""
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


def test_corrupt_image_is_skipped_and_reported_once(image_root, caplog):
  config = config_for(image_root, eval_batch_size=4)
  config.data.eval_split = 'train'
  with caplog.at_level(logging.WARNING):
    first = list(pipeline.host_eval_dataset(config).as_numpy_iterator())
    second = list(pipeline.host_eval_dataset(config).as_numpy_iterator())
  broken = os.path.join(image_root, 'train', 'dog', 'broken.jpg')
  reports = [r for r in caplog.records if 'cannot be decoded' in r.getMessage()]
  assert len(reports) == 1 and broken in reports[0].getMessage()
  assert broken in folder.undecodable_files()
  # 7 good images of 8 files: 2 batches of 4, one padding row, no black image.
  for batches in (first, second):
    assert len(batches) == 2
    assert sorted(real_ids(batches)) == [1, 2, 3, 4, 5, 6, 7]
    assert sum(b['mask'].sum() for b in batches) == 7
  labels = np.concatenate([b['label'] for b in first])[np.concatenate(
      [b['mask'] for b in first]) > 0]
  assert labels.argmax(1).tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_train_stream_skips_the_corrupt_image_and_keeps_running(image_root):
  config = config_for(image_root)
  ds = pipeline.host_train_dataset(config, process_index=1, process_count=2)
  batches = list(ds.take(3).as_numpy_iterator())  # 3 x 4 examples > 3 good files on host 1
  assert [b['image'].shape for b in batches] == [(4, 8, 8, 3)] * 3
  ids = set(image_ids(np.concatenate([b['image'] for b in batches])))
  # Host 1 owns files 1, 3, 5, 7 of the sorted list: cat/1, dog/0, dog/broken, emu/1.
  assert ids == {2, 4, 7}


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
  # Solid-colour images: any crop keeps the colour.
  assert set(image_ids(batch['image'])) <= set(range(1, 8))
