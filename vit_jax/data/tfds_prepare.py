"""Preparing tfds datasets that need no download, before a run reads them.

The offline demo dataset is rendered on first use; imagenet2012 is built from the
archives the user downloaded into its manual_dir, exactly as `tfds build imagenet2012
--manual_dir=...` does. A manual_dir that is empty or holds wrongly named archives is
refused in seconds, naming the folder, what it holds, the files expected and the fix.
Under `tfds.testing.mock_data` nothing is prepared (the mock serves examples itself).
"""
from __future__ import annotations

import difflib
import fcntl
import os

from absl import logging
import jax
import tensorflow_datasets as tfds

from vit_jax.data import DatasetError


# Datasets this project prepares (the demo, imagenet2012 from its archives) are written
# in tfds's ArrayRecord format: random access, which the global stream needs
# (data/records.py); TFRecord files can only be read from the start.
FILE_FORMAT = 'array_record'


def under_mock() -> bool:
  # tfds.testing.mock_data replaces DatasetBuilder.download_and_prepare by a no-op defined
  # in its module and serves random examples without files: nothing is, or can be,
  # prepared, so "not prepared" must not stop it (its builders report is_prepared False).
  return (tfds.core.DatasetBuilder.download_and_prepare.__module__ ==
          'tensorflow_datasets.testing.mocking')


