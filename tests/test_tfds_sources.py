"""Real tfds builders through our real loading code.

* imagenet2012: tfds's own builder prepares official-layout archives (tests/
  imagenet_archives.py, no mocking of the builder); preflight and the host pipelines read
  it with the official validation labels; the run prepares it in place from manual_dir;
  missing or misnamed archives fail in preflight in seconds with the fix.
* The paper's transfer sets (cifar10, cifar100, oxford_iiit_pet, oxford_flowers102):
  their real builders under tfds.testing.mock_data, which has no split metadata and
  whose as_data_source serves the same `num_examples` generated records (record i the
  same each time) for every split and slice; the global stream reads them by index.
"""
import ast
import inspect
import os
import shlex
import types
from unittest import mock

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from vit_jax.configs import common
from tests import imagenet_archives
from vit_jax import run_config
from vit_jax import train
from vit_jax.data import pipeline
from vit_jax.data import preflight
from vit_jax.data import tfds_prepare
from vit_jax.data import DatasetError

SIZE = 16  # pixels fed to the model; the archives hold 40x48 JPEGs


def config_for(dataset, data_dir, **overrides):
  config = common.get_config()
  config.data.dataset = dataset
  config.data.data_dir = data_dir
  config.data.shuffle_buffer = 16
  config.image_size = SIZE
  config.batch_size = config.eval_batch_size = 16
  config.update(overrides)
  return config


def imagenet_config(data_dir, **data):
  return config_for('imagenet2012', data_dir, data={
      'train_split': 'train[:99%]', 'eval_split': 'validation', **data})


def eval_labels(config, process_index=0, process_count=1):
  """Label index of every real (mask 1) eval row, in order, and the number of batches."""
  labels, batches = [], 0
  for b in pipeline.host_eval_dataset(
      config, process_index=process_index, process_count=process_count).as_numpy_iterator():
    labels += b['label'][b['mask'] > 0].argmax(-1).tolist()
    batches += 1
  return labels, batches


# --- imagenet2012: tfds's real builder on official-layout archives ------------------------

def test_tfds_builder_prepares_the_archives(imagenet2012_data_dir):
  data = imagenet2012_data_dir
  builder = tfds.builder('imagenet2012', data_dir=data.data_dir)
  assert builder.is_prepared()
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {
      'train': data.archives.num_train, 'validation': data.archives.num_val} == {
      'train': 96, 'validation': 10}
  train_names = sorted(ex['file_name'].decode()
                       for ex in builder.as_data_source(split='train'))
  assert train_names == sorted(sum(data.archives.train_files.values(), []))
  assert data.prepare_seconds < 60, data.prepare_seconds


def test_images_carry_their_class(imagenet2012_data_dir):
  """Learnable: the val images' nearest train-class mean colour is their class."""
  builder = tfds.builder('imagenet2012', data_dir=imagenet2012_data_dir.data_dir)
  def colours(split):
    examples = list(builder.as_data_source(split=split))
    assert {ex['image'].shape for ex in examples} == {(*imagenet_archives.IMAGE_SIZE, 3)}
    return (np.array([ex['image'].mean((0, 1)) for ex in examples]),
            np.array([ex['label'] for ex in examples]))
  train_x, train_y = colours('train')
  classes = np.unique(train_y)
  centres = np.array([train_x[train_y == c].mean(0) for c in classes])
  val_x, val_y = colours('validation')
  nearest = classes[np.linalg.norm(val_x[:, None] - centres[None], axis=-1).argmin(1)]
  np.testing.assert_array_equal(nearest, val_y)


def test_preflight_reads_prepared_imagenet2012_from_metadata(imagenet2012_data_dir, caplog):
  data = imagenet2012_data_dir
  config = imagenet_config(data.data_dir)
  with caplog.at_level('INFO'):
    info = preflight.preflight(config)
  assert info.num_classes == 1000 and not info.multi_label
  assert info.label_names == imagenet_archives.official_synsets()
  builder = tfds.builder('imagenet2012', data_dir=data.data_dir)
  assert info.num_train_examples == builder.info.splits['train[:99%]'].num_examples == 95
  assert info.num_eval_examples == data.archives.num_val == 10
  assert 'by reading it' not in caplog.text  # prepared datasets: split metadata only
  for split in ('test', 'val'):  # an invalid split still lists the real ones
    with pytest.raises(DatasetError, match=rf"split '{split}' of tfds dataset imagenet2012/"
                       r"5.1.0 is invalid .*\{'train': 96, 'validation': 10\}"):
      preflight.preflight(imagenet_config(data.data_dir, eval_split=split))


