"""Every documented recipe command runs on the data format its users bring.

Each command in a config's docstring is a case here (a test fails if one is missing):
the config is built from the documented argument string, with its placeholders
(`/data/...` folders, `ViT-B_16.npz`, `/runs/...` run directories) pointed at files the
tests write in the same format, and shrunk by size overrides only: the tiny model of
its family, a tiny resolution, batch, one update, one evaluation, one checkpoint. The
dataset, splits, labels, loss and the rest of the recipe stay as documented. Data:

  imagenet2012     tfds's real builder, prepared from official-layout archives
                   (tests/imagenet_archives.py) in its manual directory
  cifar10, ...     the real tfds builders under tfds.testing.mock_data (offline)
  /data/imagenet21k     root/<wnid>/*.JPEG (the full release, one tree)
  /data/imagenet21k_p   root/{train,val}/<wnid>/*.JPEG (ImageNet-21K-P)
  /data/my_images       root/{train,test}/<class>/*.jpg (own images)
  vit_demo/...     the project's offline demo builder

The last test is the paper's protocol end to end on those formats: pretraining on an
ImageNet-21k tree, fine-tuning at a higher resolution on imagenet2012, then predict and
analyze on the fine-tuned run.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import dataclasses
import glob
import importlib
import inspect
import json
import math
import os
import re

import jax
import ml_collections
import numpy as np
import pytest
import tensorflow_datasets as tfds

from tests import image_folders
from tests import tiny_checkpoints
from vit_jax import analyze
from vit_jax.checkpoints import published
from vit_jax.checkpoints import fit
from vit_jax.cost import flops
from vit_jax.data import preflight
from vit_jax import models
from vit_jax import predict
from vit_jax import run_config
from vit_jax import train
from vit_jax.checkpoints import training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCKED = ('cifar10', 'cifar100', 'oxford_iiit_pet', 'oxford_flowers102')
MOCK_EXAMPLES = 12  # per split: one padded eval batch of 16.
FOLDERS = {'/data/imagenet21k': 'one_tree', '/data/imagenet21k_p': 'split_folders',
           '/data/my_images': 'own_images'}
TINY_HIDDEN_SIZE = 32  # width of 'testing' and 'R+ViT-testing'.
# What the tests may change of a documented config: sizes, where the data lies, cadence.
SIZE_FIELDS = frozenset({
    'model', 'image_size', 'batch_size', 'eval_batch_size', 'total_steps', 'warmup_steps',
    'log_every_steps', 'eval_every_steps', 'checkpoint_every_steps', 'data.data_dir',
    'data.shuffle_buffer', 'data.dataset',  # data.dataset: only vit_demo/x -> x_tiny.
    'model_overrides.representation_size'})
SIZE_OVERRIDES = frozenset({'window_size', 'patch_size', 'hidden_size', 'num_layers',
                            'num_heads', 'mlp_dim', 'embed_dim', 'depths', 'image_size',
                            'resnet', 'pretrained_window_sizes'})
SIZE_FIELDS |= {f'model_overrides.{k}' for k in SIZE_OVERRIDES}


@dataclasses.dataclass(frozen=True)
class Case:
  file: str  # configs/<file>
  arg: str  # the argument string exactly as the docstring's command has it

  @property
  def id(self) -> str:
    return f'{self.file}:{self.arg}' if self.arg else self.file


def documented_commands() -> list[Case]:
  """Every `python -m vit_jax.main --config=configs/F[:ARG]` in the configs' docstrings."""
  cases = []
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    doc = importlib.import_module(f'vit_jax.configs.{os.path.basename(path)[:-3]}').__doc__ or ''
    for file, arg in re.findall(r'python -m vit_jax\.main --config=configs/(\w+\.py):?(\S*)',
                                doc):
      cases.append(Case(file, arg))
  return list(dict.fromkeys(cases))


