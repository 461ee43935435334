"""Swin checkpoint adaptation and the family's hooks (`registry.Family`).

Fine-tuning at a new window: bicubic resize of the relative-position-bias tables, as
the official Swin fine-tuning does. The window a checkpoint was trained with is read
from each table's shape, so nothing else about the source model is needed.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from vit_jax.models import registry
from vit_jax.models.swin import windows
from vit_jax.models.swin.model import SwinTransformer
from vit_jax.models.swin.v2 import SwinTransformerV2

# Leaf names only one Swin version has: a checkpoint of the other one is refused by
# name before anything is matched (V1: the bias table; V2: the bias MLP and the scale).
_V1_LEAVES = ('relative_position_bias_table',)
_V2_LEAVES = ('cpb_mlp_0/kernel', 'logit_scale', 'q_bias')

# Cubic-convolution coefficient of PyTorch's bicubic mode, used by the official Swin
# fine-tuning (`F.interpolate(mode='bicubic', align_corners=False)`). We do not use
# jax.image.resize('cubic'): it uses Keys' a = -0.5, and at the borders it drops
# out-of-range taps and renormalises instead of replicating the edge sample, so its
# values differ from PyTorch's (checked numerically when this was written).
_CUBIC_A = -0.75


def _cubic_weight(distance: np.ndarray) -> np.ndarray:
  """Keys cubic convolution kernel with a = -0.75 at |distance| (in input pixels)."""
  d = np.abs(distance)
  near = ((_CUBIC_A + 2) * d - (_CUBIC_A + 3)) * d * d + 1
  far = ((_CUBIC_A * d - 5 * _CUBIC_A) * d + 8 * _CUBIC_A) * d - 4 * _CUBIC_A
  return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) float64 1-D resampling matrix of PyTorch's bicubic mode.

  align_corners=False: output pixel i samples input coordinate (i + 0.5) * in/out - 0.5
  (not clamped); the 4 taps floor(x) - 1 .. floor(x) + 2 are clamped to the border
  (edge replication); no antialiasing.
  """
  matrix = np.zeros((out_size, in_size))
  source = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
  base = np.floor(source).astype(np.int64)
  for tap in range(-1, 3):
    weights = _cubic_weight(source - (base + tap))
    np.add.at(matrix, (np.arange(out_size), np.clip(base + tap, 0, in_size - 1)),
              weights)
  return matrix


def resize_relative_position_bias_table(table: np.ndarray,
                                        new_window: int) -> np.ndarray:
  """((2M-1)^2, heads) -> ((2M'-1)^2, heads) for M' = new_window, bicubic per head.

  The table rows are the (2M-1, 2M-1) grid of (dh, dw) offsets, row-major.
  """
  table = np.asarray(table)
  side = int(round(np.sqrt(table.shape[0]))) if table.ndim == 2 else -1
  if table.ndim != 2 or side * side != table.shape[0] or side % 2 == 0:
    raise ValueError(f'relative_position_bias_table of shape {table.shape} is not '
                     '((2M-1)^2, heads) for an int window M')
  new_side = 2 * new_window - 1
  if new_window < 1:
    raise ValueError(f'new_window must be a positive int, got {new_window}')
  if new_side == side:
    return table
  grid = table.reshape(side, side, -1).astype(np.float64)
  resize = bicubic_matrix(side, new_side)  # (new_side, side), same for both axes.
  grid = np.einsum('ih,jw,hwc->ijc', resize, resize, grid)
  return grid.reshape(new_side * new_side, -1).astype(table.dtype)


def adapt_params(params, old_window: int, new_window: int):
  """Copy of a Swin param tree with every bias table resized old -> new window.

  Any other leaf is returned as is. Raises if a table does not have the old window's
  shape, naming it.
  """
  old_rows = (2 * old_window - 1)**2

  def adapt(path, leaf):
    name = '/'.join(str(getattr(k, 'key', k)) for k in path)
    if not name.endswith('relative_position_bias_table'):
      return leaf
    if np.shape(leaf)[0] != old_rows:
      raise ValueError(
          f'{name} has shape {np.shape(leaf)}, expected ({old_rows}, heads) for '
          f'old_window={old_window}; pass the window the checkpoint was trained with')
    return resize_relative_position_bias_table(np.asarray(leaf), new_window)

  return jax.tree_util.tree_map_with_path(adapt, params)


def _window_of_table(rows: int, key: str) -> int:
  """M from a table of (2M-1)^2 rows."""
  side = int(round(np.sqrt(rows)))
  if side * side != rows or side % 2 == 0:
    raise ValueError(f'{key} has {rows} rows, not (2M-1)^2 for an int window M')
  return (side + 1) // 2


def adapt_pretrained(flat: dict, flat_init: dict, model: SwinTransformer,
                     source: dict | None = None) -> tuple[dict, list[str]]:
  """Fine-tune loader hook: resizes bias tables whose window differs from `model`'s.

  flat / flat_init: {'layers_0/blocks_0/attn/relative_position_bias_table': array}
  (checkpoint and freshly initialised params). The checkpoint's window is read from
  each table's shape, so `source` (its config) is not needed. Tables whose head count
  differs are left alone for the key matcher to report. Returns new flat params and
  report lines '<verb> <key> ...'.
  """
  del source  # the table shape determines the old window unambiguously.
  out, report = dict(flat), []
  for key, value in flat.items():
    if not key.endswith('relative_position_bias_table') or key not in flat_init:
      continue
    old_shape, new_shape = np.shape(value), tuple(flat_init[key].shape)
    if old_shape == new_shape or old_shape[1:] != new_shape[1:]:
      continue
    old_window = _window_of_table(old_shape[0], key)
    new_window = _window_of_table(new_shape[0], key)
    out[key] = resize_relative_position_bias_table(np.asarray(value), new_window)
    report.append(f'resampled {key} {old_shape} -> {new_shape} (window {old_window} '
                  f'-> {new_window}, bicubic a=-0.75; model window {model.window_size})')
  return out, report


