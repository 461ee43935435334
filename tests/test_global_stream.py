"""The global stream in one process: several hosts played by process indices.

What global batch s holds is a pure function of (seed, s): the hosts' local batches,
stacked, are bit-identical for 1, 2 and 4 hosts, with the ViT augmentation and with the
Swin recipe's (RandAugment, Mixup/CutMix, Random Erasing); every epoch is a permutation
of the whole split; a start at step k continues the stream; evaluation reads every
example once. The refusals: an odd row count per host with mixing, caches the stream
cannot use, a stream the dataset cannot give, a resume whose stream would differ.
Separate processes through `vit_jax.main`: tests/test_stream_invariance.py.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tests import image_folders
from vit_jax.configs import common
from vit_jax.data import DatasetError
from vit_jax.data import global_stream
from vit_jax.data import pipeline
from vit_jax.data import preflight

STEPS = 3


def demo_config(data_dir, **data):
  config = common.get_config()
  config.data.dataset = 'vit_demo/upstream_tiny'  # 96 train / 50 test, 100 classes
  config.data.data_dir = data_dir
  config.image_size, config.batch_size, config.eval_batch_size = 16, 16, 16
  config.data.crop_area_min = 0.5
  config.data.update(data)
  return config


def global_batches(config, hosts: int, start_step: int = 0, steps: int = STEPS):
  """[step][key] the hosts' local batches stacked in host order (a global batch)."""
  local = [list(pipeline.host_train_dataset(
      config, start_step=start_step, process_index=h, process_count=hosts)
      .take(steps).as_numpy_iterator()) for h in range(hosts)]
  return [{k: np.concatenate([local[h][s][k] for h in range(hosts)]) for k in local[0][s]}
          for s in range(steps)]


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys() == {'image', 'label', 'weight'}
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


# The Swin recipe's batch-level augmentation, where hosts could disagree (RandAugment is
# per example, seeded like the crop; left out: tracing it 7 times costs ~2 min here).
SWIN_AUGMENT = dict(mixup_alpha=0.8, cutmix_alpha=1.0, random_erase_prob=0.25)


@pytest.mark.parametrize('augment', [{}, SWIN_AUGMENT], ids=['vit', 'swin'])
def test_global_batches_are_the_same_for_1_2_and_4_hosts(demo_data_dir, augment):
  config = demo_config(demo_data_dir, **augment)
  one = global_batches(config, 1)
  assert_same(one, global_batches(config, 2))
  assert_same(one, global_batches(config, 4))
  assert one[0]['image'].shape == (16, 16, 16, 3)
  assert np.all(one[0]['weight'] == 1.0)
  if augment:  # mixed labels: two classes per row, weights summing to 1
    labels = one[0]['label']
    np.testing.assert_allclose(labels.sum(-1), 1.0, rtol=1e-5)
    assert (np.sort(labels, -1)[:, -2] > 0.01).mean() > 0.5


def test_a_start_at_step_k_continues_the_stream_on_any_host_count(demo_data_dir):
  config = demo_config(demo_data_dir)
  uninterrupted = global_batches(config, 1, steps=8)
  assert_same(global_batches(config, 2, start_step=5), uninterrupted[5:8])
  assert_same(global_batches(config, 4, start_step=6, steps=2), uninterrupted[6:8])


def test_each_epoch_is_a_seeded_permutation_of_the_whole_split():
  def epoch(seed, e, n=96):
    positions = tf.range(e * n, (e + 1) * n, dtype=tf.int64)
    return [int(global_stream.record_index(p, n, tf.constant(seed, tf.int64)))
            for p in positions]
  first, second = epoch(0, 0), epoch(0, 1)
  assert sorted(first) == sorted(second) == list(range(96))
  assert first != second and first != list(range(96))
  assert epoch(0, 0) == first  # a pure function of (seed, position)
  assert epoch(1, 0) != first


