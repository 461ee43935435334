"""Converts a prepared TFRecord tfds dataset to ArrayRecord, for random access by index.

  python -m vit_jax.data.to_array_record --dataset=NAME [--data_dir=DIR]

Each TFRecord shard of each split gets an ArrayRecord twin under the name tfds expects
(vit_demo-train.tfrecord-00000-of-00001 -> vit_demo-train.array_record-00000-of-00001):
the same serialized tf.train.Example records in the same order, written under a temporary
name and renamed when complete. Then dataset_info.json gets `array_record` in
`alternativeFileFormats` (`fileFormat` stays `tfrecord`, as `tfds convert_format` leaves
it), so as_dataset keeps reading the TFRecord files, which are kept. A dataset that
already has ArrayRecord files is left as it is.

tfds 4.9.10 honours `alternativeFileFormats` only in `tfds.builder_from_directory`, not in
the builder `tfds.builder(name)` makes for a registered dataset (vit_demo, imagenet2012):
`random_access_builder(builder).as_data_source(...)` reads the ArrayRecord files.

Hand-written because tfds's `tfds convert_format` needs apache_beam at import
(scripts/cli/convert_format_utils.py defines a beam.DoFn at module level), which this
project does not depend on.
"""
from __future__ import annotations

import contextlib
import json
import sys
import types
import uuid

from absl import app
from absl import flags
from absl import logging
from array_record.python import array_record_module
import tensorflow as tf
import tensorflow_datasets as tfds

from vit_jax.data import DatasetError
from vit_jax.data import tfds_prepare
from vit_jax import datasets

del datasets  # Imported only to register vit_demo with tfds, so it converts by name.

ARRAY_RECORD = tfds.core.FileFormat.ARRAY_RECORD
# tfds's prefix for incomplete files (utils.is_incomplete_file): a killed run's leftover.
INCOMPLETE_PREFIX = 'incomplete.'
# As tfds's ArrayRecordFileAdapter: a group per record, so a read decodes one record.
WRITER_OPTIONS = 'group_size:1'


def open_prepared(builder_name: str, data_dir: str | None) -> tfds.core.DatasetBuilder:
  """The builder of a prepared dataset, or DatasetError saying how to prepare it."""
  where = data_dir or 'the default tfds data_dir'
  try:
    builder = tfds.builder(builder_name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise DatasetError(f'{builder_name!r} is no registered tfds dataset and is not '
                       f'prepared in {where}; check the name') from None
  if not builder.is_prepared():
    named = types.SimpleNamespace(dataset=builder_name, manual_dir=None)
    raise DatasetError(
        f'{builder_name!r} is not prepared in {where} (no {builder.data_dir}); prepare it '
        'directly as ArrayRecord, which needs no conversion: '
        f'{tfds_prepare.prepare_command(builder, named)}')
  return builder


def has_array_record(info: tfds.core.DatasetInfo) -> bool:
  """Whether ArrayRecord files are stored, as the main or an alternative format."""
  # The proto too: DatasetInfo.read_from_directory restores dataset_info.json's
  # alternatives there only; a code builder's available_file_formats() lacks them.
  stored = {info.as_proto.file_format, *info.as_proto.alternative_file_formats}
  return (ARRAY_RECORD in info.available_file_formats() or ARRAY_RECORD.value in stored)


def random_access_builder(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """A builder whose as_data_source reads the ArrayRecord files of a converted dataset
  (and whose as_dataset the TFRecord files); else `builder` (as_data_source says why)."""
  if tfds_prepare.under_mock() or not has_array_record(builder.info):
    return builder  # (the mock serves as_data_source itself)
  # Made from the directory, it takes every format from dataset_info.json.
  return tfds.builder_from_directory(builder.data_dir)


def array_record_paths(split_info) -> list:
  # tfds's template with the file type swapped: the names as_data_source will open.
  template = split_info.filename_template.replace(
      filetype_suffix=ARRAY_RECORD.file_suffix)
  return template.sharded_filepaths(split_info.num_shards)


@contextlib.contextmanager
def incomplete(path):
  """Yields a temporary name next to `path`, renamed to `path` only on success."""
  tmp = path.parent / f'{INCOMPLETE_PREFIX}{uuid.uuid4().hex}.{path.name}'
  try:
    yield tmp
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)  # after a failure; after success it is gone already.


def convert_shard(src, dst) -> int:
  """Copies the records of TFRecord file `src` into ArrayRecord file `dst`, in order."""
  count = 0
  with incomplete(dst) as tmp:
    writer = array_record_module.ArrayRecordWriter(str(tmp), WRITER_OPTIONS)
    try:
      for record in tf.data.TFRecordDataset(str(src)).as_numpy_iterator():
        writer.write(record)
        count += 1
    finally:
      writer.close()
  return count


def convert_split(split_info) -> int:
  """Converts every shard of one split; the counts must match the split metadata."""
  for src, dst, expected in zip(split_info.filepaths, array_record_paths(split_info),
                                split_info.shard_lengths):
    count = convert_shard(src, dst)
    if count != expected:  # A truncated or replaced file: do not publish it.
      dst.unlink()
      raise DatasetError(f'{src} holds {count} records, but dataset_info.json says '
                         f'{expected}; prepare the dataset again')
    logging.info('wrote %d records to %s', count, dst)
  return split_info.num_examples


def add_array_record_format(data_path) -> None:
  """Adds array_record to alternativeFileFormats of dataset_info.json, atomically."""
  path = data_path / 'dataset_info.json'
  info = json.loads(path.read_text())
  # Explicit where an old dataset lacks it, so as_dataset still reads the TFRecords.
  info.setdefault('fileFormat', tfds.core.FileFormat.TFRECORD.value)
  info['alternativeFileFormats'] = [*info.get('alternativeFileFormats', []),
                                    ARRAY_RECORD.value]
  with incomplete(path) as tmp:
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))


