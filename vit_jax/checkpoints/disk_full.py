"""A checkpoint save that runs out of space, turned into a message the user can act on.

Orbax writes asynchronously: a full disk or quota surfaces at the next save or wait, as an
OSError (its JSON and rename threads) or as TensorStore's RESOURCE_EXHAUSTED error
("... No space left on device [os_error_code='28']"). Either way the step directory is
still `<step>.orbax-checkpoint-tmp`: never listed as complete, removed at the next start,
and the previous complete checkpoint is untouched (measured: tests/test_faults.py).
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
from typing import Iterator

import orbax.checkpoint as ocp

from vit_jax.checkpoints import errors


def is_disk_full(error: BaseException | None) -> bool:
  """ENOSPC / EDQUOT anywhere in the exception chain."""
  while error is not None:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    text = str(error)
    if ('No space left on device' in text or 'Disk quota exceeded' in text
        or f"os_error_code='{errno.ENOSPC}'" in text):
      return True
    error = error.__cause__ or error.__context__
  return False


@contextlib.contextmanager
def as_error(manager: ocp.CheckpointManager) -> Iterator[None]:
  """An out-of-space failure inside becomes DiskFull (other errors pass unchanged)."""
  try:
    yield
  except Exception as error:  # pylint: disable=broad-except
    if not is_disk_full(error):
      raise
    raise errors.DiskFull(message(str(manager.directory), manager.latest_step())) from error


def message(directory: str, last_complete: int | None) -> str:
  """Where, how much is free and how much a checkpoint takes, what survived, the fix."""
  size = (directory_bytes(os.path.join(directory, str(last_complete)))
          if last_complete is not None else 0)
  free = shutil.disk_usage(directory).free if '://' not in directory else None
  numbers = [f'{free:,} bytes free' if free is not None else '',
             f'a checkpoint needs about {size:,} bytes (checkpoint {last_complete} on '
             'disk)' if size else '']
  numbers = ', '.join(n for n in numbers if n)
  kept = (f'Checkpoint {last_complete} is complete and the next start resumes from it'
          if last_complete is not None else 'No checkpoint was completed yet')
  return (f'a checkpoint save in {directory} ran out of disk space'
          f'{f" ({numbers})" if numbers else ""}. {kept}; the partly written one is '
          'removed then. Free space there (or lower config.keep_checkpoints, or move the '
          'workdir to a bigger disk), then re-run the same command.')


def directory_bytes(path: str) -> int:
  """Bytes of the files under a local directory (0 for URLs, which are not walked)."""
  if '://' in path:
    return 0
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)
