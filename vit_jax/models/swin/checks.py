"""Swin config checks, run when a model is created (and on each input's size), before
anything is traced or compiled: V1's sizes and stage fields, V2's windows.

`m` is a SwinTransformer or SwinTransformerV2 (model.py, v2.py), read by its fields only.
"""
from __future__ import annotations

from vit_jax.models.compute import Compute
from vit_jax.models.swin import windows


def nearest_sizes(side: int, multiple: int) -> tuple[int, ...]:
  """The nearest positive multiples of `multiple` below and above `side`."""
  lower = side // multiple * multiple
  upper = lower + multiple if lower != side else side + multiple
  return (lower, upper) if lower > 0 else (upper,)


def _check_image_size(image_size: tuple[int, int], patch_size: int,
                      what: str = 'image_size') -> None:
  for axis, side in zip(('height', 'width'), image_size):
    if side <= 0 or side % patch_size:
      options = ' or '.join(str(s) for s in nearest_sizes(max(side, 0), patch_size))
      raise ValueError(
          f'{what} {tuple(image_size)}: {axis} {side} is not a positive multiple of '
          f'the Swin patch size {patch_size}; use {options} for the {axis}')


def check_config(m) -> None:
  """Rejects impossible configs at creation, before anything is traced or compiled."""
  if m.patch_size < 1 or m.window_size < 1:
    raise ValueError(f'patch_size {m.patch_size} and window_size {m.window_size} '
                     'must be positive ints')
  _check_image_size(m.image_size, m.patch_size)
  Compute.of(m)  # checks remat_policy and attention_chunks.
  if len(m.depths) != len(m.num_heads) or not m.depths:
    raise ValueError(f'depths {m.depths} and num_heads {m.num_heads} need one entry '
                     'per stage each (same, non-zero length)')
  for i, heads in enumerate(m.num_heads):
    dim = m.embed_dim * 2**i
    if dim % heads:
      raise ValueError(f'stage {i} has {dim} channels (embed_dim {m.embed_dim} x 2^{i}),'
                       f' not divisible by num_heads[{i}] = {heads}')


def check_input(m, images) -> None:
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be (batch, height, width, 3), got {images.shape}')
  h, w = images.shape[1:3]
  _check_image_size((h, w), m.patch_size, what='input images of size')
  if m.ape and (h, w) != m.image_size:
    raise ValueError(
        f'images are {h}x{w} but the absolute position embedding was made for '
        f'image_size {m.image_size}; create the model with image_size=({h}, {w})')


def check_pretrained_windows(m) -> None:
  sizes = m.pretrained_window_sizes
  if len(sizes) != len(m.depths) or any(s < 0 for s in sizes):
    raise ValueError(
        f'pretrained_window_sizes {sizes}: expected one window >= 0 per stage '
        f'({len(m.depths)} stages), e.g. {(m.window_size,) * len(m.depths)}; '
        '() means each stage\'s own window')


def check_windows(m, image_size, what: str) -> None:
  """Every stage's window divides its map, and merged maps have even sides."""
  h, w = (side // m.patch_size for side in image_size)
  for stage in range(len(m.depths)):
    window, _ = windows.stage_window(h, w, m.window_size)
    if h % window or w % window:
      tile = m.patch_size * 2**stage * window
      raise ValueError(
          f'{what} {tuple(image_size)}: Swin V2 stage {stage} has a {h}x{w} feature map'
          f' (image / patch {m.patch_size} / 2^{stage}), which window {window} does not'
          f' divide (V2 does not pad); use image sides that are multiples of {tile}, '
          f'or a window_size that divides {h if h == w else f"{h} and {w}"}')
    if stage < len(m.depths) - 1 and (h % 2 or w % 2):
      raise ValueError(
          f'{what} {tuple(image_size)}: the {h}x{w} map of stage {stage} cannot be '
          f'merged 2x2 (odd side); use image sides that are multiples of '
          f'{m.patch_size * 2**(len(m.depths) - 1)}')
    h, w = h // 2, w // 2
