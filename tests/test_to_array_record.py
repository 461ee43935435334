"""vit_jax.data.to_array_record: TFRecord tfds datasets converted for random access.

Each test prepares its own TFRecord copy of vit_demo/upstream_tiny (96 train / 50 test,
~1 s), since the shared demo_data_dir fixture may be prepared as ArrayRecord.
"""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import DatasetError
from vit_jax.data import to_array_record  # (also registers vit_demo)

NAME = 'vit_demo/upstream_tiny'
SIZES = {'train': 96, 'test': 50}
RAW = tfds.decode.DeserializeMethod.RAW_BYTES
REPO = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def tfrecord_dir(tmp_path) -> str:
  data_dir = str(tmp_path / 'tfds')
  tfds.builder(NAME, data_dir=data_dir, file_format='tfrecord').download_and_prepare()
  return data_dir


def _version_dir(data_dir: str) -> pathlib.Path:
  return pathlib.Path(tfds.builder(NAME, data_dir=data_dir).data_dir)


def _stream_examples(builder, split: str) -> list[tuple[int, bytes]]:
  ds = builder.as_dataset(split=split, shuffle_files=False,
                          decoders={'image': tfds.decode.SkipDecoding()})
  return [(int(ex['label']), bytes(ex['image'])) for ex in tfds.as_numpy(ds)]


def _indexed_examples(builder, split: str) -> list[tuple[int, bytes]]:
  source = builder.as_data_source(split=split, deserialize_method=RAW)
  deserialize, skip = builder.info.features.deserialize_example, tfds.decode.SkipDecoding()
  examples = []
  for i in range(len(source)):
    ex = deserialize(source[i], decoders={'image': skip})
    examples.append((int(ex['label']), bytes(ex['image'].numpy())))
  return examples


def test_before_conversion_there_is_no_random_access(tfrecord_dir):
  builder = tfds.builder(NAME, data_dir=tfrecord_dir)
  assert not to_array_record.has_array_record(builder.info)
  with pytest.raises(NotImplementedError, match='Random access'):
    to_array_record.random_access_builder(builder).as_data_source(
        split='train', deserialize_method=RAW)


def test_records_match_the_tfrecord_stream_index_by_index(tfrecord_dir):
  assert to_array_record.convert(NAME, tfrecord_dir) == SIZES
  files = sorted(p.name for p in _version_dir(tfrecord_dir).iterdir())
  assert files == ['dataset_info.json', 'features.json', 'label.labels.txt',
                   'vit_demo-test.array_record-00000-of-00001',
                   'vit_demo-test.tfrecord-00000-of-00001',
                   'vit_demo-train.array_record-00000-of-00001',
                   'vit_demo-train.tfrecord-00000-of-00001']  # TFRecords kept, no tmp left.
  builder = to_array_record.random_access_builder(tfds.builder(NAME, data_dir=tfrecord_dir))
  stream_builder = tfds.builder(NAME, data_dir=tfrecord_dir)
  for split, size in SIZES.items():
    indexed = _indexed_examples(builder, split)
    streamed = _stream_examples(stream_builder, split)
    assert len(indexed) == len(streamed) == size
    assert indexed == streamed
    assert len({image for _, image in indexed}) == size  # real, distinct images.
  half = builder.as_data_source(split='train[:50%]', deserialize_method=RAW)
  assert len(half) == 48
  assert [half[i] for i in range(48)] == [
      builder.as_data_source(split='train', deserialize_method=RAW)[i] for i in range(48)]


def test_metadata_adds_array_record_as_an_alternative(tfrecord_dir):
  info_path = _version_dir(tfrecord_dir) / 'dataset_info.json'
  before = json.loads(info_path.read_text())
  to_array_record.convert(NAME, tfrecord_dir)
  after = json.loads(info_path.read_text())
  assert after['fileFormat'] == 'tfrecord'
  assert after['alternativeFileFormats'] == ['array_record']
  assert {k: v for k, v in after.items() if k != 'alternativeFileFormats'} == before
  directory_builder = tfds.builder_from_directory(str(_version_dir(tfrecord_dir)))
  assert len(directory_builder.as_data_source(split='test', deserialize_method=RAW)) == 50


def test_as_dataset_still_reads_the_tfrecords(tfrecord_dir):
  before = _stream_examples(tfds.builder(NAME, data_dir=tfrecord_dir), 'test')
  to_array_record.convert(NAME, tfrecord_dir)
  builder = tfds.builder(NAME, data_dir=tfrecord_dir)
  assert builder.info.file_format == tfds.core.FileFormat.TFRECORD
  assert _stream_examples(builder, 'test') == before
  # The random-access builder streams too, through as_dataset, from the TFRecord files.
  random_access = to_array_record.random_access_builder(builder)
  assert _stream_examples(random_access, 'test') == before