# ----------------------------------------------------------------------------------
# Family hooks.
# ----------------------------------------------------------------------------------


def check_version(flat: dict, model: SwinTransformer) -> None:
  """Refuses a V1 checkpoint for a V2 model and the reverse, naming a key and the fix."""
  is_v2 = isinstance(model, SwinTransformerV2)
  foreign, mine, theirs = ((_V1_LEAVES, 'V2', 'V1') if is_v2 else
                           (_V2_LEAVES, 'V1', 'V2'))
  for key in sorted(flat):
    if key.endswith(foreign):
      other = 'Swin-T, Swin-S, ...' if is_v2 else 'SwinV2-T, SwinV2-S, ...'
      raise ValueError(
          f'the checkpoint has {key}, a Swin {theirs} parameter, but the model is Swin '
          f'{mine} ({type(model).__name__}); create the model as the matching {theirs} '
          f'variant (model={other}) or give a Swin {mine} checkpoint')


def _adapt_checkpoint(flat: dict, flat_init: dict, model: SwinTransformer,
                      source_image_size=None, method: str = 'bilinear', *,
                      patch_resize_method: str = 'pi', source_model=None):
  """The table shapes give the old window: the source size, model and methods do not
  matter (Swin's patch embedding is not resized: a patch change is refused by shape)."""
  del source_image_size, method, patch_resize_method, source_model
  check_version(flat, model)
  return adapt_pretrained(flat, flat_init, model)


def coordinate_units(model: SwinTransformerV2) -> tuple[int, ...]:
  """Per stage, the window V2's bias coordinates are measured in: the pretrained window
  where one is set, else the stage's own window (log_spaced_coordinates)."""
  own = windows.stage_windows(model.image_size, model.patch_size, model.window_size,
                              len(model.depths))
  return tuple(p or w for p, w in zip(model.pretrained_window_sizes, own))


def check_coordinate_units(model: SwinTransformerV2, source) -> None:
  """A V2 run's bias MLP learned offsets in its units: the new model must use the
  same ones (pretrained_window_sizes), or every bias is read at the wrong offset."""
  if not isinstance(source, SwinTransformerV2):
    return
  want, have = coordinate_units(source), coordinate_units(model)
  if want != have:
    raise ValueError(
        f'the checkpoint was trained at {source.image_size[0]} px, window '
        f'{source.window_size}: its bias MLP measures offsets in windows {want} per '
        f'stage, but this model measures them in {have}; create it with '
        f'pretrained_window_sizes={list(want)} (configs/swinv2_finetune.py: '
        f'init_res={source.image_size[0]},init_window={source.window_size})')


def rebuilt_buffers(model: SwinTransformerV2) -> list[str]:
  """Report lines: the V2 buffers each stage rebuilds from the config (never loaded)."""
  lines = []
  h, w = model.grid
  for stage, (depth, unit) in enumerate(zip(model.depths, coordinate_units(model))):
    window, shift = windows.stage_window(h, w, model.window_size)
    mask = (f', attn_mask ({h * w // window**2}, {window**2}, {window**2}) in the '
            'shifted blocks') if shift and depth > 1 else ''
    lines.append(
        f'rebuilt layers_{stage}/blocks_*/attn buffers: relative_coords_table '
        f'({(2 * window - 1)**2}, 2) in units of the pretrained window {unit} (offsets '
        f'/ {max(unit - 1, 1)}), relative_position_index ({window**2}, {window**2})'
        f'{mask}; window {window} on the {h}x{w} map')
    h, w = h // 2, w // 2
  return lines


def _adapt_checkpoint_v2(flat: dict, flat_init: dict, model: SwinTransformerV2,
                         source_image_size=None, method: str = 'bilinear', *,
                         patch_resize_method: str = 'pi', source_model=None):
  """Nothing to resample: the bias MLP takes any window. Checks the coordinate units
  against a recorded source model; reports the rebuilt buffers."""
  del flat_init, source_image_size, method, patch_resize_method
  check_version(flat, model)
  check_coordinate_units(model, source_model)
  return dict(flat), rebuilt_buffers(model)


def _trained_image_size(flat: dict, model: SwinTransformer, explicit=None):
  """Swin weights do not record their resolution: only an explicit size is known
  (callers then use the model's default)."""
  del flat, model
  if explicit:
    return explicit, 'given as source_image_size'
  return None, ''


def _patch_drop(model: SwinTransformer) -> str:
  del model
  return 'patch embeddings zeroed (Swin windows need the full grid)'


def _check_analysis(what: str, model: SwinTransformer) -> None:
  if what != 'patch-drop':
    raise ValueError(f'{what} is implemented for ViT and hybrids; '
                     f'{type(model).__name__} is not a ViT (Swin: see the Swin '
                     'model intermediates)')


HOOKS = registry.Family(
    name='Swin',
    adapt_checkpoint=_adapt_checkpoint,
    trained_image_size=_trained_image_size,
    file_fields=lambda flat: {},
    patch_drop=_patch_drop,
    check_analysis=_check_analysis)

HOOKS_V2 = dataclasses.replace(HOOKS, name='SwinV2',
                               adapt_checkpoint=_adapt_checkpoint_v2)

registry.register_family(SwinTransformer, HOOKS)
registry.register_family(SwinTransformerV2, HOOKS_V2)