# Documented commands another test runs through its real entry point instead: the demo's
# phases are what `python -m vit_jax.demo` runs (vit_jax.demo.phase_config builds each
# from configs/demo.py:phase=...), and tests/test_demo.py runs that command's phases
# end to end on the same tfds builder; training them here again would only repeat it.
RUN_BY = {'demo.py': 'tests/test_demo.py'}
CASES = [c for c in documented_commands() if c.file not in RUN_BY]
# Run directories that `/runs/<name>` placeholders stand for: the case that writes them.
RUNS = {'/runs/vit_b16_i21k': Case('vit_i21k.py', 'model=ViT-B/16,dataset=/data/imagenet21k'),
        '/runs/swin_t_i1k': Case('swin_i1k.py', 'model=Swin-T')}


# ----------------------------------------------------------------------------------------
# Data in the users' formats.
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def folders(tmp_path_factory) -> dict[str, str]:
  """The `/data/...` placeholders -> folders written in that layout."""
  roots = {}
  for placeholder, kind in FOLDERS.items():
    root = str(tmp_path_factory.mktemp(kind))
    if kind == 'one_tree':
      image_folders.write_one_tree(root, classes=6, per_class=10)
    elif kind == 'split_folders':
      image_folders.write_split_folders(root, classes=6, per_class={'train': 8, 'val': 2})
    else:
      image_folders.write_split_folders(root, classes=3, per_class={'train': 6, 'test': 3})
    roots[placeholder] = root
  return roots


@pytest.fixture(scope='module')
def published_swinv2(tmp_path_factory) -> str:
  """The tiny Swin V2 as timm's .safetensors (the official .pth needs torch to read;
  both go through the same state-dict converter)."""
  from tests import test_swin_v2  # pylint: disable=g-import-not-at-top
  from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
  path = str(tmp_path_factory.mktemp('published') / 'swinv2-testing.safetensors')
  official = test_swin_v2.official_state_dict(16, (2, 2), (1, 2))
  safetensors_numpy.save_file(test_swin_v2.timm_state_dict(official), path)
  return path


@pytest.fixture(scope='module')
def published_npz(tmp_path_factory) -> str:
  """A published-format .npz of the tiny ViT (i21k style: pre_logits, 16 px, cls)."""
  model = models.create('testing', num_classes=21, representation_size=TINY_HIDDEN_SIZE,
                        image_size=16)
  path = str(tmp_path_factory.mktemp('published') / 'ViT-testing.npz')
  flat = published.flatten(tiny_checkpoints.random_params(model))
  np.savez(path, **{k: np.asarray(v) for k, v in flat.items()})
  return path


def dataset_of(case: Case) -> str:
  config = build(case, {})
  return config.data.dataset


def build(case: Case, replacements: dict[str, str]) -> ml_collections.ConfigDict:
  arg = case.arg
  for placeholder, real in replacements.items():
    arg = re.sub(rf'(?<==){re.escape(placeholder)}(?=,|$)', real, arg)
  module = importlib.import_module(f'vit_jax.configs.{case.file[:-3]}')
  return module.get_config(arg) if arg or _takes_arg(module) else module.get_config()


def _takes_arg(module) -> bool:
  return bool(inspect.signature(module.get_config).parameters)


# ----------------------------------------------------------------------------------------
# Size overrides only.
# ----------------------------------------------------------------------------------------
def tiny_model(name: str) -> str:
  if name.startswith('SwinV2'):
    return 'SwinV2-testing'
  if name.startswith('Swin'):
    return 'Swin-testing'
  return 'R+ViT-testing' if '+ViT' in name else 'testing'


def tiny_image_size(model: str, image_size) -> int:
  if model in ('Swin-testing', 'SwinV2-testing'):
    return 32  # 8x8 patches: 2x2 shifted 4x4 windows, merged to one 4x4 window.
  side = max(run_config.parse_size(image_size))
  if side <= 32:
    return side  # already tiny (testing, demo): as published.
  return 24 if side > 224 else 16  # keep "fine-tune above the pretraining resolution".


def tiny_overrides(overrides) -> dict:
  out = {k: v for k, v in overrides.items() if k not in SIZE_OVERRIDES}
  if out.get('representation_size') is not None:
    out['representation_size'] = TINY_HIDDEN_SIZE  # pre_logits of the hidden size.
  return out


