"""The package's layout rules (README "Layout"), checked on the source as text.

Each area of vit_jax/ may import only the areas listed for it, so a reader can tell from
the tree where a decision lives and a lower layer never reaches up. Modules stay under
350 lines and functions under 60; no module outside a model family asks which family a
model is.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'vit_jax'
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 60

ENTRY_POINTS = ('main', 'demo', 'predict', 'analyze', 'benchmark', 'finetune_sweep',
                'plan')
# area -> the areas it may import (besides itself). An area is a folder of vit_jax/ or a
# top-level module; the layers run bottom (cost) to top (the entry points).
ALLOWED = {
    'cost': set(),
    'platform': {'cost'},
    'models': {'cost'},
    'configs': {'models'},
    'run_config': {'models', 'platform'},
    'sharding': set(),
    'optim': set(),
    'steps': {'optim'},
    'datasets': set(),
    'data': {'datasets', 'run_config', 'sharding', 'platform'},
    'checkpoints': {'models', 'run_config', 'cost'},
    'analysis': {'models', 'steps', 'cost'},
    'guards': {'checkpoints'},
    'report': {'build', 'cost', 'sharding'},
    'recipes': {'configs'},
    'resume': {'checkpoints', 'data', 'sharding'},
    'build': {'checkpoints', 'cost', 'data', 'datasets', 'models', 'optim', 'platform',
              'resume', 'run_config', 'sharding', 'steps'},
    'train': {'build', 'checkpoints', 'cost', 'data', 'guards', 'planning', 'report',
              'resume', 'sharding', 'steps'},
    'planning': {'build', 'checkpoints', 'cost', 'run_config', 'sharding'},
    'inference': {'checkpoints', 'cost', 'data', 'models', 'run_config'},
    'sweep': {'checkpoints', 'data', 'resume', 'sharding', 'train'},
    'speed': {'build', 'configs', 'cost', 'models', 'optim', 'platform', 'run_config',
              'sharding', 'steps'},
}
ENTRY_AREAS = set(ALLOWED) | {'configs'}  # an entry point may import any area.


def _modules():
  return sorted(p for p in PACKAGE.rglob('*.py'))


def _area(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE).parts
  return parts[0] if len(parts) > 1 else path.stem


def _type_only(tree: ast.AST) -> set[int]:
  """ids of the import nodes under `if TYPE_CHECKING:` (annotations only: they run no
  code and cannot make an import cycle, so they are exempt)."""
  return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
          and ast.unparse(node.test).endswith('TYPE_CHECKING') for n in ast.walk(node)}


def _imported_areas(tree: ast.AST) -> set[str]:
  """vit_jax areas imported anywhere in the module (top level or inside functions)."""
  areas, type_only = set(), _type_only(tree)
  for node in ast.walk(tree):
    if id(node) in type_only:
      continue
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module + '.' + a.name for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    for name in names:
      parts = name.split('.')
      if parts[0] == 'vit_jax' and len(parts) > 1:
        areas.add(parts[1])
  return areas


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_imports_only_the_layers_below(path):
  area = _area(path)
  if area in ('__init__', '__main__'):
    return
  imported = _imported_areas(ast.parse(path.read_text())) - {area}
  allowed = ENTRY_AREAS | set(ENTRY_POINTS) if area in ENTRY_POINTS else ALLOWED.get(area)
  assert allowed is not None, (
      f'{path}: area {area!r} has no import rule; add it to ALLOWED here and to the '
      'README "Layout" section')
  assert imported <= allowed, (
      f'{path} ({area}) imports {sorted(imported - allowed)}; {area} may import only '
      f'{sorted(allowed)}')


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_and_functions_stay_small(path):
  text = path.read_text()
  assert len(text.splitlines()) <= MAX_MODULE_LINES, f'{path}: split it by job'
  long = [f'{node.name} ({node.end_lineno - node.lineno + 1} lines)'
          for node in ast.walk(ast.parse(text))
          if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
          and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
  assert not long, f'{path}: {long}'


FAMILY_CLASSES = ('VisionTransformer', 'SwinTransformer')


@pytest.mark.parametrize('path', _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_family_dispatch_outside_the_families(path):
  """isinstance(model, <family class>) only inside models/ (the family's own module)."""
  if _area(path) == 'models':
    return
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'isinstance':
      text = ast.unparse(node.args[1])
      assert not any(c in text for c in FAMILY_CLASSES), (
          f'{path}:{node.lineno}: {ast.unparse(node)}; use registry.family(model)')


def test_every_folder_is_a_documented_area():
  readme = (PACKAGE.parent / 'README.md').read_text()
  layout = readme.split('## Layout', 1)[1].split('\n## ', 1)[0]
  folders = sorted(p.name for p in PACKAGE.iterdir()
                   if p.is_dir() and (p / '__init__.py').exists())
  missing = [f for f in folders if f'{f}/' not in layout]
  assert not missing, f'README "Layout" does not describe {missing}'