def test_pair_partners_skip_unreadable_rows():
  weight = tf.constant([1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
  # Row 2 and 5 keep themselves (partners 3 and 4 unread); 3 and 4 train nothing anyway.
  assert global_stream.pair_partners(weight).numpy().tolist() == [1, 0, 2, 2, 5, 5]


def test_evaluation_reads_every_example_once_on_any_host_count(demo_data_dir):
  config = demo_config(demo_data_dir)
  one = [b for b in pipeline.host_eval_dataset(config, process_index=0, process_count=1)
         .as_numpy_iterator()]
  assert pipeline.num_eval_batches(config, process_count=2) == len(one) == 4  # 50 / 16
  for hosts in (2, 4):
    local = [list(pipeline.host_eval_dataset(config, process_index=h, process_count=hosts)
                  .as_numpy_iterator()) for h in range(hosts)]
    assert {len(batches) for batches in local} == {4}
    for s, batch in enumerate(one):
      for k in batch:
        np.testing.assert_array_equal(
            np.concatenate([local[h][s][k] for h in range(hosts)]), batch[k])
  masks = np.concatenate([b['mask'] for b in one])
  assert masks.sum() == 50 and masks[:50].all() and not masks[50:].any()
  assert sum(b['unreadable'].sum() for b in one) == 0


def test_an_unreadable_eval_file_is_counted_not_evaluated(tmp_path):
  image_folders.write_split_folders(str(tmp_path), classes=2,
                                    per_class={'train': 4, 'val': 3})
  bad = sorted((tmp_path / 'val').rglob('*.JPEG'))[1]
  bad.write_bytes(b'not an image')
  config = demo_config(None, dataset=str(tmp_path), train_split='train', eval_split='val')
  config.eval_batch_size = 4
  batches = list(pipeline.host_eval_dataset(config, process_index=0, process_count=1)
                 .as_numpy_iterator())
  mask = np.concatenate([b['mask'] for b in batches])
  unreadable = np.concatenate([b['unreadable'] for b in batches])
  assert mask.tolist() == [1, 0, 1, 1, 1, 1, 0, 0]
  assert unreadable.tolist() == [0, 1, 0, 0, 0, 0, 0, 0]


# --- refusals ----------------------------------------------------------------------------

def test_mixing_needs_an_even_number_of_rows_per_host(demo_data_dir):
  config = demo_config(demo_data_dir, mixup_alpha=0.8)
  config.batch_size = 24
  preflight.preflight(config, process_count=4, data_shards=8)  # 6 rows per host
  config.batch_size = 8
  with pytest.raises(DatasetError, match=r'batch_size=8 over 8 processes gives 1 rows '
                     r'per host \(odd\)'):
    preflight.preflight(config, process_count=8, data_shards=8)


@pytest.mark.parametrize('data, message', [
    (dict(cache=True), r'config.data.cache=True caches the encoded records of the '
     r'per-host stream'),
    (dict(cache_decoded=True, train_crop='inception'), r"needs train_crop='resize' "
     r"\(got 'inception'\)"),
    (dict(stream='everywhere'), r"config.data.stream='everywhere' is not one of"),
])
def test_settings_the_global_stream_cannot_honour_are_refused(demo_data_dir, data, message):
  with pytest.raises(DatasetError, match=message):
    preflight.preflight(demo_config(demo_data_dir, **data), process_count=1, data_shards=8)


class TinyTfrecord(tfds.core.GeneratorBasedBuilder):
  """A catalog-like dataset prepared the way tfds prepares by default: TFRecord only
  (vit_demo is converted to ArrayRecord when found as TFRecord, so it cannot serve)."""
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return self.dataset_info_from_configs(features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(8, 8, 3)),
        'label': tfds.features.ClassLabel(num_classes=2)}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(16), 'test': self._generate_examples(4)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'image': np.full((8, 8, 3), 10 * i, np.uint8), 'label': i % 2}


