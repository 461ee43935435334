"""Checkpoint adaptation owned by the ViT family (its hooks, called through
checkpoints/fit.py): the source grid of a published checkpoint, read from its learned
position embedding, and resampling that embedding to a new token grid.
"""
from __future__ import annotations

import math

import jax
import numpy as np
from scipy import ndimage as scipy_ndimage

from vit_jax.models import registry
from vit_jax.models import vit_patch_resize
from vit_jax.models.vit import VisionTransformer

POSEMB_KEY = 'Transformer/posembed_input/pos_embedding'


def resample_posemb(posemb: np.ndarray, old_grid: tuple[int, int],
                    new_grid: tuple[int, int], num_prefix_tokens: int,
                    method: str = 'bilinear') -> np.ndarray:
  """Resizes a learned (1, prefix + h * w, D) position embedding to a new token grid.

  'bilinear' is the original implementation's convention: corner-aligned, equal to
  `scipy.ndimage.zoom(grid, (h'/h, w'/w, 1), order=1)` (what produced the published
  fine-tuning results). 'bilinear_half_pixel' / 'bicubic' use half-pixel centres
  (`jax.image.resize`). Prefix (class) tokens are kept as they are. Same grid: no-op.
  """
  prefix, grid = posemb[:, :num_prefix_tokens], posemb[0, num_prefix_tokens:]
  if grid.shape[0] != old_grid[0] * old_grid[1]:
    raise ValueError(
        f'position embedding has {grid.shape[0]} grid tokens but the source grid '
        f'{old_grid[0]}x{old_grid[1]} needs {old_grid[0] * old_grid[1]}; pass the '
        "source model's image size")
  if tuple(old_grid) == tuple(new_grid):
    return posemb
  grid = grid.reshape(old_grid[0], old_grid[1], -1)
  if method == 'bilinear':
    # scipy's zoom (order=1, grid_mode=False) maps corners to corners.
    zoom = (new_grid[0] / old_grid[0], new_grid[1] / old_grid[1], 1)
    resized = scipy_ndimage.zoom(grid, zoom, order=1)
  elif method in ('bilinear_half_pixel', 'bicubic'):
    kind = 'bilinear' if method == 'bilinear_half_pixel' else 'cubic'
    resized = np.asarray(jax.image.resize(
        grid, (*new_grid, grid.shape[-1]), kind, antialias=False))
  else:
    raise ValueError(f"posemb resampling method {method!r}: use 'bilinear' (default, "
                     "as published), 'bilinear_half_pixel' or 'bicubic'")
  if resized.shape[:2] != tuple(new_grid):
    raise AssertionError(f'zoom produced {resized.shape[:2]}, expected {new_grid}')
  resized = resized.reshape(1, new_grid[0] * new_grid[1], -1).astype(posemb.dtype)
  return np.concatenate([prefix, resized], axis=1)


# The one rule for the token grid a checkpoint's learned position embedding was
# trained on: fit.load_pretrained (fine-tuning, build.initialize) and
# inference.load (predict, analyze) both call `source_grid` / `trained_image_size`.
FIX_SOURCE_SIZE = ('give the resolution it was trained at: source_image_size=(H, W) '
                   'to checkpoints.fit.load_pretrained, config.init_image_size (training, '
                   'square sizes) or --source_image_size=HxW (predict / analyze)')


