"""Every config in configs/ builds and trains one tiny step through the real loop.

Each config file (found by a glob, so a new one is picked up) is built as published,
shrunk to the tiny model of its family on the offline demo data while its recipe
(optimiser, loss, augmentation, regularisation, dtype, ...) is kept, and run for one
update by `train.train_and_evaluate`, with an evaluation and a checkpoint at step 1.
configs/demo.py, when present, runs in each of its phases. One compile per case is the
cost, so each case runs once and its result is shared by the assertions.
"""
import collections
import copy
import glob
import importlib
import inspect
import json
import math
import os

import jax
import ml_collections
import pytest

from configs import common
from vit_jax import preprocess
from vit_jax import train
from vit_jax import train_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(
    os.path.basename(p) for p in glob.glob(os.path.join(REPO, 'configs', '*.py'))
    if os.path.basename(p) not in ('common.py', '__init__.py'))
PUBLISHED = ('finetune.py', 'swin_i1k.py', 'testing.py', 'vit_i1k_augreg.py',
             'vit_i21k.py')
# Published variants that take another code path than the default arguments.
EXTRA_ARGS = {'vit_i21k.py': ('model=R50+ViT-B/16',),  # hybrid ResNet stem
              'finetune.py': ('model=Swin-B',)}  # Swin fine-tuning recipe (AdamW, smoothing)
DEMO_PHASES = ('pretrain', 'finetune', 'scratch')
# Fine-tuning cases start from the tiny run of their pretraining case, given as the
# config's own `init` argument (new head, pre_logits dropped, position embeddings
# resampled to the larger image); every other case starts from scratch.
INIT_FROM = {('finetune.py', ''): ('vit_i21k.py', ''),
             ('demo.py', 'phase=finetune'): ('demo.py', 'phase=pretrain')}
# Fields that make the recipe: the tiny run must train with the published values.
RECIPE_FIELDS = (
    'optimizer', 'loss', 'label_smoothing', 'lr', 'weight_decay', 'b1', 'b2',
    'momentum_dtype', 'decay_type', 'grad_clip_norm', 'accum_steps', 'ema_decay',
    'dtype', 'param_dtype', 'fsdp', 'seed', 'posemb_resample', 'data.multi_label',
    'data.train_crop', 'data.crop_area_min', 'data.flip', 'data.eval_resize',
    'data.randaug_layers', 'data.randaug_magnitude', 'data.mixup_alpha')
# Overrides sized for the full model; the tiny model has its own sizes.
SIZE_OVERRIDES = frozenset({'window_size', 'patch_size', 'hidden_size', 'num_layers',
                            'num_heads', 'mlp_dim', 'embed_dim', 'depths', 'image_size',
                            'resnet'})
TINY_HIDDEN_SIZE = 32  # width of 'testing' and 'R+ViT-testing' (vit.SIZES['testing']).


# ----------------------------------------------------------------------------------------
# Discovery: which configs and arguments to run.
# ----------------------------------------------------------------------------------------
def load(file: str):
  return importlib.import_module(f'configs.{file[:-3]}')


def takes_arg(module) -> bool:
  return bool(inspect.signature(module.get_config).parameters)


def build(file: str, arg: str = '') -> ml_collections.ConfigDict:
  module = load(file)
  return module.get_config(arg) if takes_arg(module) else module.get_config()


def cases() -> list[tuple[str, str]]:
  out = []
  for file in CONFIG_FILES:
    module = load(file)
    if file == 'demo.py' and takes_arg(module):
      out += [(file, f'phase={phase}') for phase in DEMO_PHASES]
    else:
      out += [(file, '')] + [(file, arg) for arg in EXTRA_ARGS.get(file, ())]
  return out


CASES = cases()


def case_id(case) -> str:
  return f'{case[0]}:{case[1]}' if case[1] else case[0]


# ----------------------------------------------------------------------------------------
# Shrinking: the tiny model of the same family, the demo data, one step.
# ----------------------------------------------------------------------------------------
def tiny_model(name: str) -> str:
  if name.startswith('Swin'):
    return 'Swin-testing'
  return 'R+ViT-testing' if '+ViT' in name else 'testing'


def tiny_image_size(model: str, image_size) -> int:
  if model == 'Swin-testing':
    return 32  # 8x8 patches: 2x2 shifted 4x4 windows, merged to one 4x4 window.
  side = max(preprocess.parse_size(image_size))
  if side <= 32:
    return side  # already tiny (testing, demo): as published.
  return 24 if side > 224 else 16  # keep "fine-tune above the pretraining resolution".


def tiny_dataset(data) -> str:
  name = data.dataset
  if name.startswith('vit_demo/'):
    return name if name.endswith('_tiny') else f'{name}_tiny'
  return 'vit_demo/multilabel_tiny' if data.multi_label else 'vit_demo/upstream_tiny'


def tiny_split(split: str, default: str) -> str:
  """Keeps the recipe's slicing ('train[:98%]') where the demo has that split."""
  return split if split.split('[')[0] in ('train', 'test') else default


def tiny_overrides(overrides) -> dict:
  out = {k: v for k, v in overrides.items() if k not in SIZE_OVERRIDES}
  if out.get('representation_size') is not None:
    out['representation_size'] = TINY_HIDDEN_SIZE  # pre_logits of the hidden size.
  return out