def test_a_tfrecord_dataset_runs_per_host_and_says_so(tmp_path):
  TinyTfrecord(data_dir=str(tmp_path)).download_and_prepare()
  config = demo_config(str(tmp_path), dataset='tiny_tfrecord')
  config.batch_size = config.eval_batch_size = 8
  info = preflight.preflight(config, process_count=2, data_shards=8)
  assert info.stream['mode'] == 'per_host' and info.stream['process_count'] == 2
  assert info.stream_summary.startswith('per-host: NOT host-count invariant')
  assert (f'python -m vit_jax.data.to_array_record --dataset=tiny_tfrecord '
          f'--data_dir={tmp_path}') in info.stream_summary
  with pytest.raises(DatasetError, match=r"config.data.stream='global', but tfds dataset "
                     r'tiny_tfrecord/1.0.0 is stored as tfrecord only'):
    preflight.preflight(demo_config(str(tmp_path), dataset='tiny_tfrecord',
                                    stream='global'), process_count=1, data_shards=8)
  batch = next(pipeline.host_train_dataset(config, process_index=1, process_count=2)
               .as_numpy_iterator())
  assert batch['image'].shape == (4, 16, 16, 3) and np.all(batch['weight'] == 1.0)


def test_per_host_stream_of_an_array_record_dataset_is_refused(demo_data_dir):
  with pytest.raises(DatasetError, match=r'stored as ArrayRecord only, which the per-host '
                     r'stream \(tfds as_dataset\) cannot read'):
    preflight.preflight(demo_config(demo_data_dir, stream='per_host'), process_count=1,
                        data_shards=8)


def test_a_resume_that_would_change_the_stream_is_refused_naming_both_values():
  saved = {'mode': 'global', 'dataset': '/data/own', 'train_split': 'train', 'seed': 0,
           'batch_size': 32, 'num_train_examples': 1000}
  pipeline.check_resume(saved, dict(saved), 'ckpt/8')  # unchanged: accepted
  pipeline.check_resume(None, dict(saved), 'ckpt/8')  # an older checkpoint: unchecked
  with pytest.raises(DatasetError, match=r'cannot resume ckpt/8: .*seed: 0 -> 1; '
                     r'.*new workdir with config.init=<this workdir>'):
    pipeline.check_resume(saved, dict(saved, seed=1), 'ckpt/8')
  with pytest.raises(DatasetError, match=r'num_train_examples: 1000 -> 1001; the train '
                     r'split changed size since the checkpoint'):
    pipeline.check_resume(saved, dict(saved, num_train_examples=1001), 'ckpt/8')
  per_host = dict(saved, mode='per_host', process_count=2)
  with pytest.raises(DatasetError, match=r'process_count: 2 -> 1; .*resume on 2'):
    pipeline.check_resume(per_host, dict(per_host, process_count=1), 'ckpt/8')


def _snapshot(root):
  return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
          for p in sorted(root.rglob('*')) if p.is_file()}


def test_main_refuses_a_resume_on_another_stream_and_leaves_the_workdir(tmp_path):
  from tests import test_train
  compile_cache = tmp_path / 'jax_cache'
  data = tmp_path / 'images'
  image_folders.write_split_folders(str(data), classes=4, per_class={'train': 10, 'val': 2})
  workdir = tmp_path / 'run'
  folder = [f'--config.data.dataset={data}', '--config.data.train_split=train',
            '--config.data.eval_split=val', '--config.total_steps=2',
            '--config.checkpoint_every_steps=2', '--config.warmup_steps=0']
  test_train.run_main(workdir, None, compile_cache, *folder)
  before = _snapshot(workdir)
  log = test_train.run_main(workdir, None, compile_cache, *folder, '--config.seed=1',
                            '--config.total_steps=4', expect=1)
  assert f'cannot resume {workdir}/checkpoints/2: ' in log and 'seed: 0 -> 1' in log
  image_folders.write_jpeg(str(data / 'train' / image_folders.WNIDS[0] / 'new.JPEG'),
                           image_folders.class_image(0, 99))
  log = test_train.run_main(workdir, None, compile_cache, *folder,
                            '--config.total_steps=4', expect=1)
  assert ('num_train_examples: 40 -> 41; the train split changed size since the '
          'checkpoint') in log
  assert 'Compiling' not in log and 'compile seconds' not in log
  assert _snapshot(workdir) == before  # nothing written, nothing overwritten
