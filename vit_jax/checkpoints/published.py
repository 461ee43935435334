"""Loading published weights into our parameter tree, with key matching by name.

`load_params(path)` reads a published Google ViT / hybrid `.npz` (or, through
swin_torch.py, an official / timm Swin state dict) and returns a nested dict with
the same tree as `model.init(...)['params']`. Nothing is renamed in the hot path: the
only translations are for older file layouts, listed in `_OLD_BLOCK_NAMES`.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

from etils import epath
import numpy as np

# Pre-linen checkpoints numbered modules across the whole block; current Flax numbers
# each module type separately. Old name -> ours, inside `encoderblock_{i}/`.
_OLD_BLOCK_NAMES = {
    'LayerNorm_0': 'LayerNorm_0',
    'MultiHeadDotProductAttention_1': 'MultiHeadDotProductAttention_0',
    'LayerNorm_2': 'LayerNorm_1',
    'MlpBlock_3': 'MlpBlock_0',
}
_KEY_PREFIXES = ('opt/target/', 'params/')  # optimiser-state and variables wrappers.
_TORCH_SUFFIXES = ('.pth', '.pt', '.bin', '.safetensors')


class CheckpointMismatchError(ValueError):
  """The loaded tree does not match the model's: lists each key that differs."""


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': x}} -> {'a/b': x}."""
  flat = {}
  for key, value in tree.items():
    path = f'{prefix}{key}'
    if isinstance(value, Mapping):
      flat.update(flatten(value, path + '/'))
    else:
      flat[path] = value
  return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
  """{'a/b': x} -> {'a': {'b': x}}."""
  tree: dict[str, Any] = {}
  for path, value in flat.items():
    node = tree
    *parents, leaf = path.split('/')
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = value
  return tree


def _strip_prefix(key: str) -> str:
  for prefix in _KEY_PREFIXES:
    if key.startswith(prefix):
      return key[len(prefix):]
  return key


def _uses_old_block_names(keys) -> bool:
  return any(re.search(r'encoderblock_\d+/MlpBlock_3/', k) for k in keys)


def _rename_old_block(key: str) -> str:
  match = re.match(r'(.*encoderblock_\d+/)([^/]+)(/.*)', key)
  if not match:
    return key
  head, module, tail = match.groups()
  return head + _OLD_BLOCK_NAMES.get(module, module) + tail


def _squeeze_group_norm(key: str, value: np.ndarray) -> np.ndarray:
  """Some hybrid files store GroupNorm scale/bias as (1, 1, 1, C); ours are (C,)."""
  leaf_module = key.rsplit('/', 2)[-2] if key.count('/') else ''
  if leaf_module.startswith('gn') and value.ndim == 4:
    return value.reshape(-1)
  return value


def convert_npz_keys(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Published `.npz` flat keys -> our flat keys (prefixes, old numbering, GN shape)."""
  stripped = {_strip_prefix(k): np.asarray(v) for k, v in flat.items()}
  if _uses_old_block_names(stripped):
    stripped = {_rename_old_block(k): v for k, v in stripped.items()}
  return {k: _squeeze_group_norm(k, v) for k, v in stripped.items()}


def read_npz(path: str) -> dict[str, np.ndarray]:
  with epath.Path(path).open('rb') as f:
    with np.load(f, allow_pickle=False) as npz:
      return {k: npz[k] for k in npz.files}


def match_tree(loaded: Mapping[str, Any], template: Mapping[str, Any]) -> None:
  """Raises CheckpointMismatchError naming missing, unexpected and reshaped keys."""
  match_flat(flatten(loaded), flatten(template))


def match_flat(flat_loaded: Mapping[str, Any], flat_template: Mapping[str, Any]) -> None:
  """match_tree of flat {'a/b': array} dicts (template leaves: arrays or
  ShapeDtypeStructs)."""
  missing = sorted(set(flat_template) - set(flat_loaded))
  unexpected = sorted(set(flat_loaded) - set(flat_template))
  wrong_shape = sorted(
      f'{k}: file {tuple(np.shape(flat_loaded[k]))} vs model '
      f'{tuple(flat_template[k].shape)}'
      for k in set(flat_loaded) & set(flat_template)
      if tuple(np.shape(flat_loaded[k])) != tuple(flat_template[k].shape))
  if missing or unexpected or wrong_shape:
    lines = ['checkpoint does not match the model:']
    for title, keys in (('missing (in model, not in file)', missing),
                        ('unexpected (in file, not in model)', unexpected),
                        ('wrong shape', wrong_shape)):
      if keys:
        lines.append(f'  {title}: {len(keys)}')
        lines.extend(f'    {k}' for k in keys)
    raise CheckpointMismatchError('\n'.join(lines))


def load_params(path: str, template: Mapping[str, Any] | None = None) -> dict:
  """Reads published weights at `path` as our nested parameter dict.

  `.npz`: Google ViT / hybrid checkpoints (both block numberings, any prefix).
  `.pth` / `.pt` / `.bin` / `.safetensors`: official or timm Swin state dicts.
  With `template` (e.g. `jax.eval_shape` of `model.init`), every key and shape is
  checked and a mismatch raises an error listing the offending keys by name.
  """
  if not epath.Path(path).exists():  # epath: local or gs://
    raise FileNotFoundError(f'checkpoint {path!r} does not exist')
  if path.endswith('.npz'):
    params = unflatten(convert_npz_keys(read_npz(path)))
  elif path.endswith(_TORCH_SUFFIXES):
    # Lazy: only Swin files need swin_torch's safetensors import (and torch for .pth);
    # .npz loads (every ViT run) do not pay for it.
    from vit_jax.checkpoints import swin_torch  # pylint: disable=g-import-not-at-top
    params = swin_torch.load(path)
  else:
    raise ValueError(
        f'checkpoint {path!r}: unknown format; expected .npz (Google ViT) or '
        f'{"/".join(_TORCH_SUFFIXES)} (Swin state dict)')
  if template is not None:
    match_tree(params, template)
  return params
