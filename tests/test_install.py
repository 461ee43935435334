"""What `pip install` gives: every direct import declared, the recipes shipped.

- setup.py declares the distribution of every third-party module that vit_jax/ and
  configs/ import (module-level imports in install_requires; an import inside a
  function may come from an extra, e.g. torch for `.pth` files), and constraints.txt
  pins each at or above its lower bound.
- The recipes in configs/ are installed as `vit_jax.configs`: `--config=configs/<name>.py`
  (or `<name>`) resolves from any directory, in the editable install the README uses and
  in a wheel; an unknown name lists the shipped recipes. The training run from another
  directory is tests/test_readme.py's (the README's training synopsis, run from a tmp dir).
"""
import ast
import glob
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from vit_jax import recipes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = sorted(glob.glob(os.path.join(REPO, 'vit_jax', '**', '*.py'), recursive=True) +
                 glob.glob(os.path.join(REPO, 'configs', '*.py')))
OWN = {'vit_jax'}  # the package itself (configs/ is imported as vit_jax.configs).


def normalise(name: str) -> str:
  """PEP 503: 'ml_collections' and 'ML-Collections' name one distribution."""
  return re.sub(r'[-_.]+', '-', name).lower()


def requirement_name(spec: str) -> str:
  return normalise(re.match(r'[A-Za-z0-9._-]+', spec).group(0))


def setup_lists() -> tuple[list[str], dict[str, list[str]]]:
  """INSTALL_REQUIRES and EXTRAS_REQUIRE as setup.py spells them (read, not run)."""
  tree = ast.parse(open(os.path.join(REPO, 'setup.py')).read())
  values = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
            if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in ('INSTALL_REQUIRES', 'EXTRAS_REQUIRE')}
  return values['INSTALL_REQUIRES'], values['EXTRAS_REQUIRE']


def third_party_imports() -> list[tuple[str, str, int, bool]]:
  """(top-level module, file, line, at module level) of every non-stdlib import."""
  found = []
  for path in SOURCES:
    tree = ast.parse(open(path).read(), path)
    nested = set()
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        nested.update(id(n) for n in ast.walk(node) if n is not node)
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        modules = [alias.name for alias in node.names]
      elif isinstance(node, ast.ImportFrom) and not node.level:
        modules = [node.module]
      else:
        continue
      for module in modules:
        top = module.split('.')[0]
        if top not in sys.stdlib_module_names and top not in OWN:
          found.append((top, os.path.relpath(path, REPO), node.lineno,
                        id(node) not in nested))
  return found


def test_every_third_party_import_is_declared():
  install, extras = setup_lists()
  required = {requirement_name(r) for r in install}
  optional = {requirement_name(r) for group in extras.values() for r in group}
  distributions = importlib.metadata.packages_distributions()
  missing = []
  for module, path, line, top_level in third_party_imports():
    # Not installed here (an optional extra such as torch): its distribution's name.
    names = {normalise(d) for d in distributions.get(module, [module])}
    allowed = required if top_level else required | optional
    if not names & allowed:
      where = 'install_requires' if top_level else 'install_requires or an extra'
      missing.append(f'{path}:{line} imports {module} (distribution {sorted(names)}), '
                     f'not in setup.py {where}')
  assert not missing, '\n'.join(missing)


def test_etils_declares_the_epath_extra():
  # `from etils import epath` needs the extra's own dependencies (fsspec, zipp, ...).
  install, _ = setup_lists()
  assert any(r.startswith('etils[epath]>=') for r in install), install


def test_constraints_pin_every_requirement_at_or_above_its_bound():
  install, extras = setup_lists()
  pins = {}
  for line in open(os.path.join(REPO, 'constraints.txt')):
    name, _, version = line.strip().partition('==')
    if version:
      pins[normalise(name)] = version
  numbers = lambda v: tuple(int(x) for x in re.findall(r'\d+', v))
  for spec in install + extras['test']:
    name = requirement_name(spec)
    assert name in pins, f'{spec}: add an exact pin to constraints.txt'
    bound = re.search(r'>=\s*([\w.]+)', spec)
    assert bound, f'{spec}: give a lower bound (the version the suite ran with)'
    assert numbers(pins[name]) >= numbers(bound.group(1)), (spec, pins[name])


# ----------------------------------------------------------------------------------------
# The recipes, from any directory.
# ----------------------------------------------------------------------------------------
def child_env() -> dict[str, str]:
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')
  return env


def python(code_or_args, cwd, env=None) -> subprocess.CompletedProcess:
  argv = ['-c', code_or_args] if isinstance(code_or_args, str) else code_or_args
  return subprocess.run([sys.executable, *argv], cwd=cwd, env=env or child_env(),
                        capture_output=True, text=True, timeout=300)


