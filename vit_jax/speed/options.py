"""One benchmark configuration (`Options`), its checks, its training config, and the
sweep / override syntax of `python -m vit_jax.benchmark` (`--sweep key=v1,v2`,
`--override field=value`, `--xla_option name=value`)."""
from __future__ import annotations

import ast
import dataclasses
import itertools
from typing import Any

import ml_collections

from vit_jax import optim
from vit_jax import run_config
from vit_jax.configs import common
from vit_jax.models import registry
from vit_jax.models import remat as remat_lib

MODES = ('train', 'infer')
REMAT_OFF = 'off'
# Sweep keys that are benchmark options; any other key is a model override field,
# except `xla.<option>`, an XLA compiler option of the step's compilation.
OPTION_KEYS = ('model', 'res', 'batch', 'dtype', 'mode', 'optimizer', 'remat', 'devices')
INT_KEYS = ('res', 'batch', 'devices')
XLA_DEFAULT = 'default'  # `--sweep xla.<option>=default,...`: the option left unset.


@dataclasses.dataclass(frozen=True)
class Options:
  """One configuration to measure."""
  model: str = 'ViT-B/16'
  res: int = 224
  batch: int = 8
  dtype: str = 'float32'  # a run_config.COMPUTE_DTYPES value.
  mode: str = 'train'
  optimizer: str = 'sgd'  # an optim.OPTIMIZERS value.
  remat: str = REMAT_OFF  # 'off' or a models/remat.py policy name.
  overrides: tuple[tuple[str, Any], ...] = ()  # model fields, e.g. (('fused_qkv', False),)
  xla_options: tuple[tuple[str, str], ...] = ()  # compiler options of this compile.
  num_classes: int = 1000
  devices: int | None = None  # mesh size: the first `devices` devices; None = all.


def check_options(opts: Options) -> None:
  """Raises ValueError naming the bad value and the fix; nothing compiled yet."""
  if opts.model not in registry.names():
    raise ValueError(f'--model {opts.model!r} is not registered; use one of '
                     f'{", ".join(registry.names())}')
  if opts.mode not in MODES:
    raise ValueError(f'--mode {opts.mode!r}; use one of {MODES}')
  if opts.dtype not in run_config.COMPUTE_DTYPES:
    raise ValueError(f'--dtype {opts.dtype!r}; use one of {run_config.COMPUTE_DTYPES}')
  if opts.optimizer not in optim.OPTIMIZERS:
    raise ValueError(f'--optimizer {opts.optimizer!r}; use one of {optim.OPTIMIZERS}')
  if opts.remat != REMAT_OFF and opts.remat not in remat_lib.POLICIES:
    raise ValueError(f'--remat {opts.remat!r}; use {REMAT_OFF!r} or one of '
                     f'{sorted(remat_lib.POLICIES)}')
  sizes = [('res', opts.res), ('batch', opts.batch)]
  if opts.devices is not None:
    sizes.append(('devices', opts.devices))
  for name, value in sizes:
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'--{name} {value!r} must be a positive int, e.g. --{name} 8')
  clash = {'remat', 'remat_policy', 'dtype', 'matmul_dtype', 'image_size'} & {
      k for k, _ in opts.overrides}
  if clash:
    raise ValueError(f'override(s) {sorted(clash)}: set remat with --remat, the '
                     'dtype with --dtype and the image size with --res')


def make_config(opts: Options) -> ml_collections.ConfigDict:
  """configs/common.py with this configuration's model, batch, dtype and optimiser."""
  config = common.get_config()
  config.model = opts.model
  config.image_size = opts.res
  config.batch_size = config.eval_batch_size = opts.batch
  config.dtype = opts.dtype
  config.optimizer = opts.optimizer
  overrides = dict(opts.overrides)
  if opts.remat != REMAT_OFF:
    overrides.update(remat=True, remat_policy=opts.remat)
  config.model_overrides = ml_collections.ConfigDict(overrides)
  return config


def describe(opts: Options) -> str:
  """One line naming the configuration, for progress messages."""
  extra = ''.join(f' {k}={v}' for k, v in opts.overrides + opts.xla_options)
  mesh = f' on {opts.devices} device(s)' if opts.devices else ''
  return (f'{opts.model} {opts.res}px batch {opts.batch} {opts.dtype} {opts.mode} '
          f'remat={opts.remat}{extra}{mesh}')


# ----------------------------------------------------------------------------------------
# --sweep / --override / --xla_option values.
# ----------------------------------------------------------------------------------------
def parse_value(raw: str):
  """'true' -> True, '3' -> 3, '0.1' -> 0.1, 'xla' -> 'xla' (model override values)."""
  if raw.lower() in ('true', 'false'):
    return raw.lower() == 'true'
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def xla_option_value(raw: str) -> bool | int | str:
  """XLA's option parser takes bools and ints typed: 'false' -> False, '4' -> 4;
  anything else stays the string XLA parses ('DOT,ELTWISE' is not a tuple)."""
  value = parse_value(raw)
  return value if isinstance(value, int) else raw  # bool is an int.


def split_assignment(item: str, flag: str) -> tuple[str, str]:
  key, sep, value = item.partition('=')
  if not sep or not key:
    raise ValueError(f'{flag} {item!r}: expected name=value, e.g. {flag} '
                     f'{"res=224,384" if flag == "--sweep" else "fused_qkv=false"}')
  return key, value


def with_value(opts: Options, key: str, raw: str) -> Options:
  """`opts` with one option, model override or `xla.<option>` set from a string."""
  if key.startswith('xla.'):
    options = dict(opts.xla_options, **{key[4:]: xla_option_value(raw)})
    if raw == XLA_DEFAULT:
      del options[key[4:]]
    return dataclasses.replace(opts, xla_options=tuple(sorted(options.items())))
  if key in INT_KEYS:
    try:
      return dataclasses.replace(opts, **{key: int(raw)})
    except ValueError:
      raise ValueError(f'{key}={raw!r} is not an int; e.g. {key}=224') from None
  if key in OPTION_KEYS:
    return dataclasses.replace(opts, **{key: raw})
  overrides = dict(opts.overrides, **{key: parse_value(raw)})
  return dataclasses.replace(opts, overrides=tuple(sorted(overrides.items())))


def configurations(base: Options, sweeps: list[str]) -> list[Options]:
  """The product of every --sweep key's values applied to `base`."""
  axes = []
  for item in sweeps:
    key, values = split_assignment(item, '--sweep')
    # '|' separates values that contain commas (XLA list options).
    values = values.split('|' if '|' in values else ',')
    if not all(values) and not key.startswith('xla.'):
      raise ValueError(f'--sweep {item!r} has an empty value; e.g. --sweep res=224,384')
    axes.append([(key, v) for v in values])
  result = []
  for combination in itertools.product(*axes):
    opts = base
    for key, value in combination:
      opts = with_value(opts, key, value)
    result.append(opts)
  return result