def test_code_builder_ignores_alternative_formats_in_tfds_4_9_10(tfrecord_dir):
  """Why random_access_builder exists. When this fails, tfds honours alternatives in
  tfds.builder(...) too, and random_access_builder can return the builder itself."""
  to_array_record.convert(NAME, tfrecord_dir)
  builder = tfds.builder(NAME, data_dir=tfrecord_dir)
  assert to_array_record.has_array_record(builder.info)
  with pytest.raises(NotImplementedError):
    builder.as_data_source(split='train', deserialize_method=RAW)


def test_second_run_is_a_no_op(tfrecord_dir):
  to_array_record.convert(NAME, tfrecord_dir)
  version_dir = _version_dir(tfrecord_dir)
  stamps = {p.name: p.stat().st_mtime_ns for p in version_dir.iterdir()}
  assert to_array_record.convert(NAME, tfrecord_dir) == {}
  assert {p.name: p.stat().st_mtime_ns for p in version_dir.iterdir()} == stamps


def test_dataset_prepared_as_array_record_is_left_alone(tmp_path):
  data_dir = str(tmp_path)
  tfds.builder(NAME, data_dir=data_dir, file_format='array_record').download_and_prepare()
  assert to_array_record.convert(NAME, data_dir) == {}
  assert not list(_version_dir(data_dir).glob('*.tfrecord-*'))


def test_unprepared_dataset_names_the_fix(tmp_path):
  with pytest.raises(DatasetError, match=r"'vit_demo/upstream_tiny' is not prepared in "
                     rf'{tmp_path}.*prepare it directly as ArrayRecord, which needs no '
                     r'conversion: python -c "import tensorflow_datasets'):
    to_array_record.convert(NAME, str(tmp_path))
  with pytest.raises(DatasetError, match='no registered tfds dataset'):
    to_array_record.convert('no_such_dataset_xyz', str(tmp_path))
  assert not list(tmp_path.iterdir())  # nothing written.


def test_shard_not_matching_its_metadata_is_refused(tfrecord_dir):
  version_dir = _version_dir(tfrecord_dir)
  shard = version_dir / 'vit_demo-train.tfrecord-00000-of-00001'
  with tf.io.TFRecordWriter(str(shard)) as writer:  # 3 records where 96 are declared.
    for record in (b'a', b'b', b'c'):
      writer.write(record)
  info_before = (version_dir / 'dataset_info.json').read_text()
  with pytest.raises(DatasetError, match=r'holds 3 records, but dataset_info.json says 96'):
    to_array_record.convert(NAME, tfrecord_dir)
  assert not list(version_dir.glob('*train.array_record*'))
  assert not list(version_dir.glob('incomplete.*'))
  assert (version_dir / 'dataset_info.json').read_text() == info_before


def test_interrupted_shard_leaves_no_file_under_the_final_name(tmp_path):
  final = tmp_path / 'x.array_record-00000-of-00001'
  with pytest.raises(RuntimeError):
    with to_array_record.incomplete(final) as tmp:
      tmp.write_bytes(b'half')
      raise RuntimeError('killed')
  assert not list(tmp_path.iterdir())


def test_command_line(tfrecord_dir):
  # One subprocess (TensorFlow's import alone takes ~8 s); the other exits run main here.
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  run = subprocess.run([sys.executable, '-m', 'vit_jax.data.to_array_record',
                        f'--dataset={NAME}', f'--data_dir={tfrecord_dir}'],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
  assert run.returncode == 0, run.stderr
  assert run.stdout.splitlines() == ['train: 96 records converted to ArrayRecord',
                                     'test: 50 records converted to ArrayRecord']
  assert 'vit_demo-train.array_record-00000-of-00001' in run.stderr  # logged files.


def _main(capsys, *args: str) -> tuple[int, str, str]:
  flag_values = to_array_record.FLAGS
  try:
    argv = flag_values(['to_array_record', *args])
    status = to_array_record.main(argv)
  finally:
    flag_values.unparse_flags()
  out, err = capsys.readouterr()
  return status, out, err


def test_main_exit_status_and_messages(tfrecord_dir, capsys):
  args = (f'--dataset={NAME}', f'--data_dir={tfrecord_dir}')
  assert _main(capsys, *args)[:2] == (
      0, 'train: 96 records converted to ArrayRecord\n'
         'test: 50 records converted to ArrayRecord\n')
  assert _main(capsys, *args)[:2] == (
      0, f'{NAME} is already in ArrayRecord format; nothing to do\n')
  status, out, err = _main(capsys, f'--dataset={NAME}', f'--data_dir={tfrecord_dir}/empty')
  assert (status, out) == (2, '')
  assert err.startswith(f"error: '{NAME}' is not prepared in {tfrecord_dir}/empty")
