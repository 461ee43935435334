"""Whether a checkpoint can be resumed by a config, decided before any array is read.

Three kinds of difference between the config stored in a checkpoint (its `meta`) and the
config of the run that resumes it:

  resumable  scheduling and bookkeeping (RESUMABLE): accepted and logged;
  unusable   what the saved state's shapes or meaning depend on (UNUSABLE): refused, with
             each field old -> new and the two ways on (a new workdir, or fine-tuning from
             this one with config.init);
  other      everything else (learning rate, augmentation, ...): the checkpoint loads, the
             training changes from here on; logged as a warning.

A second check compares the saved state's tree (orbax's metadata: paths, shapes, dtypes)
with the state this config builds, so a change no field list foresaw (say a
model_overrides field that adds a parameter) is refused naming the parameters, instead of
orbax's strict-shape error (which names none and suggests strict=False: silent padding).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax

from vit_jax import run_config
from vit_jax.checkpoints import errors

RESUMABLE = ('total_steps', 'log_every_steps', 'eval_every_steps',
             'checkpoint_every_steps', 'keep_checkpoints', 'data.data_dir', 'debug',
             'init', 'init_image_size', 'memory_limit_gib')  # init: only read by a fresh start.
# model_overrides is not here: dropout or remat may change on resume; a field that changes
# the parameters is caught by the tree check.
UNUSABLE = ('model', 'image_size', 'num_classes', 'optimizer', 'param_dtype',
            'momentum_dtype', 'ema_decay')


@dataclasses.dataclass(frozen=True)
class Changes:
  """(field, old, new) triples, dotted field names, by kind."""
  resumable: tuple[tuple[str, Any, Any], ...] = ()
  unusable: tuple[tuple[str, Any, Any], ...] = ()
  other: tuple[tuple[str, Any, Any], ...] = ()


def flatten(config: dict, prefix: str = '') -> dict[str, Any]:
  """{'data': {'data_dir': x}} -> {'data.data_dir': x}."""
  flat = {}
  for key, value in config.items():
    if isinstance(value, dict) and value:
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def _kind(field: str, old: Any, new: Any) -> str:
  def under(names):
    return any(field == n or field.startswith(n + '.') for n in names)
  if field == 'image_size':  # 224 and '224x224' are the same size.
    return 'other' if run_config.optional_size(old) == run_config.optional_size(new) else (
        'unusable')
  if field == 'ema_decay':  # 0 <-> non-zero adds or drops the EMA copy in the state.
    return 'unusable' if bool(old) != bool(new) else 'other'
  if under(RESUMABLE):
    return 'resumable'
  return 'unusable' if under(UNUSABLE) else 'other'


def compare(saved: dict, current: dict) -> Changes:
  """The differences of two JSON configs (plus 'num_classes' where both have it)."""
  old, new = flatten(saved), flatten(current)
  kinds = {'resumable': [], 'unusable': [], 'other': []}
  for field in sorted(set(old) | set(new)):
    if old.get(field) != new.get(field):
      kinds[_kind(field, old.get(field), new.get(field))].append(
          (field, old.get(field), new.get(field)))
  return Changes(**{k: tuple(v) for k, v in kinds.items()})


def describe(changes) -> str:
  return ', '.join(f'{field} {json.dumps(old)} -> {json.dumps(new)}'
                   for field, old, new in changes)


def _refusal(what: str, where: str, workdir: str) -> str:
  return (f'{where} cannot be resumed by this config: {what}. Its checkpoints are '
          f'untouched. Either train in a new workdir, or fine-tune from this run with '
          f'--config.init={workdir} (the new head and image size are fitted from it).')


def check_config(saved: dict, current: dict, where: str, workdir: str) -> Changes:
  """The Changes, or IncompatibleCheckpoint naming each unusable field old -> new."""
  changes = compare(saved, current)
  if changes.unusable:
    raise errors.IncompatibleCheckpoint(_refusal(
        f'changed {describe(changes.unusable)}', where, workdir))
  return changes


def _leaves(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """'params/head/kernel' -> (shape, dtype name): the same keys for an abstract
  TrainState (attributes, namedtuples, tuples) and orbax's metadata (dicts, lists)."""
  def name(key):
    for attr in ('name', 'key', 'idx'):
      if hasattr(key, attr):
        return str(getattr(key, attr))
    return str(key)
  return {'/'.join(name(k) for k in path): (tuple(leaf.shape), str(leaf.dtype))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def check_tree(saved_tree: Any, abstract_state: Any, where: str, workdir: str) -> None:
  """IncompatibleCheckpoint naming the parameters whose presence, shape or dtype
  differ between the saved state and the one this config builds (first 6 of each)."""
  saved, built = _leaves(saved_tree), _leaves(abstract_state)
  problems = []
  for label, names in (('only in the checkpoint', sorted(set(saved) - set(built))),
                       ('not in the checkpoint', sorted(set(built) - set(saved)))):
    if names:
      problems.append(f'{len(names)} arrays {label} ({", ".join(names[:6])})')
  differ = [f'{n} {saved[n][0]}/{saved[n][1]} -> {built[n][0]}/{built[n][1]}'
            for n in sorted(set(saved) & set(built)) if saved[n] != built[n]]
  if differ:
    problems.append(f'{len(differ)} arrays changed shape or dtype ({"; ".join(differ[:6])})')
  if problems:
    raise errors.IncompatibleCheckpoint(_refusal('; '.join(problems), where, workdir))