def shrink(config, data_dir: str, init: str | None = None) -> ml_collections.ConfigDict:
  tiny = copy.deepcopy(config)
  tiny.model = tiny_model(config.model)
  tiny.model_overrides = ml_collections.ConfigDict(tiny_overrides(config.model_overrides))
  tiny.image_size = tiny_image_size(tiny.model, config.image_size)
  tiny.init = init
  tiny.data.dataset = tiny_dataset(config.data)
  tiny.data.data_dir = data_dir
  tiny.data.manual_dir = None
  tiny.data.train_split = tiny_split(config.data.train_split, 'train')
  tiny.data.eval_split = tiny_split(config.data.eval_split, 'test')
  tiny.data.shuffle_buffer = 64
  tiny.batch_size = 8 * config.accum_steps  # 1 image per device per micro-batch.
  tiny.eval_batch_size = 64  # every demo test split in one padded batch.
  tiny.total_steps = 1
  tiny.warmup_steps = 0  # must be < total_steps.
  tiny.log_every_steps = tiny.eval_every_steps = tiny.checkpoint_every_steps = 1
  return tiny


# ----------------------------------------------------------------------------------------
# Running each case once.
# ----------------------------------------------------------------------------------------
Result = collections.namedtuple('Result', 'original workdir summary scalars')


def event_scalars(workdir: str) -> dict[str, dict[int, float]]:
  """{tag: {step: value}} of the scalars in the TensorBoard event files of `workdir`."""
  import tensorflow as tf  # only to read event files.
  scalars = collections.defaultdict(dict)
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'scalars':
          scalars[value.tag][event.step] = tf.make_ndarray(value.tensor).item()
  return scalars


@pytest.fixture(scope='module', autouse=True)
def cheap_compiles():
  """XLA's low-effort mode: one tiny step needs a program, not a fast one, and compiling
  is most of each case (this file: 9.5 -> 5.5 min on 2 busy cores). The flag is not part
  of JAX's cache key, so the caches are cleared afterwards: no later test runs a program
  compiled this way."""
  previous = jax.config.read('jax_disable_most_optimizations')
  jax.config.update('jax_disable_most_optimizations', True)
  yield
  jax.config.update('jax_disable_most_optimizations', previous)
  jax.clear_caches()


@pytest.fixture(scope='module')
def run_case(tmp_path_factory, demo_data_dir):
  """run_case(file, arg) -> Result; each case trains once per module."""
  results = {}

  def run(file: str, arg: str) -> Result:
    if (file, arg) not in results:
      init = run(*INIT_FROM[file, arg]).workdir if (file, arg) in INIT_FROM else None
      original = build(file, ','.join(filter(None, [arg, init and f'init={init}'])))
      workdir = str(tmp_path_factory.mktemp(file[:-3]))
      summary = train.train_and_evaluate(
          shrink(original, demo_data_dir, original.init if init else None), workdir)
      results[file, arg] = Result(original, workdir, summary, event_scalars(workdir))
    return results[file, arg]

  return run


def test_discovers_every_published_config():
  assert set(PUBLISHED) <= set(CONFIG_FILES), CONFIG_FILES
  assert len(CASES) >= len(CONFIG_FILES) + sum(len(a) for a in EXTRA_ARGS.values())


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_config_trains_one_tiny_step(run_case, case):
  result = run_case(*case)
  assert result.summary['final_step'] == 1 and not result.summary['preempted']
  for tag in ('train_loss', 'eval_loss'):
    assert 1 in result.scalars[tag], f'{tag} not logged at step 1: {sorted(result.scalars)}'
    assert math.isfinite(result.scalars[tag][1]), (tag, result.scalars[tag])
  checkpoint = os.path.join(train_checkpoint.checkpoint_dir(result.workdir), '1')
  assert os.path.isdir(checkpoint), os.listdir(result.workdir)
  # The recipe that ran (the workdir's config.json) is the published one.
  with open(os.path.join(result.workdir, 'config.json')) as f:
    ran = ml_collections.ConfigDict(json.load(f))
  for field in RECIPE_FIELDS:
    assert _get(ran, field) == _get(result.original, field), field
  assert ran.model == tiny_model(result.original.model)
  kept = tiny_overrides(result.original.model_overrides)
  assert ran.model_overrides.to_dict() == kept


def _get(config, dotted: str):
  for key in dotted.split('.'):
    config = config[key]
  return config


@pytest.mark.parametrize('case', [c for c in INIT_FROM if c in CASES], ids=case_id)
def test_finetune_case_starts_from_its_pretraining_run(run_case, case):
  result, pretrain = run_case(*case), run_case(*INIT_FROM[case])
  with open(os.path.join(result.workdir, 'config.json')) as f:
    assert json.load(f)['init'] == pretrain.workdir
  params = train_checkpoint.read_arrays(result.workdir, 1)
  side = tiny_image_size('testing', result.original.image_size)
  pre_side = tiny_image_size('testing', pretrain.original.image_size)
  assert side > pre_side  # the resolution goes up, as in the recipe.
  posemb = params['Transformer']['posembed_input']['pos_embedding']
  assert posemb.shape == (1, (side // 4) ** 2 + 1, TINY_HIDDEN_SIZE)  # 4x4 patches + cls
  assert 'pre_logits' not in params  # the new task head sits on the encoder output.


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
  build(file, next(arg for f, arg in CASES if f == file))
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
