"""Published Swin V1 and V2 state dicts (official repository or timm) -> our Flax tree.

Two layouts exist and both are accepted:
  official: `layers.{i}.downsample.*` ends stage i (stages 0 .. n-2), `head.*`;
  timm (>= 0.9): `layers.{i}.downsample.*` starts stage i (stages 1 .. n-1), `head.fc.*`.
Keys may also spell modules `layers_{i}` / `blocks_{j}` (timm feature wrappers) or carry
a `module.` prefix (DistributedDataParallel). Buffers (`relative_position_index`,
`attn_mask`; V2 also `relative_coords_table` and timm's all-zero `k_bias`) are
recomputed from the config, so they are dropped. V2's `attn.cpb_mlp.{0,2}` are Dense
layers (`attn/cpb_mlp_0`, `attn/cpb_mlp_2`); `attn.logit_scale` (heads, 1, 1),
`attn.q_bias` and `attn.v_bias` (C,) are kept as they are.

Torch layouts are transposed to Flax's: Linear (out, in) -> Dense kernel (in, out);
Conv2d OIHW -> HWIO; LayerNorm `weight` -> `scale`.
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np
from safetensors import numpy as safetensors_numpy

_BUFFER_NAMES = ('relative_position_index', 'attn_mask', 'relative_coords_table',
                 'k_bias')
_TORCH_SUFFIXES = ('.pth', '.pt', '.bin')

# Module paths (after canonicalisation to dots) -> kind of their `weight` / `bias`.
_MODULES = (
    (re.compile(r'patch_embed\.proj'), 'conv'),
    (re.compile(r'patch_embed\.norm'), 'norm'),
    (re.compile(r'layers\.\d+\.blocks\.\d+\.norm[12]'), 'norm'),
    (re.compile(r'layers\.\d+\.blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc[12]'
                r'|attn\.cpb_mlp\.[02])'), 'dense'),
    (re.compile(r'layers\.\d+\.downsample\.norm'), 'norm'),
    (re.compile(r'layers\.\d+\.downsample\.reduction'), 'dense'),
    (re.compile(r'norm'), 'norm'),
    (re.compile(r'head'), 'dense'),
)
# Kept as stored: V1's bias table, V2's logit scale and q / v biases.
_RAW = re.compile(r'layers\.\d+\.blocks\.\d+\.attn\.'
                  r'(relative_position_bias_table|logit_scale|q_bias|v_bias)')
_DOWNSAMPLE = re.compile(r'^layers\.(\d+)\.downsample\.')


# ----------------------------------------------------------------------------------
# Reading files.
# ----------------------------------------------------------------------------------


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """Flat {torch key: array} from a `.safetensors` or torch (`.pth/.pt/.bin`) file.

  A torch checkpoint that wraps the weights (official: under `model`; some trainers:
  `state_dict`) is unwrapped.
  """
  path = os.fspath(path)
  if path.endswith('.safetensors'):
    return dict(safetensors_numpy.load_file(path))
  if path.endswith(_TORCH_SUFFIXES):
    return _read_torch(path)
  raise ValueError(f'cannot read {path!r}: expected a .safetensors, .pth, .pt or .bin '
                   'state dict file')


def _read_torch(path: str) -> dict[str, np.ndarray]:
  try:  # lazy: torch is an optional extra, needed for .pth / .pt / .bin files only.
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError(
        f'reading {path!r} needs PyTorch, which is not installed: run `pip install '
        'torch` (CPU build is enough) or install the extra `pip install '
        '"vit_jax[torch]"`; or convert the file to .safetensors elsewhere') from e
  obj = torch.load(path, map_location='cpu', weights_only=True)
  for wrapper in ('model', 'state_dict'):
    if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
      obj = obj[wrapper]
  out = {}
  for key, value in obj.items():
    if isinstance(value, torch.Tensor):
      value = value.detach().cpu()
      # NumPy has no bfloat16; half tensors are widened too, the tree is float32.
      if value.is_floating_point():
        value = value.float()
      out[key] = value.numpy()
  return out


# ----------------------------------------------------------------------------------
# Converting.
# ----------------------------------------------------------------------------------


def _canonical(key: str) -> str:
  """'module.layers_0.blocks_1.x' -> 'layers.0.blocks.1.x'; 'head.fc.w' -> 'head.w'."""
  key = key[len('module.'):] if key.startswith('module.') else key
  key = re.sub(r'(^|\.)(layers|blocks)_(\d+)(?=\.)', r'\1\2.\3', key)
  return re.sub(r'^head\.fc\.', 'head.', key)


def _downsample_offset(keys) -> int:
  """0 for official layout (merge stored in the stage it ends), -1 for timm's."""
  stages = {int(m.group(1)) for m in map(_DOWNSAMPLE.match, keys) if m}
  return -1 if stages and min(stages) > 0 else 0