def shrink(config, data_dir: str) -> ml_collections.ConfigDict:
  tiny = copy.deepcopy(config)
  tiny.model = tiny_model(config.model)
  tiny.model_overrides = ml_collections.ConfigDict(tiny_overrides(config.model_overrides))
  tiny.image_size = tiny_image_size(tiny.model, config.image_size)
  tiny.data.data_dir = data_dir
  if tiny.data.dataset.startswith('vit_demo/') and not tiny.data.dataset.endswith('_tiny'):
    # The same builder at its tiny size.
    tiny.data.dataset = tiny.data.dataset + '_tiny'
  tiny.data.shuffle_buffer = 64
  tiny.batch_size = 8 * config.accum_steps  # 1 image per device per micro-batch.
  tiny.eval_batch_size = 16
  tiny.total_steps = 1
  tiny.warmup_steps = 0  # must be < total_steps.
  tiny.log_every_steps = tiny.eval_every_steps = tiny.checkpoint_every_steps = 1
  return tiny


# ----------------------------------------------------------------------------------------
# Running each case once.
# ----------------------------------------------------------------------------------------
Result = collections.namedtuple('Result', 'documented ran workdir summary')


@pytest.fixture(scope='module', autouse=True)
def cheap_compiles():
  """XLA's low-effort mode: one tiny step needs a program, not a fast one, and compiling
  is most of each case. The flag is not part of JAX's cache key, so the caches are
  cleared afterwards: no later test runs a program compiled this way."""
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
  jax.clear_caches()


def mocked(dataset: str):
  if dataset.split('/')[0].split(':')[0] in MOCKED:
    return tfds.testing.mock_data(num_examples=MOCK_EXAMPLES)
  return contextlib.nullcontext()


@pytest.fixture(scope='module')
def run_case(tmp_path_factory, folders, published_npz, published_swinv2, demo_data_dir,
             imagenet2012_data_dir):
  """run_case(case) -> Result; each case trains once per module."""
  results = {}

  def data_dir_for(dataset: str) -> str | None:
    if dataset == 'imagenet2012':
      return imagenet2012_data_dir.data_dir
    return demo_data_dir if dataset.startswith('vit_demo') else None

  def run(case: Case) -> Result:
    if case not in results:
      replacements = dict(folders, **{
          'ViT-B_16.npz': published_npz,
          'swinv2_large_patch4_window12_192_22k.pth': published_swinv2})
      for placeholder, source in RUNS.items():
        if f'={placeholder}' in case.arg:
          replacements[placeholder] = run(source).workdir
      documented = build(case, replacements)
      ran = shrink(documented, data_dir_for(documented.data.dataset))
      workdir = str(tmp_path_factory.mktemp(case.file[:-3]))
      with mocked(documented.data.dataset):
        summary = train.train_and_evaluate(ran, workdir)
      results[case] = Result(documented, ran, workdir, summary)
    return results[case]

  return run


def test_every_recipe_documents_its_commands():
  files = {c.file for c in CASES} | set(RUN_BY)
  configs = {os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))}
  assert files == configs - {'common.py', '__init__.py'}, files
  datasets = {dataset_of(c) for c in CASES}
  # The paper's data: ImageNet-1k, ImageNet-21k in both layouts, the transfer sets.
  assert {'imagenet2012', *MOCKED, *FOLDERS} <= datasets, datasets
  for placeholder, source in RUNS.items():
    assert source in CASES, (placeholder, source)


@pytest.mark.parametrize('case', CASES, ids=lambda c: c.id)
def test_documented_command_trains_on_its_data_format(run_case, case):
  result = run_case(case)
  assert result.summary['final_step'] == 1 and not result.summary['preempted']
  checkpoint_dir = os.path.join(training.checkpoint_dir(result.workdir), '1')
  assert os.path.isdir(checkpoint_dir), os.listdir(result.workdir)
  # One exact pass over the documented eval split.
  assert result.summary['eval_examples'] == _eval_split_size(result)
  assert math.isfinite(result.summary['eval_loss'])
  assert 0.0 <= result.summary['eval_accuracy'] <= 1.0
  with open(os.path.join(result.workdir, 'config.json')) as f:
    stored = _flat(json.load(f))
  documented = _flat(result.documented.to_dict())
  changed = {k for k in documented if stored.get(k) != documented[k]}
  assert changed <= SIZE_FIELDS | {'init'}, sorted(changed - SIZE_FIELDS)
  assert stored['data.dataset'] in (documented['data.dataset'],
                                    documented['data.dataset'] + '_tiny')
  for key, value in result.documented.model_overrides.items():
    if key not in SIZE_OVERRIDES and key != 'representation_size':
      assert stored[f'model_overrides.{key}'] == value, key


