"""Attention rollout (Abnar & Zuidema 2020) and mean attention distance (ViT Fig. 7 right).

Inputs are the per-layer attention weights the model sows into its 'intermediates'
collection: a list over layers of (batch, heads, tokens, tokens) arrays, rows = queries.
"""
from __future__ import annotations

import numpy as np


def attention_rollout(layers: list[np.ndarray]) -> np.ndarray:
  """Joint attention through all layers: (batch, tokens, tokens).

  Per layer: average the heads, add the identity for the residual path, renormalise
  rows to sum to 1; then multiply through the layers (first layer applied first).
  """
  joint = None
  for weights in layers:
    a = np.asarray(weights, np.float64).mean(axis=1)  # (batch, T, T)
    a = a + np.eye(a.shape[-1])[None]
    a = a / a.sum(axis=-1, keepdims=True)
    joint = a if joint is None else a @ joint
  return joint


def class_token_map(matrix: np.ndarray, grid: tuple[int, int],
                    num_prefix_tokens: int = 1) -> np.ndarray:
  """Row of the class token over the patch grid: (batch, T, T) -> (batch, h, w)."""
  row = matrix[:, 0, num_prefix_tokens:]
  return row.reshape(row.shape[0], *grid)


def token_distances(grid: tuple[int, int], patch_pixels: int) -> np.ndarray:
  """Euclidean distance in pixels between patch centres: (h * w, h * w)."""
  rows, cols = np.mgrid[:grid[0], :grid[1]]
  centres = np.stack([rows.ravel(), cols.ravel()], -1) * float(patch_pixels)
  return np.linalg.norm(centres[:, None] - centres[None], axis=-1)


def mean_attention_distance(weights: np.ndarray, grid: tuple[int, int],
                            patch_pixels: int, num_prefix_tokens: int = 1) -> np.ndarray:
  """Mean attention distance per head in pixels, averaged over images and queries.

  weights: (batch, heads, T, T). Only patch-to-patch attention is used (the class
  token has no position); each query's weights over patch keys are renormalised to
  sum to 1 so the value is a distance, not a distance times a mass. Returns (heads,).
  """
  patch = np.asarray(weights, np.float64)[..., num_prefix_tokens:, num_prefix_tokens:]
  patch = patch / patch.sum(axis=-1, keepdims=True)
  per_query = (patch * token_distances(grid, patch_pixels)).sum(axis=-1)
  return per_query.mean(axis=(0, 2))
