"""The input pipeline's contract with the training loop, on 8 simulated CPU devices.

Global batch shapes and sharding; two simulated hosts (two process indices in one
process) read disjoint rows whose union is the global batch, and one epoch of them the
whole split; exact padded evaluation; resuming at step k reproduces the batches; and
fast, explicit errors. The global stream (the demo data, ArrayRecord) and, on an image
folder with config.data.stream='per_host', the per-host stream's own host shares and
per-host padding. More on the global stream: tests/test_global_stream.py.
"""
import hashlib

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tests import image_folders
from vit_jax.configs import common
from vit_jax.data import pipeline
from vit_jax.data import global_batches
from vit_jax.data import preflight

SIZE = 16  # pixels; the tiny demo stores 32 px


def config_for(data_dir, **overrides):
  config = common.get_config()
  config.data.dataset = 'vit_demo/upstream_tiny'  # 96 train / 50 test, 100 classes
  config.data.data_dir = data_dir
  config.data.shuffle_buffer = 32
  config.image_size = SIZE
  config.batch_size = 16
  config.eval_batch_size = 16
  config.update(overrides)
  return config


def plain(config):
  """No augmentation: a train image is then identical to its eval image (resize only)."""
  config.data.train_crop = 'resize'
  config.data.eval_resize = 'resize'
  config.data.flip = False
  return config


def fingerprints(images):
  return [hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in images]


def eval_fingerprints(config, process_index, process_count):
  prints = []
  for b in pipeline.host_eval_dataset(
      config, process_index=process_index, process_count=process_count).as_numpy_iterator():
    prints += fingerprints(b['image'][b['mask'] > 0])
  return prints


@pytest.fixture(scope='module')
def data_sharding():
  assert jax.device_count() == 8, 'tests/conftest.py must simulate 8 CPU devices'
  return NamedSharding(Mesh(np.array(jax.devices()), ('data',)), PartitionSpec('data'))


def test_global_train_batch_shape_values_and_sharding(demo_data_dir, data_sharding):
  config = config_for(demo_data_dir, label_smoothing=0.1)
  batch = next(global_batches.train_iterator(config, data_sharding))
  assert batch['image'].shape == (16, SIZE, SIZE, 3) and batch['image'].dtype == np.float32
  assert batch['label'].shape == (16, 100) and batch['label'].dtype == np.float32
  for array in batch.values():
    assert array.sharding == data_sharding
    assert {s.data.shape[0] for s in array.addressable_shards} == {2}  # 16 rows / 8
  image = np.asarray(batch['image'])
  assert -1.0 <= image.min() < -0.5 and 0.5 < image.max() <= 1.0
  label = np.asarray(batch['label'])
  np.testing.assert_allclose(label.sum(1), 1.0, atol=1e-5)
  np.testing.assert_allclose(label.max(1), 0.9 + 0.1 / 100, atol=1e-6)  # smoothing 0.1


def test_batch_is_split_along_data_axis_of_a_2d_mesh(demo_data_dir):
  mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ('data', 'model'))
  sharding = NamedSharding(mesh, PartitionSpec('data'))
  batch = next(global_batches.train_iterator(config_for(demo_data_dir), sharding))
  assert {s.data.shape for s in batch['image'].addressable_shards} == {(4, SIZE, SIZE, 3)}


def test_two_hosts_read_disjoint_examples_whose_union_is_the_split(demo_data_dir):
  config = plain(config_for(demo_data_dir))
  for split, size in (('train', 96), ('test', 50)):
    config.data.eval_split = split
    one_host = eval_fingerprints(config, 0, 1)
    host0, host1 = eval_fingerprints(config, 0, 2), eval_fingerprints(config, 1, 2)
    assert len(set(one_host)) == size
    assert not set(host0) & set(host1)
    assert sorted(host0 + host1) == sorted(one_host)
  # Training (global stream): each host reads 8 rows of each global batch of 16; over the
  # first epoch (96 / 16 = 6 steps) the two hosts' rows are disjoint and together are
  # the whole split, each example once (every epoch is a permutation of the split).
  config.data.eval_split = 'train'
  seen = []
  for host in (0, 1):
    epoch = pipeline.host_train_dataset(config, process_index=host, process_count=2)
    batches = list(epoch.take(6).as_numpy_iterator())
    assert {b['image'].shape[0] for b in batches} == {8}
    assert all((b['weight'] == 1.0).all() for b in batches)
    seen.append(sum((fingerprints(b['image']) for b in batches), []))
  assert len(seen[0]) == len(seen[1]) == 48 and not set(seen[0]) & set(seen[1])
  assert sorted(seen[0] + seen[1]) == sorted(eval_fingerprints(config, 0, 1))


