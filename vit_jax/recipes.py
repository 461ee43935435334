"""Where `--config` points: a file, or a recipe installed with the package.

The rule: a `--config` path that is an existing file is loaded as it is (your own
recipe, or `configs/testing.py` run from the repository root); any other
`configs/<name>.py`, `<name>.py` or `<name>` is the recipe `<name>` installed with the
package (the repository's `configs/` folder, which setup.py installs as
`vit_jax.configs`), so the documented commands run from any directory. What follows the
first ':' is passed to the recipe's `get_config` unchanged, as ml_collections does.
"""
from __future__ import annotations

import os

from absl import flags
from ml_collections import config_flags

from vit_jax import configs

# The --config flag defined here belongs to the entry point that calls
# define_config_flag (its --helpshort lists it), not to this helper.
flags.disclaim_key_flags()

# Shared defaults, not runnable by themselves (and the package's own __init__).
_NOT_RECIPES = ('__init__', 'common')


def directory() -> str:
  """The folder the recipes were installed in (configs/ itself in an editable install)."""
  return os.path.dirname(os.path.abspath(configs.__file__))


def names() -> list[str]:
  """The shipped recipes, e.g. ['demo', 'finetune', ..., 'testing', ...]."""
  return sorted(f[:-3] for f in os.listdir(directory())
                if f.endswith('.py') and f[:-3] not in _NOT_RECIPES)


def resolve(value: str) -> str:
  """`value` ('file[:args]') with `file` replaced by the installed recipe if it is one.

  Raises ValueError naming the shipped recipes when `file` is neither an existing file
  nor a recipe name.
  """
  file, colon, args = value.partition(':')
  if os.path.isfile(file):
    return value
  folder, base = os.path.split(os.path.normpath(file)) if file else ('', '')
  name = base[:-3] if base.endswith('.py') else base
  shipped = names()
  if folder in ('', 'configs') and name in shipped:
    return os.path.join(directory(), f'{name}.py') + colon + args
  listed = ', '.join(f'configs/{n}.py' for n in shipped)
  raise ValueError(
      f'{file!r} is neither a file nor a recipe shipped with vit_jax; the shipped '
      f'recipes are {listed} (give one as configs/<name>.py or <name>, from any '
      'directory, or the path of your own config file)')


class _ResolvingParser(flags.ArgumentParser):
  """config_flags' file parser, fed the resolved path (the flag keeps the user's value)."""

  def __init__(self, file_parser: flags.ArgumentParser):
    self._file_parser = file_parser

  def parse(self, argument):
    return self._file_parser.parse(resolve(argument))

  def flag_type(self) -> str:
    return self._file_parser.flag_type()


def define_config_flag(name: str, help_string: str) -> flags.FlagHolder:
  """`config_flags.DEFINE_config_file(name)` (locked, `--<name>.<field>=` overrides)
  whose value is resolved by `resolve`."""
  holder = config_flags.DEFINE_config_file(name, None, help_string, lock_config=True)
  flag = flags.FLAGS[name]
  flag.parser = _ResolvingParser(flag.parser)
  return holder