# main's real --config flag, parsed in another directory (no training: flags only).
# config_flags reads the --config.<field> overrides from sys.argv, so it is set too.
PARSE = r'''
import json, sys
from absl import flags
from vit_jax import main, recipes
sys.argv = ['main', f'--config={sys.argv[1]}', '--workdir=w', '--config.total_steps=3']
flags.FLAGS(sys.argv)
config = main._CONFIG.value
print(json.dumps(dict(model=config.model, steps=config.total_steps, fsdp=config.fsdp,
                      directory=recipes.directory())))
'''


def parse(value: str, cwd, env=None) -> dict:
  proc = python(['-c', PARSE, value], cwd=cwd, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout)


@pytest.mark.parametrize('value', ['configs/testing.py', 'configs/testing.py:fsdp',
                                   'testing', 'testing.py'])
def test_main_finds_the_recipes_from_another_directory(value, tmp_path):
  out = parse(value, tmp_path)
  assert (out['model'], out['steps'], out['fsdp']) == ('testing', 3, value.endswith(':fsdp'))
  assert os.path.isfile(os.path.join(out['directory'], 'testing.py'))


def test_an_existing_file_wins_over_the_shipped_recipe(tmp_path):
  (tmp_path / 'configs').mkdir()
  (tmp_path / 'configs' / 'testing.py').write_text(
      'from vit_jax.configs import testing\n\n'
      'def get_config():\n'
      '  config = testing.get_config()\n'
      "  config.model = 'ViT-Ti/16'\n"
      '  return config\n')
  assert parse('configs/testing.py', tmp_path)['model'] == 'ViT-Ti/16'


def test_shipped_recipes_are_the_configs_folder():
  assert recipes.directory() == os.path.join(REPO, 'configs')  # the editable install
  files = {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))}
  assert recipes.names() == sorted(files - {'__init__', 'common'})


@pytest.mark.parametrize('value', ['configs/nope.py', 'nope', 'other/testing.py'])
def test_an_unknown_recipe_lists_the_shipped_ones(value, tmp_path):
  proc = python(['-m', 'vit_jax.main', f'--config={value}', '--workdir=w'], cwd=tmp_path)
  assert proc.returncode != 0
  assert f'--config={value}' in proc.stderr and 'neither a file nor a recipe' in proc.stderr
  for name in recipes.names():
    assert f'configs/{name}.py' in proc.stderr, proc.stderr[-2000:]


def test_demo_starts_from_another_directory(tmp_path):
  # Imports its recipe and parses its flags, then stops at the bad step count: the
  # ~9-minute run itself is tests/test_demo.py's, shrunk.
  proc = python(['-m', 'vit_jax.demo', f'--workdir={tmp_path}/demo', '--pretrain_steps=0'],
                cwd=tmp_path)
  assert proc.returncode == 1
  assert '--pretrain_steps=0: must be >= 1' in proc.stderr, proc.stderr[-2000:]


def test_a_wheel_ships_the_recipes(tmp_path):
  """A non-editable install: the wheel holds vit_jax/configs/*.py, and main resolves
  configs/testing.py to the installed copy."""
  pytest.importorskip('setuptools', reason='building a wheel offline needs setuptools')
  source = tmp_path / 'source'  # a copy: building writes build/ and *.egg-info.
  source.mkdir()
  shutil.copy(os.path.join(REPO, 'setup.py'), source)
  for folder in ('vit_jax', 'configs'):
    shutil.copytree(os.path.join(REPO, folder), source / folder,
                    ignore=shutil.ignore_patterns('__pycache__'))
  proc = python(['-m', 'pip', 'wheel', '--quiet', '--no-deps', '--no-build-isolation',
                 '--no-index', '-w', str(tmp_path / 'dist'), str(source)], cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  [wheel] = glob.glob(str(tmp_path / 'dist' / '*.whl'))
  names = zipfile.ZipFile(wheel).namelist()
  for name in ['__init__', 'common', *recipes.names()]:
    assert f'vit_jax/configs/{name}.py' in names, names
  assert not [n for n in names if n.startswith('configs/')], 'configs/ is vit_jax.configs'
  site = tmp_path / 'site'
  proc = python(['-m', 'pip', 'install', '--quiet', '--no-deps', '--no-index', '--target',
                 str(site), wheel], cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  env = dict(child_env(), PYTHONPATH=str(site))  # the wheel's vit_jax before the checkout
  out = parse('configs/testing.py', tmp_path, env)
  assert out['model'] == 'testing' and out['directory'] == str(site / 'vit_jax' / 'configs')