def test_validation_labels_are_the_official_ones(imagenet2012_data_dir):
  data = imagenet2012_data_dir
  config = imagenet_config(data.data_dir, eval_resize='resize')
  labels, batches = eval_labels(config)
  assert batches == pipeline.num_eval_batches(config) == 1
  # Our pipeline reads the split in tfds's order; tfds keeps the file names.
  builder = tfds.builder('imagenet2012', data_dir=data.data_dir)
  files = [ex['file_name'].decode() for ex in builder.as_data_source(
      split='validation', decoders={'image': tfds.decode.SkipDecoding()})]
  official = imagenet_archives.official_val_labels(10)
  synsets = imagenet_archives.official_synsets()
  expected = [synsets.index(official[int(f[len('ILSVRC2012_val_'):-len('.JPEG')]) - 1])
              for f in files]
  assert sorted(files) == [f'ILSVRC2012_val_{i:08}.JPEG' for i in range(1, 11)]
  assert labels == expected
  assert {synsets[i] for i in labels} <= set(data.archives.synsets)  # all trained on


def test_two_hosts_share_the_validation_split(imagenet2012_data_dir):
  config = imagenet_config(imagenet2012_data_dir.data_dir)
  hosts = [eval_labels(config, i, 2) for i in range(2)]
  assert hosts[0][1] == hosts[1][1] == pipeline.num_eval_batches(config, process_count=2)
  assert sorted(hosts[0][0] + hosts[1][0]) == sorted(eval_labels(config)[0])
  info = preflight.preflight(config, process_count=2)
  assert (info.num_train_examples, info.num_eval_examples) == (95, 10)


def test_train_batches_hold_the_generated_classes(imagenet2012_data_dir):
  data = imagenet2012_data_dir
  ds = pipeline.host_train_dataset(imagenet_config(data.data_dir))
  synsets = imagenet_archives.official_synsets()
  trained = {synsets.index(s) for s in data.archives.synsets}
  for batch in ds.take(7).as_numpy_iterator():  # > 1 epoch of the 95 examples
    assert batch['image'].shape == (16, SIZE, SIZE, 3)
    assert batch['label'].shape == (16, 1000)
    assert -1 <= batch['image'].min() < batch['image'].max() <= 1
    assert set(batch['label'].argmax(-1).tolist()) <= trained


# --- imagenet2012 prepared by the run from manual_dir --------------------------------------

def test_manual_files_table_matches_the_builder():
  for name, files in tfds_prepare.MANUAL_FILES.items():
    builder_cls = tfds.builder_cls(name)
    code = inspect.getsource(builder_cls._split_generators)
    for file in files:  # named in the builder's prose and opened by its code
      assert file in builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS and f"'{file}'" in code
  assert tfds_prepare.MANUAL_FILES['imagenet2012'] == (
      imagenet_archives.TRAIN_TAR, imagenet_archives.VAL_TAR)


def test_run_prepares_imagenet2012_from_manual_dir(imagenet2012_data_dir, tmp_path, caplog):
  config = imagenet_config(str(tmp_path / 'tfds'), manual_dir=imagenet2012_data_dir.manual_dir)
  with caplog.at_level('INFO'):
    info = preflight.preflight(config)
  assert (f'preparing tfds dataset imagenet2012/5.1.0 in {tmp_path}/tfds (from the archives '
          f'in manual_dir {imagenet2012_data_dir.manual_dir}') in caplog.text
  assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (1000, 95, 10)
  assert eval_labels(config)[0] == eval_labels(imagenet_config(
      imagenet2012_data_dir.data_dir))[0]


def test_default_manual_dir_is_tfds_downloads_manual(imagenet2012_data_dir, tmp_path):
  manual = tmp_path / 'tfds' / 'downloads' / 'manual'
  manual.mkdir(parents=True)
  for name in (imagenet_archives.TRAIN_TAR, imagenet_archives.VAL_TAR):
    os.symlink(os.path.join(imagenet2012_data_dir.manual_dir, name), manual / name)
  info = preflight.preflight(imagenet_config(str(tmp_path / 'tfds')))
  assert (info.num_train_examples, info.num_eval_examples) == (95, 10)


def printed_command(message):
  """What the preparation command at the end of `message` calls, run against a stand-in
  tensorflow_datasets: ((builder args, builder kwargs), download_and_prepare kwargs).
  Fails if it is no `python -c "..."` line a shell can run (e.g. a repr the script
  cannot evaluate, such as PosixGPath('...'))."""
  argv = shlex.split(message[message.rindex('python -c "'):])
  assert argv[:2] == ['python', '-c'] and len(argv) == 3, argv
  calls = {}

  class Builder:
    def __init__(self, *args, **kwargs):
      calls['builder'] = (args, kwargs)

    def download_and_prepare(self, **kwargs):
      calls['prepare'] = kwargs

  stand_in = types.SimpleNamespace(
      builder=Builder, download=types.SimpleNamespace(
          DownloadConfig=lambda **kwargs: ('DownloadConfig', kwargs)))
  script = argv[2]
  assert script.startswith('import tensorflow_datasets as tfds; ')
  ast.parse(script)
  exec(script.removeprefix('import tensorflow_datasets as tfds; '),  # pylint: disable=exec-used
       {'tfds': stand_in, '__builtins__': {}})
  return calls['builder'], calls['prepare']


