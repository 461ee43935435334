"""Pieces both families build on: the transformer MLP, the pre-LN block base and the
`patch_keep` indices."""
from __future__ import annotations

import dataclasses
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models.compute import Compute


class Mlp(nn.Module):
  """Dense(hidden) -> GELU -> dropout -> Dense(input width) -> dropout.

  ViT: tanh-approximated GELU, `Dense_0` / `Dense_1`; Swin: exact GELU, `fc1` / `fc2`
  (each as its published weights were trained and named).
  """

  hidden_dim: int
  dropout_rate: float = 0.0
  approximate_gelu: bool = False
  names: tuple[str, str] = ('fc1', 'fc2')
  kernel_init: Callable = nn.initializers.lecun_normal()
  bias_init: Callable = nn.initializers.zeros
  compute: Compute = Compute()

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    dense = self.compute.dense(kernel_init=self.kernel_init, bias_init=self.bias_init)
    y = dense(self.hidden_dim, name=self.names[0])(x)
    y = nn.gelu(y, approximate=self.approximate_gelu)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    y = dense(x.shape[-1], name=self.names[1])(y)
    return nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)


def patch_keep_indices(patch_keep, batch: int, num_patches: int) -> jax.Array:
  """`patch_keep` as int32 (batch, K) indices into the row-major patch grid.

  patch_keep: (batch, K) or (K,) (the same patches for every image), 0 < K <= the
  number of patches. The one rule for the models' `patch_keep` argument.
  """
  keep = jnp.asarray(patch_keep, jnp.int32)
  if keep.ndim == 1:
    keep = jnp.broadcast_to(keep, (batch, keep.shape[0]))
  if keep.ndim != 2 or keep.shape[0] != batch or not 0 < keep.shape[1] <= num_patches:
    raise ValueError(f'patch_keep has shape {keep.shape}; expected (batch={batch}, K) '
                     f'or (K,) indices of kept patches with 0 < K <= {num_patches}')
  return keep


class PreNormBlock(nn.Module):
  """Base of both families' transformer blocks: their rates and compute settings
  (keyword-only, after each block's own fields) and the pre-LN residual stream."""

  dropout_rate: float = dataclasses.field(default=0.0, kw_only=True)
  attention_dropout_rate: float = dataclasses.field(default=0.0, kw_only=True)
  drop_path_rate: float = dataclasses.field(default=0.0, kw_only=True)
  compute: Compute = dataclasses.field(default=Compute(), kw_only=True)

  def residuals(self, x, branches, *, epsilon: float, deterministic: bool):
    """x + DropPath(f(LN(x))) for each (LayerNorm name, f) of `branches`, in turn.

    Called from the block's compact `__call__`: the modules attach to the block.
    Stochastic depth drops a whole branch per example (the mask broadcasts over
    every axis but the batch).
    """
    norm = self.compute.layer_norm(epsilon)
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=tuple(range(1, x.ndim)))
    for norm_name, branch in branches:
      x = x + drop_path(branch(norm(name=norm_name)(x)), deterministic=deterministic)
    return x

  def post_norm_residuals(self, x, branches, *, epsilon: float, deterministic: bool,
                          norm_init=nn.initializers.zeros):
    """x + DropPath(LN(f(x))) for each (LayerNorm name, f) of `branches`: the
    res-post-norm of Swin V2 (Liu et al. 2022, Sec. 3.1). The norms' scale and bias
    start at `norm_init` (V2: zeros, so every block starts as the identity)."""
    norm = self.compute.layer_norm(epsilon)
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=tuple(range(1, x.ndim)))
    for norm_name, branch in branches:
      y = norm(scale_init=norm_init, bias_init=norm_init, name=norm_name)(branch(x))
      x = x + drop_path(y, deterministic=deterministic)
    return x
