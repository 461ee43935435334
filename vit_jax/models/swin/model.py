"""Swin Transformer (Liu et al. 2021): hierarchical attention in shifted local windows.

Parameter names mirror the official PyTorch module names in Flax convention, so a
converted official / timm state dict (`swin_weights.py`) is our tree with no renaming:
`patch_embed/{proj,norm}`, `layers_{i}/blocks_{j}/{norm1, attn/qkv, attn/proj,
attn/relative_position_bias_table, norm2, mlp/fc1, mlp/fc2}`,
`layers_{i}/downsample/{norm,reduction}` (the merge that ends stage i), `norm`, `head`.

Feature maps are kept as (batch, height, width, channels) throughout. The geometry
that depends only on shapes is in windows.py.

Maps that are not a multiple of the window are zero-padded at the bottom/right after
`norm1` and before the cyclic shift, as the official detection code does; padded tokens
are not masked (only the shift mask applies), also as there.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import compute as compute_lib
from vit_jax.models import layers
from vit_jax.models import registry
from vit_jax.models.compute import Compute, Dtype
from vit_jax.models.swin import checks
from vit_jax.models.swin import windows

LN_EPSILON = 1e-5  # PyTorch LayerNorm default, which the published weights used.
DENSE_INIT = nn.initializers.truncated_normal(stddev=0.02)  # as the official init.


class WindowAttention(nn.Module):
  """Multi-head self-attention inside each window, plus relative position bias.

  Input (batch, num_windows, N, C) with N = window^2 tokens; `mask`, if given, is
  (num_windows, N, N) and is added to the logits of every head. The attention runs in
  `compute.attention_chunks` batch chunks (models/attention_chunks.py).
  """

  num_heads: int
  table_window: int  # configured window M: the bias table is ((2M-1)^2, heads).
  attention_dropout_rate: float = 0.0
  dropout_rate: float = 0.0
  compute: Compute = Compute()

  @nn.compact
  def __call__(self, x, window: int, mask, *, train: bool):
    b, nw, n, c = x.shape
    q, k, v = self._queries_keys_values(x)
    attend = functools.partial(self._attend, bias=self._relative_bias(window),
                               mask=mask, train=train)
    # One sown map per block: not chunked while the weights are sown.
    y = self.compute.attend(attend, self.is_mutable_collection('intermediates'), q, k, v)
    y = self.compute.dense(kernel_init=DENSE_INIT)(c, name='proj')(
        y.reshape(b, nw, n, c))
    return nn.Dropout(self.dropout_rate)(y, deterministic=not train)

  def _split_heads(self, qkv):
    """(b, windows, N, 3C) -> q, k, v (b, windows, N, heads, head_dim); the output
    axis is ordered (3, heads, head_dim), as the official reshape."""
    b, nw, n, c3 = qkv.shape
    qkv = qkv.reshape(b, nw, n, 3, self.num_heads, c3 // (3 * self.num_heads))
    return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]

  def _queries_keys_values(self, x):
    """q scaled by head_dim^-0.5, so the logits are q . k (the paper's Eq. 4)."""
    qkv = self.compute.dense(kernel_init=DENSE_INIT)(3 * x.shape[-1], name='qkv')(x)
    q, k, v = self._split_heads(qkv)
    return q * jnp.asarray(q.shape[-1]**-0.5, q.dtype), k, v

  def _attend(self, q, k, v, *, bias, mask, train: bool):
    """q, k, v (b, windows, N, heads, head_dim) -> (b, windows, N, heads, head_dim)."""
    logits = self.compute.einsum('bwqhd,bwkhd->bwhqk', q, k)  # (b, windows, heads, N, N)
    logits = logits.astype(jnp.float32) + bias[None, None]
    if mask is not None:
      logits = logits + jnp.asarray(mask)[None, :, None]
    # Softmax statistics in float32 even under bf16 compute.
    weights = jax.nn.softmax(logits, axis=-1)
    self.sow('intermediates', 'attention_weights', weights)  # (b, windows, heads, N, N)
    weights = nn.Dropout(self.attention_dropout_rate)(weights, deterministic=not train)
    return self.compute.einsum('bwhqk,bwkhd->bwqhd', weights.astype(v.dtype), v)

  def _relative_bias(self, window: int) -> jax.Array:
    """(heads, N, N) float32 bias gathered from the learned table."""
    side = 2 * self.table_window - 1
    table = self.param('relative_position_bias_table', DENSE_INIT,
                       (side * side, self.num_heads), self.compute.param_dtype)
    index = windows.relative_position_index(window, self.table_window)  # (N, N) static.
    return jnp.transpose(table[index], (2, 0, 1)).astype(jnp.float32)


class SwinBlock(layers.PreNormBlock):
  """x + DropPath(W-MSA or SW-MSA(LN(x))); x + DropPath(MLP(LN(x))). x: (b, H, W, C)."""

  num_heads: int
  window_size: int
  shifted: bool  # odd blocks of a stage use shifted windows.
  mlp_ratio: float = 4.0

  @nn.compact
  def __call__(self, x, train: bool):
    # Dense(hidden) -> exact GELU -> dropout -> Dense(C) -> dropout.
    mlp = layers.Mlp(int(x.shape[-1] * self.mlp_ratio), self.dropout_rate,
                     kernel_init=DENSE_INIT, compute=self.compute, name='mlp')
    return self.residuals(
        x, [('norm1', functools.partial(self._windowed_attention, train=train)),
            ('norm2', functools.partial(mlp, deterministic=not train))],
        epsilon=LN_EPSILON, deterministic=not train)

  def _attention(self) -> nn.Module:
    return WindowAttention(self.num_heads, self.window_size, self.attention_dropout_rate,
                           self.dropout_rate, self.compute, name='attn')

  def _windowed_attention(self, x, train: bool):
    _, height, width, _ = x.shape
    window, shift = windows.stage_window(height, width, self.window_size)
    shift = shift if self.shifted else 0
    x = windows.pad_to_multiple(x, window)  # (b, Hp, Wp, C)
    _, hp, wp, _ = x.shape
    mask = windows.shift_attention_mask(hp, wp, window, shift) if shift else None
    if shift:
      x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
    y = self._attention()(windows.window_partition(x, window), window, mask,
                          train=train)
    y = windows.window_merge(y, window, hp, wp)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    return y[:, :height, :width]


class PatchMerging(nn.Module):
  """2x2 neighbours -> channels (4C), LayerNorm, Dense 4C -> 2C without bias.

  Odd sides are zero-padded at the bottom / right first (as the official code).
  """

  compute: Compute = Compute()

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = self.compute.layer_norm(LN_EPSILON)(name='norm')(merge_neighbours(x))
    return self.compute.dense(use_bias=False, kernel_init=DENSE_INIT)(
        2 * c, name='reduction')(x)


def merge_neighbours(x: jax.Array) -> jax.Array:
  """(b, H, W, C) -> (b, ceil(H/2), ceil(W/2), 4C), odd sides zero-padded first.

  Official channel order: x0 = [0::2, 0::2], x1 = [1::2, 0::2], x2 = [0::2, 1::2],
  x3 = [1::2, 1::2]; the converted `reduction` kernels (V1 and V2) expect this order.
  """
  x = windows.pad_to_multiple(x, 2)
  return jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2],
                          x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)