@pytest.mark.parametrize('hosts,eval_batch,batches', [(1, 16, 4), (2, 16, 4), (3, 24, 3)])
def test_eval_sees_every_example_once(demo_data_dir, hosts, eval_batch, batches):
  # Global stream: 50 test examples in ceil(50 / eval_batch) batches on every host (4 x 16,
  # 4 x 16, 3 x 24); host h holds rows [h * e, (h + 1) * e) of each, e = eval_batch /
  # hosts; positions 50.. of the split's order are padding (mask 0).
  config = plain(config_for(demo_data_dir, eval_batch_size=eval_batch))
  assert pipeline.num_eval_batches(config, process_count=hosts) == batches
  local = [list(pipeline.host_eval_dataset(config, process_index=h, process_count=hosts)
                .as_numpy_iterator()) for h in range(hosts)]
  assert [len(host_batches) for host_batches in local] == [batches] * hosts
  seen, mask = [], []
  for s in range(batches):
    for h in range(hosts):  # the global batch, row by row in host order
      b = local[h][s]
      assert b.keys() == {'image', 'label', 'mask', 'unreadable'}
      assert b['image'].shape[0] == eval_batch // hosts
      assert not b['unreadable'].any()
      real = b['mask'] > 0
      np.testing.assert_array_equal(b['label'][real].sum(1), 1.0)  # no smoothing at eval
      seen += fingerprints(b['image'][real])
      mask += b['mask'].tolist()
  assert mask == [1.0] * 50 + [0.0] * (batches * eval_batch - 50)
  assert len(seen) == len(set(seen)) == 50
  # Stored order: the global rows are the one-host pass, real row for real row.
  assert seen == eval_fingerprints(config, 0, 1)


@pytest.fixture(scope='module')
def folder_50(tmp_path_factory):
  """An image folder: 5 classes x (4 train, 10 val) JPEGs; val has 50 images, as the
  demo's test split."""
  root = str(tmp_path_factory.mktemp('folder_50'))
  image_folders.write_split_folders(root, classes=5, per_class={'train': 4, 'val': 10})
  return root


def per_host_folder_config(root, **overrides):
  config = plain(config_for(None, **overrides))
  config.data.update(dataset=root, train_split='val', eval_split='val', stream='per_host')
  return config


def test_per_host_stream_hosts_read_their_own_share_each_epoch(folder_50):
  # The per-host stream: host h of 2 reads files h, h + 2, ... of the sorted list, its
  # first epoch (25 files; 3 local batches of 8 = 24 of them) comes from its share only.
  config = per_host_folder_config(folder_50)
  shares = [eval_fingerprints(config, h, 2) for h in (0, 1)]
  assert [len(s) for s in shares] == [25, 25] and not set(shares[0]) & set(shares[1])
  assert sorted(shares[0] + shares[1]) == sorted(eval_fingerprints(config, 0, 1))
  for host in (0, 1):
    epoch = pipeline.host_train_dataset(config, process_index=host, process_count=2)
    seen = sum((fingerprints(b['image']) for b in epoch.take(3).as_numpy_iterator()), [])
    assert len(seen) == len(set(seen)) == 24 and set(seen) <= set(shares[host])