def source_grid(flat: dict, model: VisionTransformer,
                source_image_size=None) -> tuple[tuple[int, int], str]:
  """(rows, cols) of the grid behind `flat[POSEMB_KEY]`, and how it is known.

  The embedding is (1, prefix + rows * cols, D), prefix 1 when the checkpoint has a
  'cls' param (it must agree with the model's classifier). The stride is the
  checkpoint's (`vit_patch_resize.checkpoint_stride`: its embedding kernel's patch x
  the model's stem), which differs from `model.stride` when the patch is resized. In
  order:
    1. an explicit `source_image_size`: its grid at that stride (it wins; checked
       against the token count);
    2. a square count of grid tokens: side x side (every published ViT / hybrid);
    3. the count of the model's image size at that stride: that grid (a file made for
       this very model shape, loaded unchanged, as before this rule);
    4. anything else (a non-square image size): refused, naming the fix.
  A square count is read as a square grid: a file trained at e.g. 384x96 (24x6 = 12x12
  tokens at stride 16) needs the explicit size.
  """
  prefix = _checkpoint_prefix_tokens(flat, model)
  grid_tokens = np.shape(flat[POSEMB_KEY])[1] - prefix
  stride = vit_patch_resize.checkpoint_stride(flat, model)
  if source_image_size is not None:
    grid = _explicit_grid(source_image_size, stride, grid_tokens)
    return grid, (f'source_image_size {grid[0] * stride}x{grid[1] * stride} given, '
                  f'stride {stride}')
  side = _square_side(grid_tokens)
  if side is not None:
    return (side, side), f'{side}x{side} position-embedding grid x stride {stride}'
  own = (model.image_size[0] // stride, model.image_size[1] // stride)
  if grid_tokens == own[0] * own[1]:
    return own, (f"{grid_tokens} grid tokens: the model's own {own[0]}x{own[1]} grid "
                 f'at stride {stride}')
  raise _non_square_error(grid_tokens, prefix, stride)


def trained_image_size(flat: dict, model: VisionTransformer, source_image_size=None
                       ) -> tuple[tuple[int, int] | None, str]:
  """(H, W) a checkpoint was trained at, by `source_grid`: grid x the checkpoint's
  stride (its patch x the stem: the hybrids' stride includes the ResNet stem). None
  when the checkpoint has no learned position embedding: then nothing in it depends
  on the resolution."""
  if POSEMB_KEY not in flat:
    return None, 'no learned position embedding in the checkpoint'
  grid, how = source_grid(flat, model, source_image_size)
  stride = vit_patch_resize.checkpoint_stride(flat, model)
  return (grid[0] * stride, grid[1] * stride), how


def _checkpoint_prefix_tokens(flat: dict, model: VisionTransformer) -> int:
  """1 when the checkpoint has a class token ('cls'), else 0. Its position-embedding
  slot is kept as is, so the model must have one too (classifier='token')."""
  in_file, in_model = int('cls' in flat), int(model.classifier == 'token')
  if in_file != in_model:
    has = "a class token ('cls')" if in_file else "no class token (no 'cls' param)"
    want = 'token' if in_file else 'gap'
    raise ValueError(
        f"the checkpoint has {has} but the model has classifier={model.classifier!r}; "
        f"create the model with classifier='{want}' (in a config: "
        f"model_overrides.classifier='{want}')")
  return in_file


def _square_side(count: int) -> int | None:
  side = math.isqrt(max(count, 0))
  return side if side * side == count else None


def _explicit_grid(size, stride: int, grid_tokens: int) -> tuple[int, int]:
  """The grid of an explicit source size; its token count must be the file's."""
  h, w = registry.as_pair(size, 'source_image_size')
  grid = (h // stride, w // stride)
  if grid[0] * grid[1] != grid_tokens:
    side = _square_side(grid_tokens)
    hint = (f' ({side * stride}, as its {side}x{side} grid says, or leave '
            'source_image_size unset to infer it)' if side else '')
    raise ValueError(
        f'source_image_size {h}x{w} gives a {grid[0]}x{grid[1]} grid '
        f'({grid[0] * grid[1]} tokens at stride {stride}) but the checkpoint\'s '
        f'{POSEMB_KEY} has {grid_tokens} grid tokens; give the size it was trained '
        f'at{hint}')
  return grid


def _grids_with(count: int, max_aspect: int = 4) -> list[tuple[int, int]]:
  """(rows, cols) with rows * cols == count and aspect <= max_aspect, squarest first:
  the layouts a non-square token count could have been trained at."""
  pairs = [(h, count // h) for h in range(1, count + 1) if count % h == 0]
  pairs = [(h, w) for h, w in pairs if max(h, w) <= max_aspect * min(h, w)]
  return sorted(pairs, key=lambda p: abs(p[0] - p[1]))


def _non_square_error(grid_tokens: int, prefix: int, stride: int) -> ValueError:
  """Why a flat token count gives no grid, with the sizes it could be and the fix."""
  low = math.isqrt(grid_tokens)
  sizes = ', '.join(f'{h * stride}x{w * stride}' for h, w in _grids_with(grid_tokens)[:4])
  lines = [
      f'{POSEMB_KEY} has {grid_tokens} grid tokens'
      f'{" (after its class token)" if prefix else ""}: not a square grid, so the '
      'resolution the checkpoint was trained at cannot be read from it (expected '
      f'side^2 tokens; nearest squares {low}x{low} = '
      f'{low * stride} px and {low + 1}x{low + 1} = {(low + 1) * stride} px at stride '
      f'{stride}).',
      f'Non-square sizes with this count: {sizes or "none up to aspect 4"}.']
  other = _square_side(grid_tokens + prefix - (1 - prefix))
  if other is not None:  # is the first token a class token or not?
    lines.append(f"Read {'without' if prefix else 'with'} a class token it would be "
                 f"{other}x{other}: check the file's 'cls' param.")
  lines.append(f'Fix: {FIX_SOURCE_SIZE}.')
  return ValueError(' '.join(lines))


def adapt_pretrained(flat: dict, flat_init: dict, model: VisionTransformer,
                     source_image_size: tuple[int, int] | None = None,
                     method: str = 'bilinear') -> tuple[dict, list[str]]:
  """Resamples the position embedding from the checkpoint's grid to `model.grid`.

  The checkpoint's grid is `source_grid`'s (explicit `source_image_size` // the
  checkpoint's stride, else read from the embedding). `flat` must still hold the
  checkpoint's own `embedding/kernel`: its patch gives that stride, so the family hook
  resamples the position embedding before the kernel. Returns new flat params and
  report lines.
  """
  if POSEMB_KEY not in flat or POSEMB_KEY not in flat_init:
    return flat, []
  old_grid, how = source_grid(flat, model, source_image_size)
  if old_grid == model.grid:
    return flat, []  # a hidden-size mismatch is left for the key matcher to report.
  old = np.asarray(flat[POSEMB_KEY])
  prefix = int(model.classifier == 'token')
  resized = resample_posemb(old, old_grid, model.grid, prefix, method)
  line = (f'resampled {POSEMB_KEY}: {old.shape} -> {resized.shape} (grid '
          f'{old_grid[0]}x{old_grid[1]} -> {model.grid[0]}x{model.grid[1]}, {method}; '
          f'source grid from: {how})')
  return dict(flat, **{POSEMB_KEY: resized}), [line]
