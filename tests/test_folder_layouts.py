"""ImageNet-21k's two layouts as folder sources, tfds split slices on folders, and the
refusals (multi-label folders, empty slices, a split the layout lacks) in preflight."""
import os
import shutil

import numpy as np
import pytest

from vit_jax.configs import common
from tests import image_folders
from vit_jax.data import pipeline
from vit_jax.data import preflight
from vit_jax.data import DatasetError
from vit_jax.data import folder, split_slices


@pytest.fixture(scope='module')
def one_tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('i21k_full'))
  image_folders.write_one_tree(root, classes=4, per_class=25)
  return root


@pytest.fixture(scope='module')
def split_tree(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('i21k_p'))
  image_folders.write_split_folders(root, classes=4, per_class={'train': 20, 'val': 5})
  return root


def config_for(root, train_split, eval_split):
  config = common.get_config()
  config.data.dataset = root
  config.data.train_split, config.data.eval_split = train_split, eval_split
  config.image_size = 8
  config.batch_size = config.eval_batch_size = 4
  config.data.eval_resize = config.data.train_crop = 'resize'
  config.data.shuffle_buffer = 8
  return config


def rel(paths, root):
  return sorted(os.path.relpath(p, root) for p in paths)


def test_one_tree_is_one_split_named_train(one_tree):
  assert folder.layout(one_tree) == folder.ONE_TREE
  assert folder.class_names(one_tree) == list(image_folders.WNIDS[:4])
  paths, labels = folder.list_files(one_tree, 'train')
  assert len(paths) == 100 and labels == sorted(labels)
  assert np.bincount(labels).tolist() == [25] * 4


def test_held_out_slice_is_disjoint_complete_and_spans_classes(one_tree):
  train, train_labels = folder.list_files(one_tree, 'train[:98%]')
  held, held_labels = folder.list_files(one_tree, 'train[98%:]')
  assert (len(train), len(held)) == (98, 2)  # tfds rounding of 98% of 100.
  assert not set(train) & set(held)
  assert sorted(train + held) == sorted(folder.list_files(one_tree, 'train')[0])
  wider, wider_labels = folder.list_files(one_tree, 'train[80%:]')
  # Ranked by path hash, not by class: 20 held-out files come from every class.
  assert len(wider) == 20 and set(wider_labels) == {0, 1, 2, 3}
  assert set(held) <= set(wider)  # the last 2% is inside the last 20%.
  assert all(folder.list_files(one_tree, 'train')[1][
      folder.list_files(one_tree, 'train')[0].index(p)] == l
      for p, l in zip(wider, wider_labels))


def test_slice_membership_does_not_depend_on_the_mount_point(one_tree, tmp_path):
  copy = str(tmp_path / 'elsewhere' / 'imagenet21k')
  shutil.copytree(one_tree, copy)
  assert rel(folder.list_files(copy, 'train[90%:]')[0], copy) == rel(
      folder.list_files(one_tree, 'train[90%:]')[0], one_tree)


def test_absolute_and_combined_slices(split_tree):
  assert folder.layout(split_tree) == folder.SPLIT_FOLDERS
  assert len(folder.list_files(split_tree, 'train[:30]')[0]) == 30
  paths, labels = folder.list_files(split_tree, 'train[:50%]+val')
  assert len(paths) == 40 + 20
  assert sum(p.startswith(os.path.join(split_tree, 'val')) for p in paths) == 20


def test_preflight_on_both_imagenet21k_layouts(one_tree, split_tree):
  info = preflight.preflight(config_for(one_tree, 'train[:98%]', 'train[98%:]'),
                                  process_count=1, data_shards=1)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (4, 98, 2)
  info = preflight.preflight(config_for(split_tree, 'train', 'val'),
                                  process_count=1, data_shards=1)
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (4, 80, 20)
  assert info.label_names == list(image_folders.WNIDS[:4])


def test_eval_pass_over_a_held_out_slice_is_exact(one_tree):
  config = config_for(one_tree, 'train[:90%]', 'train[90%:]')
  config.eval_batch_size = 4
  batches = list(pipeline.host_eval_dataset(
      config, process_index=0, process_count=1).as_numpy_iterator())
  assert sum(b['mask'].sum() for b in batches) == 10 and len(batches) == 3
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  assert labels.shape == (10, 4) and (labels.sum(1) == 1).all()  # one-hot (B, C).
  _, expected = folder.list_files(one_tree, 'train[90%:]')
  assert labels.argmax(1).tolist() == expected


def test_multi_label_folder_is_refused_before_listing(one_tree):
  config = config_for(one_tree, 'train[:98%]', 'train[98%:]')
  config.data.multi_label = True
  with pytest.raises(DatasetError, match=r'multi_label=True, but .*i21k_full.* is an image '
                     r'folder.*set config.data.multi_label=False'):
    preflight.preflight(config, process_count=1, data_shards=1)


def test_split_the_layout_lacks_and_empty_slices_are_refused(one_tree, split_tree):
  with pytest.raises(DatasetError, match=r"split 'test': .* is one tree .* only split is "
                     r"'train'; hold out a slice"):
    preflight.preflight(config_for(one_tree, 'train', 'test'),
                             process_count=1, data_shards=1)
  with pytest.raises(DatasetError, match=r"split 'val\[:1%\]' selects no examples of "
                     r"'val' \(20 examples; positions 0:0\); widen the slice"):
    preflight.preflight(config_for(split_tree, 'train', 'val[:1%]'),
                             process_count=1, data_shards=1)
  with pytest.raises(DatasetError, match=r"split 'train\[:98': cannot read 'train\[:98'"):
    folder.list_files(split_tree, 'train[:98')
  with pytest.raises(DatasetError, match=r"split 'train\[:200\]' does not fit the folder "
                     r"splits \{'train': 80\}"):
    folder.list_files(split_tree, 'train[:200]')


def test_split_slices_follow_tfds_rounding():
  sizes = {'train': 1001}
  s = split_slices.resolve('train[:98%]', sizes)[0]
  t = split_slices.resolve('train[98%:]', sizes)[0]
  assert (s.start, s.stop, t.start, t.stop) == (0, 981, 981, 1001)  # round(980.98) = 981
  assert split_slices.split_names('train[:10%] + val[5:]') == ['train', 'val']