def _flax_path(key: str, offset: int) -> tuple[list[str], str] | None:
  """Torch key -> (Flax module path, kind), or None if it is no Swin parameter."""
  match = _DOWNSAMPLE.match(key)
  if match:
    key = f'layers.{int(match.group(1)) + offset}.downsample.' + key[match.end():]
  if key == 'absolute_pos_embed':
    return ['absolute_pos_embed'], 'raw'
  if _RAW.fullmatch(key):
    return _module_path(key), 'raw'
  module, _, leaf = key.rpartition('.')
  for pattern, kind in _MODULES:
    if pattern.fullmatch(module) and leaf in ('weight', 'bias'):
      return _module_path(module) + [_leaf_name(kind, leaf)], kind + '.' + leaf
  return None


def _module_path(dotted: str) -> list[str]:
  """'layers.0.blocks.1.attn.cpb_mlp.0' -> ['layers_0', 'blocks_1', 'attn', 'cpb_mlp_0']."""
  return re.sub(r'(layers|blocks|cpb_mlp)\.(\d+)', r'\1_\2', dotted).split('.')


def _leaf_name(kind: str, leaf: str) -> str:
  if leaf == 'bias':
    return 'bias'
  return 'scale' if kind == 'norm' else 'kernel'


def _to_flax(value: np.ndarray, kind: str, key: str) -> np.ndarray:
  """Transposes torch layouts; checks the rank so a wrong file fails by name."""
  expected_rank = {'dense.weight': 2, 'conv.weight': 4}.get(kind)
  if expected_rank is not None and value.ndim != expected_rank:
    raise ValueError(f'{key} has shape {value.shape}; expected a rank-{expected_rank} '
                     f'{kind.split(".")[0]} weight')
  if kind == 'dense.weight':
    return np.ascontiguousarray(value.T)  # (out, in) -> (in, out)
  if kind == 'conv.weight':
    return np.ascontiguousarray(value.transpose(2, 3, 1, 0))  # OIHW -> HWIO
  if key.endswith('absolute_pos_embed'):
    return value.reshape(1, -1, value.shape[-1])  # timm (1, H, W, C) -> (1, HW, C)
  return value


def convert_state_dict(state_dict: dict[str, Any]) -> dict[str, Any]:
  """Official or timm Swin state dict -> nested Flax params {'patch_embed': ...}.

  Raises ValueError listing every key that is neither a Swin parameter nor a known
  buffer, and on two keys that map to the same parameter.
  """
  keys = sorted((_canonical(k), k) for k in state_dict if not k.endswith(_BUFFER_NAMES))
  offset = _downsample_offset(key for key, _ in keys)
  params, unknown = {}, []
  for key, original in keys:
    found = _flax_path(key, offset)
    if found is None:
      unknown.append(original)
      continue
    path, kind = found
    _set_leaf(params, path, _to_flax(np.asarray(state_dict[original]), kind, original),
              original)
  if unknown:
    raise ValueError(
        f'{len(unknown)} state-dict key(s) are not Swin parameters: {unknown}. '
        'Expected official or timm Swin V1 / V2 names such as '
        "'layers.0.blocks.0.attn.qkv.weight'; strip any wrapper prefix first")
  return params


def _set_leaf(tree: dict, path: list[str], value: np.ndarray, key: str) -> None:
  node = tree
  for part in path[:-1]:
    node = node.setdefault(part, {})
  if path[-1] in node:
    raise ValueError(f'{key} maps to {"/".join(path)}, which another key already set '
                     '(mixed official and timm names?)')
  node[path[-1]] = value


def load(path: str) -> dict[str, Any]:
  """Nested Flax params of the Swin state dict file at `path`."""
  return convert_state_dict(read_state_dict(path))
