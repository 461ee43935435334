"""Every config in configs/ is discovered, documents its command and checks its arguments.

Training each documented command on its real data format is tests/test_recipes.py.
"""
import glob
import importlib
import inspect
import os

import pytest

from vit_jax.configs import common

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
    if os.path.basename(p) not in ('common.py', '__init__.py'))
PUBLISHED = ('finetune.py', 'swin_i1k.py', 'testing.py', 'vit_i1k_augreg.py',
             'vit_i21k.py')
DEMO_PHASES = ('pretrain', 'finetune', 'scratch')


def load(file: str):
  return importlib.import_module(f'vit_jax.configs.{file[:-3]}')


def takes_arg(module) -> bool:
  return bool(inspect.signature(module.get_config).parameters)


def build(file: str, arg: str = ''):
  module = load(file)
  return module.get_config(arg) if takes_arg(module) else module.get_config()


def test_discovers_every_published_config():
  assert set(PUBLISHED) <= set(CONFIG_FILES), CONFIG_FILES


@pytest.mark.parametrize('file', CONFIG_FILES)
def test_config_builds_with_its_defaults(file):
  args = ('phase=pretrain',) if file == 'demo.py' else ('',)
  for arg in args:
    config = build(file, arg)
    assert config.total_steps >= 1 and config.batch_size >= 1


# ----------------------------------------------------------------------------------------
# Docstrings and argument checking (no training).
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('file', CONFIG_FILES)
def test_docstring_has_the_command_line(file):
  doc = load(file).__doc__ or ''
  assert f'python -m vit_jax.main --config=configs/{file}' in doc, (
      f'configs/{file}: the docstring must show the exact command')


def declared_args(file: str, monkeypatch) -> dict:
  """The typed defaults the config passes to common.parse_args (empty if it does not)."""
  declared = {}
  real = common.parse_args

  def spy(arg, **defaults):
    declared.update(defaults)
    return real(arg, **defaults)

  monkeypatch.setattr(common, 'parse_args', spy)
  build(file, 'phase=pretrain' if file == 'demo.py' else '')
  return declared


@pytest.mark.parametrize('file', [f for f in CONFIG_FILES if takes_arg(load(f))])
def test_bad_arguments_are_rejected_naming_the_field(file, monkeypatch):
  declared = declared_args(file, monkeypatch)
  with pytest.raises(ValueError, match='no_such_field'):
    build(file, 'no_such_field=1')
  numeric = [k for k, v in declared.items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)]
  for key in numeric:
    with pytest.raises(ValueError, match=rf'{key}=.38a.*expected (int|float)'):
      build(file, f'{key}=38a')