def _eval_split_size(result) -> int:
  dataset = result.documented.data.dataset
  if dataset.split(':')[0] in MOCKED:
    return MOCK_EXAMPLES
  with mocked(dataset):
    return preflight.preflight(result.ran, process_count=1,
                                    data_shards=1).num_eval_examples


def _flat(tree: dict, prefix: str = '') -> dict:
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


# ----------------------------------------------------------------------------------------
# The paper's protocol on the users' formats: ImageNet-21k tree -> imagenet2012 at a
# higher resolution -> predict and analyze.
# ----------------------------------------------------------------------------------------
CHAIN = Case('finetune.py', 'model=ViT-B/16,dataset=imagenet2012,res=384,'
             'init=/runs/vit_b16_i21k')


def test_pretrain_i21k_finetune_imagenet_then_predict_and_analyze(run_case, folders,
                                                                   tmp_path, capsys):
  assert CHAIN in CASES, 'finetune.py must document the ImageNet-21k -> ImageNet command'
  pretrain, finetune = run_case(RUNS['/runs/vit_b16_i21k']), run_case(CHAIN)
  assert pretrain.ran.data.dataset == folders['/data/imagenet21k']
  assert (pretrain.ran.image_size, finetune.ran.image_size) == (16, 24)
  with open(os.path.join(finetune.workdir, 'config.json')) as f:
    assert json.load(f)['init'] == pretrain.workdir
  params = training.read_arrays(finetune.workdir, 1)
  posemb = params['Transformer']['posembed_input']['pos_embedding']
  assert posemb.shape == (1, 6 * 6 + 1, TINY_HIDDEN_SIZE)  # 4x4 -> 6x6 grid, + cls.
  assert 'pre_logits' not in params and params['head']['bias'].shape == (1000,)
  # What fine-tuning started from: the pretrained encoder as it was, the grid resampled.
  model = models.create('testing', num_classes=1000, image_size=24)
  zeros = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), flops.abstract_params(model))
  start = fit.load_pretrained(pretrain.workdir, model=model, init_params=zeros)
  pre = training.read_arrays(pretrain.workdir, 1)
  np.testing.assert_array_equal(start['embedding']['kernel'], pre['embedding']['kernel'])
  np.testing.assert_array_equal(
      start['Transformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel'],
      pre['Transformer']['encoderblock_0']['MlpBlock_0']['Dense_0']['kernel'])
  assert start['Transformer']['posembed_input']['pos_embedding'].shape == (1, 37, 32)

  image = str(tmp_path / 'n01440764_1.JPEG')
  image_folders.write_jpeg(image, image_folders.class_image(0, 99, (50, 40)))
  assert predict.main(['predict', f'--checkpoint={finetune.workdir}', '--json',
                       '--top=3', image]) == 0
  report = json.loads(capsys.readouterr().out)
  assert report['image_size'] == [24, 24] and not report['errors']
  top = report['predictions'][0]['top']
  # Class names come from the run's dataset, imagenet2012's ClassLabel.
  names = tfds.builder('imagenet2012', data_dir=finetune.ran.data.data_dir
                       ).info.features['label'].names
  assert len(top) == 3 and all(t['label'] in names for t in top)
  assert all(0.0 <= t['probability'] <= 1.0 for t in top)

  out = str(tmp_path / 'analysis')
  assert analyze.main(['analyze', 'attention', f'--checkpoint={finetune.workdir}',
                       f'--out={out}', image]) == 0
  with np.load(os.path.join(out, 'attention.npz')) as maps:
    assert maps['rollout'].shape[-2:] == (6, 6)  # the fine-tuned 6x6 token grid.