class SwinStage(nn.Module):
  """`depth` blocks alternating regular / shifted windows, then an optional merge."""

  depth: int
  num_heads: int
  window_size: int
  drop_path_rates: tuple[float, ...]  # one per block.
  downsample: bool
  mlp_ratio: float = 4.0
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  compute: Compute = Compute()
  # The block and merge of the Swin version (V2: swin/v2.py), and the block fields
  # beyond V1's (V2: the pretrained window).
  block_class: type = SwinBlock
  merge_class: type = PatchMerging
  block_fields: Mapping[str, Any] = flax.core.FrozenDict()

  @nn.compact
  def __call__(self, x, *, train: bool):
    block_cls = self.compute.block(self.block_class, static_argnums=(2,))  # `train`
    for j in range(self.depth):
      x = block_cls(self.num_heads, self.window_size, j % 2 == 1, self.mlp_ratio,
                    dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate,
                    drop_path_rate=self.drop_path_rates[j], compute=self.compute,
                    **self.block_fields, name=f'blocks_{j}')(x, train)
    if self.downsample:
      x = self.merge_class(self.compute, name='downsample')(x)
    return x


class PatchEmbed(nn.Module):
  """Non-overlapping patch x patch conv (stride = patch), then LayerNorm."""

  embed_dim: int
  patch_size: int
  compute: Compute = Compute()

  @nn.compact
  def __call__(self, images):
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding='VALID',
                dtype=self.compute.dtype, param_dtype=self.compute.param_dtype,
                name='proj')(images)
    return self.compute.layer_norm(LN_EPSILON)(name='norm')(x)


