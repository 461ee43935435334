"""Static window geometry of Swin: effective windows, relative-position index, shift
masks, window partition / merge and padding.

Everything here depends only on shapes: the NumPy parts run at trace time from the
static config and are never stored as parameters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_MASK_VALUE = -100.0  # Added to logits of token pairs that were not neighbours.


def stage_window(height: int, width: int, window: int) -> tuple[int, int]:
  """(effective window, shift) for a (height, width) feature map.

  As the official code: where the map is not larger than the window (min side), the
  window shrinks to the map's short side and there is no shift.
  """
  if min(height, width) <= window:
    return min(height, width), 0
  return window, window // 2


def relative_position_index(window: int, table_window: int) -> np.ndarray:
  """(window^2, window^2) int rows of the ((2 * table_window - 1)^2, heads) table.

  Entry [q, k] = (dh + M - 1) * (2M - 1) + (dw + M - 1) with (dh, dw) = query minus key
  position and M = table_window. A window shrunk below the table's window (small
  feature maps) uses the table's central entries, so the parameter shape depends only
  on the configured window, never on the image size.
  """
  rows, cols = np.meshgrid(np.arange(window), np.arange(window), indexing='ij')
  coords = np.stack([rows.ravel(), cols.ravel()])  # (2, N) row-major tokens.
  delta = coords[:, :, None] - coords[:, None, :]  # (2, N, N) query minus key.
  side = 2 * table_window - 1
  return (delta[0] + table_window - 1) * side + (delta[1] + table_window - 1)


def _shift_regions(length: int, window: int, shift: int) -> np.ndarray:
  """Region id (0, 1, 2) of each position along one padded axis after the roll.

  The roll by -shift brings the first `shift` rows to the end; rows in different
  regions were not neighbours before the shift.
  """
  regions = np.zeros(length, np.int64)
  regions[length - window:] = 1
  regions[length - shift:] = 2
  return regions


def shift_attention_mask(height: int, width: int, window: int,
                         shift: int) -> np.ndarray:
  """(num_windows, window^2, window^2) float32: 0 or -100 between token pairs.

  `height`, `width` are the padded map sides (multiples of `window`); windows are in
  row-major order, tokens row-major inside each window.
  """
  labels = (_shift_regions(height, window, shift)[:, None] * 3
            + _shift_regions(width, window, shift)[None, :])  # (height, width)
  labels = labels.reshape(height // window, window, width // window, window)
  labels = labels.transpose(0, 2, 1, 3).reshape(-1, window * window)
  different = labels[:, :, None] != labels[:, None, :]
  return np.where(different, _MASK_VALUE, 0.0).astype(np.float32)


def window_partition(x: jax.Array, window: int) -> jax.Array:
  """(batch, H, W, C) -> (batch, num_windows, window^2, C); H, W multiples of window."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // window, window, w // window, window, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_merge(windows: jax.Array, window: int, height: int,
                 width: int) -> jax.Array:
  """Inverse of `window_partition`: -> (batch, height, width, C)."""
  b, _, _, c = windows.shape
  x = windows.reshape(b, height // window, width // window, window, window, c)
  return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, height, width, c)


def pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
  """Zero-pads (batch, H, W, C) at the bottom / right to multiples of `multiple`."""
  pad_h = -x.shape[1] % multiple
  pad_w = -x.shape[2] % multiple
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))


def stage_windows(image_size: tuple[int, int], patch_size: int, window: int,
                  num_stages: int) -> tuple[int, ...]:
  """The effective window of each stage (`stage_window`) of a Swin at `image_size`.

  For fine-tuning Swin V2: a checkpoint's per-stage windows are the new model's
  `pretrained_window_sizes`, e.g. (12, 12, 12, 6) for 192 px, patch 4, window 12.
  """
  h, w = (side // patch_size for side in image_size)
  out = []
  for _ in range(num_stages):
    out.append(stage_window(h, w, window)[0])
    h, w = -(-h // 2), -(-w // 2)
  return tuple(out)