@pytest.mark.parametrize('hosts,eval_batch,batches', [(1, 16, 4), (2, 16, 4), (3, 24, 3)])
def test_per_host_eval_pads_each_share(folder_50, hosts, eval_batch, batches):
  # 50 files: 1 host 4 x 16 (14 padding); 2 hosts 25 + 25 in 4 x 8 each; 3 hosts
  # 17 + 17 + 16 in 3 x 8 each: every host runs the batches of the largest share, its
  # own share first, then all-zero padding rows.
  config = per_host_folder_config(folder_50, eval_batch_size=eval_batch)
  assert pipeline.num_eval_batches(config, process_count=hosts) == batches
  seen = []
  for host in range(hosts):
    host_batches = list(pipeline.host_eval_dataset(
        config, process_index=host, process_count=hosts).as_numpy_iterator())
    assert len(host_batches) == batches
    mask = np.concatenate([b['mask'] for b in host_batches])
    share = len(range(host, 50, hosts))
    assert mask.tolist() == [1.0] * share + [0.0] * (batches * eval_batch // hosts - share)
    for b in host_batches:
      assert b['image'].shape[0] == eval_batch // hosts
      pad = b['mask'] == 0
      assert (b['image'][pad] == 0).all() and (b['label'][pad] == 0).all()
      np.testing.assert_array_equal(b['label'][~pad].sum(1), 1.0)
      seen += fingerprints(b['image'][~pad])
  assert len(seen) == len(set(seen)) == 50


def test_global_eval_iterator_masks_padding(demo_data_dir, data_sharding):
  batches = list(global_batches.eval_iterator(config_for(demo_data_dir), data_sharding))
  assert len(batches) == 4  # ceil(50 / 16)
  assert sum(float(b['mask'].sum()) for b in batches) == 50.0
  assert batches[-1]['mask'].sharding == data_sharding


def test_resume_at_step_k_reproduces_the_batches(demo_data_dir, data_sharding):
  # Every random op on, and steps 5..8 cross the epoch boundary (96 / 16 = 6 steps).
  config = config_for(demo_data_dir, label_smoothing=0.1)
  config.data.update(randaug_layers=2, randaug_magnitude=10, mixup_alpha=0.2)
  host = lambda start: list(pipeline.host_train_dataset(
      config, start_step=start).take(9 - start).as_numpy_iterator())
  uninterrupted, resumed = host(0), host(5)
  for a, b in zip(uninterrupted[5:], resumed):
    for key in ('image', 'label'):
      np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(uninterrupted[0]['image'], uninterrupted[6]['image'])
  # The global iterator too, and a different seed gives different batches.
  step5 = next(global_batches.train_iterator(config, data_sharding, start_step=5))
  np.testing.assert_array_equal(np.asarray(step5['image']), uninterrupted[5]['image'])
  config.seed = 1
  assert not np.array_equal(host(5)[0]['image'], resumed[0]['image'])


def test_demo_dataset_is_prepared_on_first_use(tmp_path, caplog):
  config = config_for(str(tmp_path))
  config.data.dataset = 'vit_demo/downstream_tiny'
  with caplog.at_level('INFO'):
    info = preflight.preflight(config)
  assert 'preparing the offline demo dataset' in caplog.text
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (10, 64, 50)
  assert info.label_names[0] == 'topmost_disc' and not info.multi_label


def fails_fast(config, pattern):
  """The data check itself refuses (preflight runs before any model is built); config
  names and sizes are ValueErrors, data problems DatasetErrors (a ValueError too)."""
  with pytest.raises(ValueError, match=pattern):
    preflight.preflight(config)


def test_unknown_dataset_name(demo_data_dir):
  fails_fast(config_for(demo_data_dir, data=dict(dataset='cifar_ten')),
             r"config.data.dataset='cifar_ten' is neither a tfds dataset \(close names: "
             r".*'cifar10.*\) nor an existing folder")


def test_unprepared_dataset_names_data_dir_and_command(tmp_path):
  config = config_for(str(tmp_path), data=dict(dataset='mnist'))
  fails_fast(config, rf"tfds dataset 'mnist' is not prepared in data_dir {tmp_path}\. .*"
             rf"tfds.builder\('mnist', data_dir='{tmp_path}', "
             r"file_format='array_record'\).download_and_prepare\(\)")


def test_manual_dataset_names_manual_dir_and_command(tmp_path):
  config = config_for(str(tmp_path), data=dict(dataset='imagenet2012',
                                               manual_dir=str(tmp_path / 'archives')))
  fails_fast(config, rf"put them in manual_dir {tmp_path}/archives .*ILSVRC2012_img_train"
             rf".*tfds.builder\('imagenet2012', data_dir='{tmp_path}', file_format="
             rf"'array_record'\).download_and_prepare\(download_config=tfds.download."
             rf"DownloadConfig\(manual_dir='{tmp_path}/archives'\)\)")


def test_missing_split_lists_the_available_ones(demo_data_dir):
  fails_fast(config_for(demo_data_dir, data=dict(eval_split='validation')),
             r"split 'validation' of tfds dataset vit_demo/upstream_tiny/1.0.0 is invalid "
             r".*available splits and sizes: \{'train': 96, 'test': 50\}")


def test_unknown_preprocessing_name(demo_data_dir):
  fails_fast(config_for(demo_data_dir, data=dict(train_crop='random')),
             r"config.data.train_crop='random'; expected one of \('inception', 'resize'\)")


def test_batch_size_error_prints_batch_hosts_and_devices(demo_data_dir):
  fails_fast(config_for(demo_data_dir, batch_size=30),
             r'config.batch_size=30 must be divisible by devices \(8\) and by the 1 '
             r'host\(s\) \(8 devices per host\), .* use batch_size=32')
  with pytest.raises(ValueError, match=r'config.eval_batch_size=12 .* devices \(16\) .* 2 '
                     r'host\(s\) \(8 devices per host\), .* use eval_batch_size=16'):
    preflight.preflight(config_for(demo_data_dir, eval_batch_size=12),
                             process_count=2, data_shards=16)


def test_multi_label_dataset_gives_multi_hot_labels(demo_data_dir, data_sharding):
  config = config_for(demo_data_dir, label_smoothing=0.1)  # smoothing is single-label only
  config.data.update(dataset='vit_demo/multilabel_tiny', multi_label=True)
  info = preflight.preflight(config)
  assert info.multi_label and info.num_classes == 10 and info.label_names[0] == 'disc'
  label = np.asarray(next(global_batches.train_iterator(config, data_sharding))['label'])
  assert label.shape == (16, 10)
  np.testing.assert_array_equal(label.sum(1), 3.0)  # the three shapes in each scene
  assert set(np.unique(label)) == {0.0, 1.0}


def test_cache_decoded_gives_the_same_batches(demo_data_dir):
  config = config_for(demo_data_dir, label_smoothing=0.1)
  config.data.update(train_crop='resize', randaug_layers=1)
  batches = lambda c, start: list(pipeline.host_train_dataset(
      c, start_step=start).take(3).as_numpy_iterator())
  default = batches(config, 4)  # steps 4, 5, 6: across the epoch boundary
  config.data.cache_decoded = True
  for a, b in zip(default, batches(config, 4)):
    np.testing.assert_array_equal(a['image'], b['image'])
    np.testing.assert_array_equal(a['label'], b['label'])