class SwinTransformer(nn.Module):
  """Swin classifier. images (batch, H, W, 3) -> logits (batch, num_classes).

  With the 'intermediates' collection mutable it also sows `pre_logits` (batch, C_last)
  and every block's `attention_weights` (batch, windows, heads, N, N).
  """

  num_classes: int
  image_size: tuple[int, int] = (224, 224)
  patch_size: int = 4
  embed_dim: int = 96  # channels of stage 0; stage i has embed_dim * 2^i.
  depths: tuple[int, ...] = (2, 2, 6, 2)
  num_heads: tuple[int, ...] = (3, 6, 12, 24)
  window_size: int = 7
  mlp_ratio: float = 4.0
  stochastic_depth: float = 0.0  # last block's drop-path rate (timm: drop_path_rate).
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  ape: bool = False  # learned absolute position embedding after the patch embedding.
  head_bias_init: float = 0.0
  # How it runs (same parameters, same math): the fields of compute.Compute that
  # apply to Swin, collected by the `compute` property for the stages. matmul_dtype:
  # the stages' matmul inputs; the patch embedding and head stay in `dtype`.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None
  attention_chunks: Optional[int] = None
  remat: bool = False
  remat_policy: str = 'nothing_saveable'

  def __post_init__(self):
    object.__setattr__(self, 'image_size',
                       registry.as_pair(self.image_size, 'image_size'))
    object.__setattr__(self, 'depths', tuple(self.depths))
    object.__setattr__(self, 'num_heads', tuple(self.num_heads))
    checks.check_config(self)
    super().__post_init__()

  compute = compute_lib.FIELDS  # Compute.of(self): the fields above, for the stages.

  @property
  def grid(self) -> tuple[int, int]:
    """Patch grid (rows, cols) at `image_size`."""
    return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

  @nn.compact
  def __call__(self, images, *, train: bool, patch_keep=None):
    """patch_keep: None, or int (batch, K) / (K,) indices of the row-major patch grid
    to keep. Windows need the full grid, so the other patches are masked, not removed:
    their embeddings are zeroed after patch_embed (and ape). They still take part in
    attention and pooling as zero inputs. For the patch-drop analysis."""
    self._check_images(images)
    compute = self.compute
    x = PatchEmbed(self.embed_dim, self.patch_size, compute,
                   name='patch_embed')(images.astype(self.dtype))  # (b, H/p, W/p, C)
    if self.ape:
      x = x + self._absolute_position_embedding(x.shape[1:])
    if patch_keep is not None:
      x = x * patch_mask(patch_keep, x.shape[:3]).astype(x.dtype)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    rates = drop_path_rates(self.stochastic_depth, self.depths)
    for i, depth in enumerate(self.depths):
      x = SwinStage(depth, self.num_heads[i], self.window_size, rates[i],
                    i < len(self.depths) - 1, self.mlp_ratio, self.dropout_rate,
                    self.attention_dropout_rate, compute, **self._stage_fields(i),
                    name=f'layers_{i}')(x, train=train)
    x = compute.layer_norm(LN_EPSILON)(name='norm')(x)
    x = jnp.mean(x, axis=(1, 2))  # global average pool: (batch, C_last)
    self.sow('intermediates', 'pre_logits', x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.constant(self.head_bias_init),
                    name='head')(x)

  def _check_images(self, images) -> None:
    checks.check_input(self, images)

  def _stage_fields(self, stage: int) -> dict:
    """SwinStage fields that differ between Swin versions (V1: none)."""
    del stage
    return {}

  def _absolute_position_embedding(self, grid_shape):
    h, w, c = grid_shape
    # Official layout (1, tokens, C), tokens row-major over the patch grid.
    embedding = self.param('absolute_pos_embed', DENSE_INIT, (1, h * w, c),
                           self.param_dtype)
    return embedding.reshape(1, h, w, c).astype(self.dtype)


def patch_mask(patch_keep, shape: tuple[int, int, int]) -> jax.Array:
  """(batch, H, W, 1) float32: 1 at the kept patches, int (batch, K) or (K,) indices
  into the row-major (H, W) grid, 0 elsewhere."""
  batch, h, w = shape
  keep = layers.patch_keep_indices(patch_keep, batch, h * w)
  mask = jnp.zeros((batch, h * w), jnp.float32)
  mask = mask.at[jnp.arange(batch)[:, None], keep].set(1.0)
  return mask.reshape(batch, h, w, 1)


def drop_path_rates(maximum: float, depths: tuple[int, ...]) -> list[tuple[float, ...]]:
  """Per-stage tuples of drop-path rates rising linearly 0 -> maximum over all blocks."""
  rates = np.linspace(0.0, maximum, sum(depths)).tolist()
  starts = np.cumsum((0,) + tuple(depths))
  return [tuple(rates[starts[i]:starts[i + 1]]) for i in range(len(depths))]