def test_multi_process_run_gets_the_tfds_build_command(imagenet2012_data_dir, tmp_path,
                                                        monkeypatch):
  manual = imagenet2012_data_dir.manual_dir
  config = imagenet_config(str(tmp_path / 'tfds'), manual_dir=manual)
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  message = fails_fast(
      config, rf"manual_dir {manual} holds its files, but this run has 2 processes"
      rf".*tfds.builder\('imagenet2012', data_dir='{tmp_path}/tfds', file_format="
      rf"'array_record'\).download_and_prepare\(download_config=tfds.download."
      rf"DownloadConfig\(manual_dir='{manual}'\)\)\"$")
  # Not `tfds build` (its CLI needs apache_beam at import): a Python one-liner that runs.
  assert printed_command(message) == (
      (('imagenet2012',), {'data_dir': f'{tmp_path}/tfds', 'file_format': 'array_record'}),
      {'download_config': ('DownloadConfig', {'manual_dir': manual})})
  assert not (tmp_path / 'tfds').exists()


def fails_fast(config, pattern, workdir=None):
  """preflight (or, given a workdir, the whole training entry point) fails before any
  model is built (so before any compile): building one fails the test."""
  built = AssertionError('a model was built before the data check failed')
  with mock.patch.object(run_config, 'create_model', side_effect=built), \
       pytest.raises(DatasetError, match=pattern) as e:
    if workdir is None:
      preflight.preflight(config)
    else:
      train.train_and_evaluate(config, str(workdir))
  return str(e.value)


def write_files(directory, names):
  directory.mkdir(parents=True, exist_ok=True)
  for name in names:
    (directory / name).write_bytes(b'not read: the names are checked first')


@pytest.mark.parametrize('names, hints', [
    ((), ()),
    (('ILSVRC2012_img_train.tar.gz', 'ILSVRC2012_img_val.tar.gz'),
     ("'ILSVRC2012_img_train.tar.gz' is compressed: decompress it (gunzip) to "
      "'ILSVRC2012_img_train.tar'.", "'ILSVRC2012_img_val.tar.gz' is compressed")),
    (('train.tar', 'val.tar'),
     ("Rename 'train.tar' to 'ILSVRC2012_img_train.tar'.",
      "Rename 'val.tar' to 'ILSVRC2012_img_val.tar'.")),
    (('ilsvrc2012_img_train.tar', 'ILSVRC2012_img_val.tar'),
     ("Rename 'ilsvrc2012_img_train.tar' to 'ILSVRC2012_img_train.tar'.",)),
], ids=['empty', 'gzipped', 'short_names', 'lowercase'])
def test_bad_manual_dir_fails_in_preflight_with_the_fix(tmp_path, names, hints):
  manual, data_dir, workdir = tmp_path / 'archives', tmp_path / 'tfds', tmp_path / 'work'
  write_files(manual, names)
  workdir.mkdir()
  (workdir / 'notes.txt').write_text('mine')
  before = os.stat(workdir / 'notes.txt')
  config = imagenet_config(str(data_dir), manual_dir=str(manual))
  message = fails_fast(config, 'not prepared', workdir=workdir)
  holds = f'holds {sorted(names)}' if names else 'is empty'
  assert f'its manual_dir {manual} {holds}, not the files the tfds builder reads: ' \
         f"['ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar']" in message
  for hint in hints:
    assert hint in message
  assert f'Fix: put them in manual_dir {manual} (config.data.manual_dir)' in message
  assert message.endswith(
      f'run: python -c "import tensorflow_datasets as tfds; tfds.builder(\'imagenet2012\', '
      f"data_dir='{data_dir}', file_format='array_record').download_and_prepare("
      f"download_config=tfds.download.DownloadConfig(manual_dir='{manual}'))\"")
  assert os.listdir(workdir) == ['notes.txt'] and (workdir / 'notes.txt').read_text() == 'mine'
  assert os.stat(workdir / 'notes.txt').st_mtime_ns == before.st_mtime_ns
  assert not data_dir.exists() and sorted(os.listdir(manual)) == sorted(names)


