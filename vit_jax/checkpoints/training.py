"""Training checkpoints in `<workdir>/checkpoints/<step>/` with orbax's CheckpointManager.

Each checkpoint has two items:
  state  the TrainState (params, optimiser state, EMA params, step, RNG key), sharded
         arrays written by every process (orbax requires all processes to take part);
  meta   JSON written by process 0: input-pipeline position, cost accumulators, config
         (the source of truth for what wrote the checkpoint), number of classes, and
         whether the evaluation due at that step is still owed.

Orbax writes into a temporary directory and renames it when complete, so a process killed
mid-write leaves no directory that `latest_step` would pick; saves run asynchronously
(the train loop continues while the arrays are written) and `wait` blocks until the last
save is committed. A complete checkpoint can still be unreadable (a truncated or lost
file): resume.py then walks back, using `steps_newest_first`, `state_tree` and
`move_aside` from here. A reader of our own run directories only (published files are
published.py's); fit.py builds on it, never the other way round.
"""
from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from vit_jax import run_config
from vit_jax.checkpoints import disk_full

CHECKPOINT_SUBDIR = 'checkpoints'
UNREADABLE_SUBDIR = 'checkpoints_unreadable'  # where restore moves what it cannot read.
CONFIG_FILE = 'config.json'  # the run's config for people, predict, analyze (resume.py).


def checkpoint_dir(workdir: str) -> str:
  """<workdir>/checkpoints. Local paths are made absolute (orbax wants them so); URLs
  such as gs://bucket/run (multi-host TPU workdirs) are kept as they are."""
  base = workdir if '://' in workdir else os.path.abspath(workdir)
  return os.path.join(base, CHECKPOINT_SUBDIR)


def create_manager(workdir: str, keep: int) -> ocp.CheckpointManager:
  """Manager keeping the `keep` most recent checkpoints; saves are asynchronous."""
  if keep < 1:
    raise ValueError(f'keep_checkpoints={keep} must be >= 1: the last checkpoint is what '
                     'a restart resumes from')
  _save_replicas_whole_on_cpu()
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=True,
      # Leftovers of a save that was killed mid-write are removed at start-up.
      cleanup_tmp_directories=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                               item_names=('state', 'meta'))


def _save_replicas_whole_on_cpu() -> None:
  """On CPU, orbax's default replica-parallel save cuts every replicated array into one
  slice per device with a small jit(slice) each: 88 compiles, ~6.7 s of the first save of
  configs/testing.py on 8 CPU devices (measured, 2-core AVX2). The slices only pay where
  devices write in parallel (TPU, GPU hosts); on CPU one host thread writes them anyway,
  so each array is written whole. Same files, same restore."""
  if jax.devices()[0].platform == 'cpu':
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False),
        override=True)


def save(manager: ocp.CheckpointManager, step: int, state: Any, meta: dict) -> None:
  """Starts writing checkpoint `step` (returns before the arrays are on disk). A failure
  of the previous save surfaces here, as DiskFull when it ran out of space."""
  with disk_full.as_error(manager):
    manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
  """The newest complete checkpoint (partially written ones are never listed)."""
  return manager.latest_step()


def steps_newest_first(manager: ocp.CheckpointManager) -> list[int]:
  """Every complete checkpoint's step, newest first: the order a resume tries them."""
  return sorted(manager.all_steps(), reverse=True)


def state_tree(manager: ocp.CheckpointManager, step: int) -> Any:
  """Orbax's metadata of the saved TrainState (nested dicts / lists of ArrayMetadata
  with shape and dtype): read from its small _METADATA file, no array touched."""
  path = os.path.join(str(manager.directory), str(step), 'state')
  with ocp.PyTreeCheckpointer() as checkpointer:
    return checkpointer.metadata(path).item_metadata.tree