def convert(builder_name: str, data_dir: str | None) -> dict[str, int]:
  """Converts a prepared dataset to ArrayRecord. Returns split -> records converted;
  empty when the dataset already has ArrayRecord files (nothing is done)."""
  builder = open_prepared(builder_name, data_dir)
  if has_array_record(builder.info):
    logging.info('%s in %s is already in ArrayRecord format; nothing to do',
                 builder_name, builder.data_dir)
    return {}
  if builder.info.file_format != tfds.core.FileFormat.TFRECORD:
    raise DatasetError(f'{builder.data_dir} holds {builder.info.file_format.value} '
                       'files; only TFRecord ones are converted')
  counts = {name: convert_split(split_info)
            for name, split_info in builder.info.splits.items()}
  # Last, once every shard is in place: a killed run leaves the metadata unchanged.
  add_array_record_format(builder.data_path)
  return counts


# Own flag set: vit_jax.demo defines a global --data_dir and tests import both modules.
FLAGS = flags.FlagValues()
flags.DEFINE_string('dataset', None, 'tfds name, e.g. imagenet2012 or vit_demo/upstream',
                    flag_values=FLAGS)
flags.DEFINE_string('data_dir', None, 'tfds data_dir (default: tfds default)',
                    flag_values=FLAGS)
flags.mark_flag_as_required('dataset', flag_values=FLAGS)


def parse_flags(argv: list[str]) -> list[str]:
  # absl's global set first (--help, --verbosity; app.run requires it parsed), then ours.
  try:
    return FLAGS(flags.FLAGS(argv, known_only=True))
  except flags.Error as e:
    sys.exit(f'error: {e}; see --help')


def main(argv: list[str]) -> int:
  """Exit status 0: converted, or nothing to do; 2: the dataset cannot be converted."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; give only the flags')
  try:
    counts = convert(FLAGS.dataset, FLAGS.data_dir)
  except DatasetError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if not counts:
    print(f'{FLAGS.dataset} is already in ArrayRecord format; nothing to do')
  for split, count in counts.items():
    print(f'{split}: {count} records converted to ArrayRecord')
  return 0


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