def prepare_locked(builder, what: str, how: str, download_config=None) -> None:
  # A file lock keeps several processes on one machine (multi-process tests) from
  # preparing one data_dir at once; the later one finds it prepared.
  os.makedirs(builder.data_dir_root, exist_ok=True)
  lock_path = os.path.join(builder.data_dir_root, f'{builder.name}.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not builder.is_prepared():
      logging.info('preparing %s %s in %s (%s)', what, builder.info.full_name,
                   builder.data_dir_root, how)
      builder.download_and_prepare(download_config=download_config)


def convert_locked(builder, convert) -> None:
  """`convert(name, data_dir)` under the same lock as preparing: one process converts."""
  lock_path = os.path.join(builder.data_dir_root, f'{builder.name}.lock')
  with open(lock_path, 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    logging.info('converting %s in %s to ArrayRecord (random access for the global '
                 'stream; once)', builder.info.full_name, builder.data_dir_root)
    convert(builder.info.full_name.rsplit('/', 1)[0], builder.data_dir_root)


# Files a manual dataset needs in its manual_dir, for the datasets prepared here from it.
# tfds has no API listing them: a builder names them only inside _split_generators and in
# MANUAL_DOWNLOAD_INSTRUCTIONS prose, and the prose is no reliable list across datasets
# (it names optional files, examples, or none). These are the names imagenet2012's
# _split_generators opens (its optional ILSVRC2012_img_test.tar is left out); the ImageNet
# variants that also download label files (imagenet2012_real, _subset) are not here, since
# preparing them needs the network. tests/test_tfds_sources.py checks the names against
# the installed builder's instructions. Other manual datasets get the preparation command.
MANUAL_FILES = {
    'imagenet2012': ('ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'),
}


def _manual_dir(builder, data_config) -> str:
  # tfds's own default when `tfds build` gets no --manual_dir.
  return os.path.expanduser(data_config.manual_dir or
                            os.path.join(builder.data_dir_root, 'downloads', 'manual'))


def prepare_command(builder, data_config) -> str:
  """The one-line preparation command, in the ArrayRecord format the global stream reads.

  Not `tfds build`: tfds 4.9.10's CLI imports its convert_format module, which needs
  apache_beam at import time, so `tfds` fails with ModuleNotFoundError unless beam is
  installed; this calls the same builder through the Python API.
  """
  download = ''
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    download = (', download_config=tfds.download.DownloadConfig(manual_dir='
                f'{_manual_dir(builder, data_config)!r})')
  return (f'python -c "import tensorflow_datasets as tfds; tfds.builder('
          f'{data_config.dataset!r}, data_dir={str(builder.data_dir_root)!r}, file_format='
          f'{FILE_FORMAT!r}).download_and_prepare({download.lstrip(", ")})"')


def prepare_from_manual_dir(builder, data_config) -> None:
  """Prepares a manual dataset in place from the archives in its manual_dir, or raises
  (in seconds, touching nothing) with the path, the files found and expected, and the fix."""
  manual_dir, expected = _manual_dir(builder, data_config), MANUAL_FILES[builder.name]
  found = sorted(os.listdir(manual_dir)) if os.path.isdir(manual_dir) else None
  missing = [f for f in expected if f not in (found or ())]
  if missing:
    raise DatasetError(_manual_files_message(builder, data_config, found, missing))
  if jax.process_count() > 1:  # several hosts preparing one data_dir would race
    raise DatasetError(
        f'tfds dataset {data_config.dataset!r} is not prepared in data_dir '
        f'{builder.data_dir_root}; manual_dir {manual_dir} holds its files, but this run '
        f'has {jax.process_count()} processes, which must not all prepare it. Prepare it '
        f'once, before the run, with: {prepare_command(builder, data_config)}')
  prepare_locked(builder, 'tfds dataset', f'from the archives in manual_dir {manual_dir}, '
                  'as `tfds build` does; no download; the full ImageNet takes hours',
                  tfds.download.DownloadConfig(manual_dir=manual_dir))


def _manual_files_message(builder, data_config, found, missing) -> str:
  manual_dir, expected = _manual_dir(builder, data_config), MANUAL_FILES[builder.name]
  holds = ('does not exist' if found is None else 'is empty' if not found else
           f'holds {found}')
  hints = _rename_hints(manual_dir, found or [], expected, missing)
  return (f'tfds dataset {data_config.dataset!r} is not prepared in data_dir '
          f'{builder.data_dir_root}, and its manual_dir {manual_dir} {holds}, not the '
          f'files the tfds builder reads: {list(expected)} (exact names, uncompressed '
          f'tar; missing: {missing}).{hints} Fix: put them in manual_dir {manual_dir} '
          f'(config.data.manual_dir), as tfds says: '
          f'{" ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())} The next '
          f'single-process run then prepares it there, or run: '
          f'{prepare_command(builder, data_config)}')


def _rename_hints(manual_dir, found, expected, missing) -> str:
  """' Rename X to Y.' (or decompress, or not a folder) for each missing file that has a
  look-alike among the found ones: wrong case, compressed, short or near names."""
  spare, hints = [f for f in found if f not in expected], ''
  stem = lambda f: f.lower().removesuffix('.gz').removesuffix('.tgz')  # noqa: E731
  for name in missing:
    like = ([f for f in spare if stem(f) == name.lower() or stem(f) in name.lower()] or
            difflib.get_close_matches(name, spare, n=1, cutoff=0.6))
    if not like:
      continue
    spare.remove(like[0])
    if os.path.isdir(os.path.join(manual_dir, like[0])):
      hints += f' {like[0]!r} is a folder: tfds reads the archive {name!r} itself.'
    elif like[0].lower().endswith(('.gz', '.tgz')):
      hints += f' {like[0]!r} is compressed: decompress it (gunzip) to {name!r}.'
    else:
      hints += f' Rename {like[0]!r} to {name!r}.'
  return hints


def not_prepared_message(builder, data_config) -> str:
  name, data_dir = data_config.dataset, builder.data_dir_root
  msg = f'tfds dataset {name!r} is not prepared in data_dir {data_dir}. '
  if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    return msg + (
        f'It needs files you download yourself: put them in manual_dir '
        f'{_manual_dir(builder, data_config)} (config.data.manual_dir), as tfds says: '
        f'{" ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())} '
        f'Then run: {prepare_command(builder, data_config)}')
  return msg + (f'Prepare it (downloads it) with: {prepare_command(builder, data_config)} '
                f'or point config.data.data_dir at the folder that holds it.')
