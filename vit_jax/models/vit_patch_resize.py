"""Patch-size resampling of the ViT / hybrid patch embedding (FlexiViT, Beyer et al.
2023, "FlexiViT: One Model for All Patch Sizes", §3.4 "pseudo-inverse resize").

A token is <w, x>: the embedding kernel w (p, p) against a patch x (p, p), per input
channel and output feature. Running at patch p' means the model sees x' = B x, with B
the bilinear resize matrix (p'^2, p^2). PI-resize picks w' with <w', B x> = <w, x> for
every x, i.e. B^T w' = w, solved as w' = pinv(B^T) w: exact when growing (p' >= p,
B^T has full row rank), the least-squares solution when shrinking (fewer unknowns
than equations). 'bilinear' is the plain resize of w as an image, w' = B w (the
paper's baseline, which changes the tokens' scale and mixes their frequencies).

B is this module's own NumPy matrix (`resize_matrix`): half-pixel centres, edge
samples clamped, no antialiasing: the same numbers as
`jax.image.resize(x, (p', p'), 'bilinear', antialias=False)` (tests/test_patch_resize.py
checks it against jax column by column).
"""
from __future__ import annotations

import numpy as np

from vit_jax.models import registry

KERNEL_KEY = 'embedding/kernel'
METHODS = {'pi': 'pseudo-inverse resize, FlexiViT §3.4',
           'bilinear': 'bilinear resize of the kernel, FlexiViT §3.4 baseline'}


def bilinear_matrix_1d(old: int, new: int) -> np.ndarray:
  """(new, old) float64: 1-D linear interpolation, output pixel i at input coordinate
  (i + 0.5) * old / new - 0.5 (half-pixel centres), taps clamped to [0, old - 1]."""
  source = (np.arange(new) + 0.5) * (old / new) - 0.5
  left = np.floor(source).astype(np.int64)
  frac = source - left
  matrix = np.zeros((new, old))
  rows = np.arange(new)
  np.add.at(matrix, (rows, np.clip(left, 0, old - 1)), 1.0 - frac)
  np.add.at(matrix, (rows, np.clip(left + 1, 0, old - 1)), frac)
  return matrix


def resize_matrix(old: int, new: int) -> np.ndarray:
  """B (new^2, old^2) float64: bilinear resize of a row-major flattened (old, old)
  patch to (new, new). Separable: Y = R X R^T, so vec(Y) = (R kron R) vec(X)."""
  for name, size in (('old', old), ('new', new)):
    if not isinstance(size, (int, np.integer)) or size < 1:
      raise ValueError(f'resize_matrix: {name} patch size {size!r} is not a positive '
                       'int; give the side of a square patch, e.g. 16')
  one_d = bilinear_matrix_1d(int(old), int(new))
  return np.kron(one_d, one_d)


def new_patch_side(kernel_shape: tuple[int, ...], new_patch) -> tuple[int, int]:
  """(old side, new side) of a square (p, p, C_in, D) kernel and a square new patch;
  ValueError naming the shape or size and the fix otherwise."""
  if len(kernel_shape) != 4 or kernel_shape[0] != kernel_shape[1]:
    raise ValueError(f'patch embedding kernel of shape {tuple(kernel_shape)} is not a '
                     'square (p, p, C_in, D) Flax HWIO kernel; give the '
                     f'{KERNEL_KEY} of a ViT / hybrid checkpoint')
  try:
    new_h, new_w = registry.as_pair(new_patch, 'new patch size')
  except (TypeError, ValueError):
    raise ValueError(f'new patch size {new_patch!r} is not an int or (h, w); give '
                     'e.g. 8 or (8, 8)') from None
  if min(new_h, new_w) < 1:
    raise ValueError(f'new patch size {new_patch!r} is not positive; give p >= 1, '
                     'e.g. 8')
  if new_h != new_w:
    raise ValueError(f'new patch size {(new_h, new_w)} must be square (the ViT '
                     f'patches are); give ({new_h}, {new_h}) or ({new_w}, {new_w})')
  return int(kernel_shape[0]), new_h


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f'patch resize method {method!r}: use one of {sorted(METHODS)} '
                     "('pi': FlexiViT's pseudo-inverse resize)")


def resample_patch_embedding(kernel, new_patch, method: str = 'pi') -> np.ndarray:
  """(p, p, C_in, D) patch-embedding kernel -> (p', p', C_in, D), p' = new_patch.

  method: 'pi' (pseudo-inverse resize: <w', B x> = <w, x>, see the module docstring)
  or 'bilinear' (w' = B w). Computed in float64, returned in the kernel's dtype. The
  same size returns `kernel` itself, unchanged.
  """
  check_method(method)
  old, new = new_patch_side(np.shape(kernel), new_patch)
  if old == new:
    return kernel
  kernel = np.asarray(kernel)
  _, _, c_in, dim = kernel.shape
  b = resize_matrix(old, new)  # (new^2, old^2)
  w = kernel.reshape(old * old, c_in * dim).astype(np.float64)  # one column per (c, d)
  if method == 'pi':
    resized = np.linalg.pinv(b.T) @ w  # (new^2, old^2) @ (old^2, C_in * D)
  else:
    resized = b @ w
  return resized.reshape(new, new, c_in, dim).astype(kernel.dtype)


def adapt_patch_embedding(flat: dict, flat_init: dict, method: str = 'pi'
                          ) -> tuple[dict, list[str]]:
  """Checkpoint params with `embedding/kernel` resized to the model's patch, when the
  spatial sizes differ and the rest of the shape (C_in, D) matches; other mismatches
  are left for the key matcher to report. Returns (flat, report lines)."""
  check_method(method)  # also when nothing is resized: a typo fails every time.
  if KERNEL_KEY not in flat or KERNEL_KEY not in flat_init:
    return flat, []
  old_shape = tuple(np.shape(flat[KERNEL_KEY]))
  new_shape = tuple(flat_init[KERNEL_KEY].shape)
  if len(old_shape) != 4 or old_shape == new_shape or old_shape[2:] != new_shape[2:]:
    return flat, []
  resized = resample_patch_embedding(flat[KERNEL_KEY], new_shape[:2], method)
  line = (f'resampled {KERNEL_KEY} {old_shape} -> {tuple(resized.shape)} (patch '
          f'{old_shape[0]} -> {new_shape[0]}, {METHODS[method]})')
  return dict(flat, **{KERNEL_KEY: resized}), [line]


def checkpoint_stride(flat: dict, model) -> int:
  """Input pixels per token side of the checkpoint: the model's stem stride times the
  spatial size of the checkpoint's `embedding/kernel` (the model's own stride when
  the checkpoint has none or a non-square one)."""
  shape = np.shape(flat[KERNEL_KEY]) if KERNEL_KEY in flat else ()
  if len(shape) != 4 or shape[0] != shape[1]:
    return model.stride
  stem = model.stride // model.patch_size[0]
  return stem * int(shape[0])