def move_aside(manager: ocp.CheckpointManager, workdir: str, step: int) -> str:
  """Renames checkpoint `step` to <workdir>/checkpoints_unreadable/<step>[.<n>] (never
  deleted: it may be recoverable by hand) and makes the manager forget it. Call on
  process 0; the caller syncs the others."""
  aside = epath.Path(checkpoint_dir(workdir)).parent / UNREADABLE_SUBDIR
  aside.mkdir(parents=True, exist_ok=True)
  target, n = aside / str(step), 0
  while target.exists():
    n += 1
    target = aside / f'{step}.{n}'
  (epath.Path(str(manager.directory)) / str(step)).rename(target)
  return os.fspath(target)


def reload(manager: ocp.CheckpointManager) -> None:
  """Re-reads the checkpoint list (after one was moved aside, on every process)."""
  manager.reload()


def abstract_like(state: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the shardings the restored arrays should have."""
  return jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)


def restore(manager: ocp.CheckpointManager, step: int, abstract_state: Any) -> tuple[Any, dict]:
  """(state, meta) of checkpoint `step`, arrays placed as `abstract_state` says."""
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
  return restored['state'], restored['meta']


def restore_meta(manager: ocp.CheckpointManager, step: int) -> dict:
  """The JSON `meta` item of checkpoint `step` alone (no arrays read): what a resume
  checks before restoring or compiling anything."""
  restored = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  return restored['meta']


def wait(manager: ocp.CheckpointManager) -> None:
  """Blocks until every started save is committed to disk (DiskFull if one ran out of
  space)."""
  with disk_full.as_error(manager):
    manager.wait_until_finished()


def _read_only_manager(workdir: str) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(checkpoint_dir(workdir), item_names=('state', 'meta'),
                               options=ocp.CheckpointManagerOptions(read_only=True))


def _complete_step(manager: ocp.CheckpointManager, workdir: str, step: int | None) -> int:
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f'no complete checkpoint in {checkpoint_dir(workdir)}')
  return step


def read_arrays(workdir: str, step: int | None = None, item: str = 'params') -> Any:
  """One item of a saved TrainState ('params', 'ema_params', ...) as numpy arrays.

  Works whatever topology wrote it (any number of devices or processes): arrays are
  restored onto this process's first device. For tests, analysis and fine-tuning from a
  pretraining run. `step=None` reads the latest complete checkpoint.
  """
  step = _complete_step(_read_only_manager(workdir), workdir, step)
  path = os.path.join(checkpoint_dir(workdir), str(step), 'state')
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.PyTreeCheckpointer() as checkpointer:
    tree = checkpointer.metadata(path).item_metadata.tree[item]
    target = jax.tree.map(lambda m: np.zeros((), m.dtype), tree)
    restore_args = jax.tree.map(
        lambda m: ocp.ArrayRestoreArgs(sharding=device, global_shape=m.shape,
                                       dtype=m.dtype), tree)
    restored = checkpointer.restore(path, args=ocp.args.PyTreeRestore(
        item={item: target}, restore_args={item: restore_args}, partial_restore=True))
  return jax.tree.map(np.asarray, restored[item])


def stored_config(workdir: str) -> dict | None:
  """The config stored with the newest complete checkpoint (the source of truth for
  what trained it), or None when the run has none yet."""
  manager = _read_only_manager(workdir)
  step = manager.latest_step()
  if step is None:
    return None
  return restore_meta(manager, step)['config']


def read_params_for_finetune(workdir: str) -> tuple[Any, tuple[int, int], dict]:
  """(params, (H, W) they were trained at, the config that trained them) of a run's
  latest checkpoint, for `fit.load_pretrained`.

  The image size comes from the config stored with the checkpoint, so the
  position-embedding grid is known, never guessed from the number of tokens; the
  config gives the model it was trained as (Swin V2: its windows).
  """
  manager = _read_only_manager(workdir)
  step = _complete_step(manager, workdir, None)
  config = restore_meta(manager, step)['config']
  return read_arrays(workdir, step), run_config.parse_size(config['image_size']), config
