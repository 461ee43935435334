"""DIR/sweep.json: what the sweep is (its recipe), what each rate gave, what was chosen.

  {"recipe": {flattened config fields, except those a sweep varies or that do not
              change results (IGNORED)},
   "config": the --config value, "rates": [...], "splits": {"train", "minival", "test"},
   "minival_examples": n,
   "runs": {"0.003": {"workdir": "lr_0.003", "minival_accuracy", "minival_loss",
                      "minival_examples", "steps"}},
   "chosen": {"lr", "minival_accuracy", "test_accuracy", "test_examples"} or null}

The recipe record is what makes a sweep directory this recipe's: a later start with
another recipe (other steps, model, data, ...) is refused before anything runs, and so is
a rate directory whose run has another config.
"""
from __future__ import annotations

import json
import os
from typing import Any

from etils import epath

from vit_jax.checkpoints import compat
from vit_jax.checkpoints import training
from vit_jax.sweep import SweepError

SWEEP_FILE = 'sweep.json'
PLOT_FILE = 'sweep.png'
# Fields that differ between the runs of one sweep, or that change no result.
IGNORED = ('lr', 'lr_grid', 'data.eval_split', 'data.data_dir', 'data.manual_dir', 'debug',
           'init_image_size')


def without(flat: dict[str, Any], fields) -> dict[str, Any]:
  """`flat` minus `fields` and everything under them ('debug' drops 'debug.x')."""
  return {k: v for k, v in flat.items()
          if not any(k == f or k.startswith(f + '.') for f in fields)}


def recipe(config_json: dict) -> dict[str, Any]:
  """The flattened config minus IGNORED: equal for every run of one sweep."""
  return without(compat.flatten(config_json), IGNORED)


def differences(old: dict, new: dict, limit: int = 6) -> str:
  fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
  shown = [f'{k}: {old.get(k)!r} -> {new.get(k)!r}' for k in fields[:limit]]
  more = len(fields) - limit
  return '; '.join(shown) + (f'; and {more} more' if more > 0 else '')


def load(workdir: str) -> dict | None:
  path = epath.Path(workdir) / SWEEP_FILE
  return json.loads(path.read_text()) if path.exists() else None


def save(record: dict, workdir: str) -> None:
  """Atomically (temporary name + rename), so a kill never leaves half a file."""
  path = epath.Path(workdir) / SWEEP_FILE
  temporary = path.parent / f'.{SWEEP_FILE}.{os.getpid()}.tmp'
  temporary.write_text(json.dumps(record, indent=2))
  temporary.replace(path)


def check_recipe(saved: dict | None, current: dict, workdir: str) -> None:
  """Refuses a sweep directory that an earlier start filled with another recipe."""
  if saved is None or saved['recipe'] == current:
    return
  raise SweepError(
      f'{workdir} holds a sweep of another recipe ({differences(saved["recipe"], current)}); '
      f'its runs are untouched. Sweep this recipe in a new --workdir, or run the '
      f'recipe it holds (--config={saved["config"]} with the same overrides)')


def check_run(run_dir: str, expected: dict) -> None:
  """Refuses a rate's directory whose run has another config than this sweep's run."""
  path = epath.Path(run_dir) / training.CONFIG_FILE
  if not path.exists():
    return
  stored = compat.flatten(json.loads(path.read_text()))
  keep = [f for f in IGNORED if f not in ('lr', 'data.eval_split')]
  old, new = without(stored, keep), without(expected, keep)
  if old != new:
    raise SweepError(
        f'{run_dir} holds a run of another recipe ({differences(old, new)}); it is '
        'untouched. Sweep in a new --workdir, or move that run elsewhere')
