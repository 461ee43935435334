"""Resuming a run: which checkpoint, whether this config may resume it, and config.json.

A restart tries the complete checkpoints newest first. For each, before any array is
read or anything compiled:
  1. its meta (JSON) and the saved state's tree metadata are read: if either fails, the
     checkpoint is unreadable and the next older one is tried;
  2. the stored config is compared with this one (checkpoints/compat.py) and the stored
     input-stream description with this one's (data/pipeline.py): a difference that makes
     the checkpoint unusable stops the run, naming each field; nothing is moved;
  3. the arrays are restored: if that fails (a truncated or lost array file), the
     checkpoint is unreadable and the next older one is tried.
The first that passes is resumed; the unreadable ones newer than it are moved to
<workdir>/checkpoints_unreadable/ (renamed, never deleted) so that the run can save those
steps again. If none passes, nothing is moved and the run stops naming each checkpoint
and its error.

config.json describes the run that wrote the newest checkpoint: written atomically at a
fresh start, rewritten from the stored config (the source of truth) when a run resumes,
and replaced by the resuming run's config once its first checkpoint is committed.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from vit_jax import sharding
from vit_jax.checkpoints import compat
from vit_jax.checkpoints import errors
from vit_jax.checkpoints import training
from vit_jax.data import pipeline



@dataclasses.dataclass(frozen=True)
class Restored:
  state: Any  # the TrainState, placed as the abstract state's shardings say.
  step: int
  meta: dict  # checkpoints' meta item: data position, cost totals, config, eval_pending.


def config_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json_best_effort())


def restore_newest_readable(manager: ocp.CheckpointManager, workdir: str, *,
                            config: ml_collections.ConfigDict, abstract_state: Any,
                            state_sharding: Any, num_classes: int,
                            stream: dict | None) -> Restored | None:
  """The newest checkpoint that this config may resume and that reads; None when the
  workdir has none (a fresh start: config.json is written for this run)."""
  steps = training.steps_newest_first(manager)
  if not steps:
    write_config(config_json(config), workdir)
    return None
  current = dict(config_json(config), num_classes=num_classes)
  unreadable = []  # (step, what failed)
  for step in steps:
    where = f'{training.checkpoint_dir(workdir)}/{step}'
    try:
      meta = training.restore_meta(manager, step)
      tree = training.state_tree(manager, step)
    except Exception as error:  # pylint: disable=broad-except
      unreadable.append((step, _first_line(error)))
      continue
    changes = check_resumable(meta, tree, current, abstract_state, stream, where,
                              workdir)
    try:
      state, _ = training.restore(
          manager, step, training.abstract_like(abstract_state, state_sharding))
    except Exception as error:  # pylint: disable=broad-except
      unreadable.append((step, _first_line(error)))
      continue
    _move_aside(manager, workdir, unreadable, step)
    log_changes(changes, where)
    write_config(meta['config'], workdir)
    logging.info('Resumed from %s at step %d.', training.checkpoint_dir(workdir), step)
    return Restored(state=state, step=step, meta=meta)
  raise errors.NoReadableCheckpoint(
      f'none of the {len(steps)} complete checkpoints in '
      f'{training.checkpoint_dir(workdir)} can be read: ' +
      '; '.join(f'{step}: {why}' for step, why in unreadable) +
      '. Nothing was moved or deleted. Restore them from a copy, or move them away to '
      'train from scratch in this workdir (or use a new workdir).')


def check_resumable(meta: dict, tree: Any, current: dict, abstract_state: Any,
                    stream: dict | None, where: str, workdir: str) -> compat.Changes:
  """Refuses (IncompatibleCheckpoint, or pipeline's stream error) a checkpoint this run
  cannot continue; returns the differences it accepts."""
  saved = dict(meta.get('config', {}))
  if 'num_classes' in meta:
    saved['num_classes'] = meta['num_classes']
  else:
    current = {k: v for k, v in current.items() if k != 'num_classes'}
  changes = compat.check_config(saved, current, where, workdir)
  if stream is not None:
    saved_stream = meta.get('data', {}).get('stream')
    if saved_stream is None:
      logging.warning('Checkpoint %s has no input-stream description (an older run): '
                      'cannot check that the stream continues.', where)
    pipeline.check_resume(saved_stream, stream, where)
  compat.check_tree(tree, abstract_state, where, workdir)
  return changes


def log_changes(changes: compat.Changes, where: str) -> None:
  if changes.resumable:
    logging.info('Resuming %s with changed %s (accepted: they change no saved state).',
                 where, compat.describe(changes.resumable))
  if changes.other:
    logging.warning('Resuming %s with changed %s: the checkpoint loads as it is; the '
                    'training differs from here on.', where, compat.describe(changes.other))


def _first_line(error: BaseException) -> str:
  """The readable head of an orbax / TensorStore error (their tails dump specs)."""
  text = str(error).split('See full TensorStore details')[0].strip().splitlines()
  return f'{type(error).__name__}: {text[0][:300] if text else ""}'


def _move_aside(manager: ocp.CheckpointManager, workdir: str,
                unreadable: list[tuple[int, str]], resumed: int) -> None:
  """Renames the unreadable checkpoints (all newer than `resumed`) out of the way."""
  if not unreadable:
    return
  for step, why in unreadable:
    if sharding.is_main_process():
      target = training.move_aside(manager, workdir, step)
      logging.warning('Checkpoint %d cannot be read (%s); moved it to %s. Resuming from '
                      'checkpoint %d instead.', step, why, target, resumed)
  multihost_utils.sync_global_devices('vit_jax: unreadable checkpoints moved aside')
  training.reload(manager)


def write_config(config: dict, workdir: str) -> None:
  """<workdir>/config.json := `config`, by process 0, atomically: written to a temporary
  name and renamed, so a reader (predict, analyze) never sees half a file."""
  if not sharding.is_main_process():
    return
  path = epath.Path(workdir) / training.CONFIG_FILE  # epath: local or gs://
  text = json.dumps(config, indent=2)
  if path.exists() and path.read_text() == text:
    return
  temporary = path.parent / f'.{training.CONFIG_FILE}.{os.getpid()}.tmp'
  temporary.write_text(text)
  temporary.replace(path)  # POSIX rename over the old file: atomic on one filesystem.


def record_after_first_save(manager: ocp.CheckpointManager,
                            config: ml_collections.ConfigDict, workdir: str) -> None:
  """After this run's first save: once it is committed (waited for here, on every
  process), config.json describes this run, the writer of the newest checkpoint."""
  training.wait(manager)
  write_config(config_json(config), workdir)
