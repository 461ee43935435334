"""Position-embedding similarity (ViT Fig. 7 centre) and patch-filter PCA (Fig. 7 left)."""
from __future__ import annotations

import numpy as np


def posemb_similarity(posemb: np.ndarray, grid: tuple[int, int],
                      num_prefix_tokens: int = 1) -> np.ndarray:
  """Cosine similarity of each grid position's embedding with all others.

  posemb: (1, prefix + h * w, D). Returns (h, w, h, w): [i, j] is the map of
  position (i, j)'s similarity to every position, as drawn in the paper's grid.
  """
  grid_part = np.asarray(posemb, np.float64)[0, num_prefix_tokens:]
  if grid_part.shape[0] != grid[0] * grid[1]:
    raise ValueError(f'posemb has {grid_part.shape[0]} grid tokens, grid {grid} needs '
                     f'{grid[0] * grid[1]}')
  unit = grid_part / np.linalg.norm(grid_part, axis=-1, keepdims=True)
  return (unit @ unit.T).reshape(*grid, *grid)


def filter_principal_components(kernel: np.ndarray, count: int = 28):
  """Principal components of the patch-embedding filters, as RGB patches.

  kernel: (p, p, 3, D), one filter per output channel. The D filters are the samples
  (each a p*p*3 vector); returns (components (count, p, p, 3), explained variance
  ratio (count,)).
  """
  p, q, c, d = kernel.shape
  filters = np.asarray(kernel, np.float64).reshape(p * q * c, d).T  # (D, p*p*3)
  centred = filters - filters.mean(axis=0, keepdims=True)
  _, singular, components = np.linalg.svd(centred, full_matrices=False)
  count = min(count, components.shape[0])
  variance = singular**2
  return (components[:count].reshape(count, p, q, c),
          variance[:count] / variance.sum())