def test_missing_manual_dir_fails_in_preflight(tmp_path):
  config = imagenet_config(str(tmp_path / 'tfds'), manual_dir=str(tmp_path / 'nowhere'))
  fails_fast(config, rf"its manual_dir {tmp_path}/nowhere does not exist, not the files .*"
             r"missing: \['ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'\]")
  fails_fast(imagenet_config(str(tmp_path / 'tfds')),  # tfds's default manual_dir
             rf"its manual_dir {tmp_path}/tfds/downloads/manual does not exist")


def test_one_archive_missing_and_an_extracted_folder(tmp_path):
  manual = tmp_path / 'archives'
  write_files(manual, [imagenet_archives.TRAIN_TAR])
  (manual / 'ILSVRC2012_img_val').mkdir()
  message = fails_fast(imagenet_config(str(tmp_path / 'tfds'), manual_dir=str(manual)),
                       r"missing: \['ILSVRC2012_img_val.tar'\]\)\. 'ILSVRC2012_img_val' is a "
                       r"folder: tfds reads the archive 'ILSVRC2012_img_val.tar' itself\.")
  assert 'ILSVRC2012_img_train.tar' not in message.split('missing:')[1].split('Fix:')[0]


# --- the paper's transfer sets: real builders under tfds.testing.mock_data -----------------

TRANSFER_SETS = {  # name: (classes, label features of the real builder)
    'cifar10': (10, {'label'}),
    'cifar100': (100, {'label', 'coarse_label'}),
    'oxford_iiit_pet': (37, {'label', 'species'}),
    'oxford_flowers102': (102, {'label'}),
}
MOCK_EXAMPLES = 20


@pytest.fixture
def mocked(tmp_path):
  """mock_data with an empty data_dir: the builders' code info, no split metadata."""
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=str(tmp_path)):
    yield str(tmp_path)


def transfer_config(name, data_dir, **data):
  return config_for(name, data_dir, data={
      'train_split': 'train[:98%]', 'eval_split': 'train[98%:]', **data})


@pytest.mark.parametrize('name', TRANSFER_SETS)
def test_transfer_set_under_mock_data(name, mocked, caplog):
  classes, label_keys = TRANSFER_SETS[name]
  builder = tfds.builder(name)
  assert not builder.info.splits  # what the mock provides: no split metadata
  assert label_keys <= set(builder.info.features.keys())
  config = transfer_config(name, mocked)
  with caplog.at_level('INFO'):
    info = preflight.preflight(config)
  assert info.num_classes == classes == len(info.label_names)
  # The mock ignores slices: both halves of 'train' serve all MOCK_EXAMPLES.
  assert info.num_train_examples == info.num_eval_examples == MOCK_EXAMPLES
  assert 'by reading it (tfds.testing.mock_data)' in caplog.text
  labels, batches = eval_labels(config)
  assert len(labels) == MOCK_EXAMPLES  # mask sum: every served example once
  assert batches == pipeline.num_eval_batches(config) == 2
  assert all(0 <= label < classes for label in labels)
  for batch in pipeline.host_train_dataset(config).take(3).as_numpy_iterator():
    assert batch['image'].shape == (16, SIZE, SIZE, 3)
    assert batch['label'].shape == (16, classes)


def test_mock_host_shares_count_what_each_host_reads(mocked):
  config = transfer_config('cifar10', mocked)
  info = preflight.preflight(config, process_count=2)
  # The global stream counts the split once, whatever the hosts: the mock's 20 records.
  assert info.num_eval_examples == MOCK_EXAMPLES
  assert info.stream['mode'] == 'global'
  # ceil(20 / 16) = 2 eval batches on every host; host h reads rows [8h, 8h + 8) of
  # each: host 0 positions 0-7 and 16-19 (12 real), host 1 positions 8-15 (8 real).
  batches = pipeline.num_eval_batches(config, process_count=2)
  hosts = [eval_labels(config, host, 2) for host in range(2)]
  assert [(len(labels), host_batches) for labels, host_batches in hosts] == [
      (12, batches), (8, batches)] and batches == 2
  one_host = eval_labels(config)[0]
  assert len(one_host) == MOCK_EXAMPLES
  assert one_host == hosts[0][0][:8] + hosts[1][0] + hosts[0][0][8:]  # the same records


def test_mock_with_real_metadata_counts_what_it_serves(imagenet2012_data_dir):
  data_dir = imagenet2012_data_dir.data_dir  # real dataset_info.json: 96 / 10 examples
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=data_dir):
    config = imagenet_config(data_dir)
    info = preflight.preflight(config)
    assert (info.num_train_examples, info.num_eval_examples) == (20, 20)
    assert len(eval_labels(config)[0]) == 20
    with pytest.raises(DatasetError, match=r"split 'test' .*is invalid .*available splits "
                       r"and sizes: \{'train': 96, 'validation': 10\}"):
      preflight.preflight(imagenet_config(data_dir, eval_split='test'))
