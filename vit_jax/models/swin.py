"""Swin Transformer (Liu et al. 2021): hierarchical attention in shifted local windows.

Parameter names mirror the official PyTorch module names in Flax convention, so a
converted official / timm state dict (`swin_weights.py`) is our tree with no renaming:
`patch_embed/{proj,norm}`, `layers_{i}/blocks_{j}/{norm1, attn/qkv, attn/proj,
attn/relative_position_bias_table, norm2, mlp/fc1, mlp/fc2}`,
`layers_{i}/downsample/{norm,reduction}` (the merge that ends stage i), `norm`, `head`.

Feature maps are kept as (batch, height, width, channels) throughout. Everything that
depends only on shapes (relative-position index, shift masks, padding) is computed in
NumPy at trace time from the static config and never stored as a parameter.

Maps that are not a multiple of the window are zero-padded at the bottom/right after
`norm1` and before the cyclic shift, as the official detection code does; padded tokens
are not masked (only the shift mask applies), also as there.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import attention_chunks as chunks_lib
from vit_jax.models import matmul
from vit_jax.models import registry
from vit_jax.models import remat as remat_lib

Dtype = Any
_LN_EPSILON = 1e-5  # PyTorch LayerNorm default, which the published weights used.
_MASK_VALUE = -100.0  # Added to logits of token pairs that were not neighbours.
_dense_init = nn.initializers.truncated_normal(stddev=0.02)  # as the official init.


# ----------------------------------------------------------------------------------
# Static geometry (NumPy, from shapes only).
# ----------------------------------------------------------------------------------


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


def _pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
  """Zero-pads (batch, H, W, C) at the bottom / right to multiples of `multiple`."""
  pad_h = -x.shape[1] % multiple
  pad_w = -x.shape[2] % multiple
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))


# ----------------------------------------------------------------------------------
# Layers.
# ----------------------------------------------------------------------------------


class WindowAttention(nn.Module):
  """Multi-head self-attention inside each window, plus relative position bias.

  Input (batch, num_windows, N, C) with N = window^2 tokens; `mask`, if given, is
  (num_windows, N, N) and is added to the logits of every head. `attention_chunks`:
  see models/attention_chunks.py.
  """

  num_heads: int
  table_window: int  # configured window M: the bias table is ((2M-1)^2, heads).
  attention_dropout_rate: float = 0.0
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Dtype | None = None  # see SwinTransformer.matmul_dtype.
  attention_chunks: int | None = None  # see SwinTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, window: int, mask, *, train: bool):
    b, nw, n, c = x.shape
    head_dim = c // self.num_heads
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                              dot_general=matmul.dot_general(self.matmul_dtype),
                              kernel_init=_dense_init)
    # The qkv output axis is ordered (3, heads, head_dim), as the official reshape.
    qkv = dense(3 * c, name='qkv')(x).reshape(b, nw, n, 3, self.num_heads, head_dim)
    q, k, v = qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]
    q = q * jnp.asarray(head_dim**-0.5, q.dtype)
    attend = functools.partial(self._attend, bias=self._relative_bias(window),
                               mask=mask, train=train)
    sowing = self.is_mutable_collection('intermediates')  # one sown map per block.
    y = chunks_lib.over_batch(attend, 1 if sowing else self.attention_chunks, q, k, v)
    y = dense(c, name='proj')(y.reshape(b, nw, n, c))
    return nn.Dropout(self.dropout_rate)(y, deterministic=not train)

  def _attend(self, q, k, v, *, bias, mask, train: bool):
    """q, k, v (b, windows, N, heads, head_dim) -> (b, windows, N, heads, head_dim)."""
    logits = matmul.einsum('bwqhd,bwkhd->bwhqk', q, k,
                           self.matmul_dtype)  # (b, windows, heads, N, N)
    logits = logits.astype(jnp.float32) + bias[None, None]
    if mask is not None:
      logits = logits + jnp.asarray(mask)[None, :, None]
    # Softmax statistics in float32 even under bf16 compute.
    weights = jax.nn.softmax(logits, axis=-1)
    self.sow('intermediates', 'attention_weights', weights)  # (b, windows, heads, N, N)
    weights = nn.Dropout(self.attention_dropout_rate)(weights, deterministic=not train)
    return matmul.einsum('bwhqk,bwkhd->bwqhd', weights.astype(v.dtype), v,
                         self.matmul_dtype)

  def _relative_bias(self, window: int) -> jax.Array:
    """(heads, N, N) float32 bias gathered from the learned table."""
    side = 2 * self.table_window - 1
    table = self.param('relative_position_bias_table', _dense_init,
                       (side * side, self.num_heads), self.param_dtype)
    index = relative_position_index(window, self.table_window)  # (N, N) static.
    return jnp.transpose(table[index], (2, 0, 1)).astype(jnp.float32)


class Mlp(nn.Module):
  """Dense(hidden) -> exact GELU -> dropout -> Dense(C) -> dropout."""

  hidden_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Dtype | None = None  # see SwinTransformer.matmul_dtype.

  @nn.compact
  def __call__(self, x, *, train: bool):
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                              dot_general=matmul.dot_general(self.matmul_dtype),
                              kernel_init=_dense_init)
    y = nn.gelu(dense(self.hidden_dim, name='fc1')(x), approximate=False)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=not train)
    y = dense(x.shape[-1], name='fc2')(y)
    return nn.Dropout(self.dropout_rate)(y, deterministic=not train)


class SwinBlock(nn.Module):
  """x + DropPath(W-MSA or SW-MSA(LN(x))); x + DropPath(MLP(LN(x))). x: (b, H, W, C)."""

  num_heads: int
  window_size: int
  shifted: bool  # odd blocks of a stage use shifted windows.
  mlp_ratio: float = 4.0
  drop_path_rate: float = 0.0
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Dtype | None = None  # see SwinTransformer.matmul_dtype.
  attention_chunks: int | None = None  # see SwinTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.LayerNorm, epsilon=_LN_EPSILON, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    # Stochastic depth: drop the whole residual branch per example (batch dim only).
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2, 3))
    y = self._windowed_attention(norm(name='norm1')(x), train)
    x = x + drop_path(y, deterministic=not train)
    y = Mlp(int(x.shape[-1] * self.mlp_ratio), self.dropout_rate, self.dtype,
            self.param_dtype, matmul_dtype=self.matmul_dtype,
            name='mlp')(norm(name='norm2')(x), train=train)
    return x + drop_path(y, deterministic=not train)

  def _windowed_attention(self, x, train: bool):
    _, height, width, _ = x.shape
    window, shift = stage_window(height, width, self.window_size)
    shift = shift if self.shifted else 0
    x = _pad_to_multiple(x, window)  # (b, Hp, Wp, C)
    _, hp, wp, _ = x.shape
    mask = shift_attention_mask(hp, wp, window, shift) if shift else None
    if shift:
      x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
    y = WindowAttention(self.num_heads, self.window_size, self.attention_dropout_rate,
                        self.dropout_rate, self.dtype, self.param_dtype,
                        matmul_dtype=self.matmul_dtype,
                        attention_chunks=self.attention_chunks, name='attn')(
                            window_partition(x, window), window, mask, train=train)
    y = window_merge(y, window, hp, wp)
    if shift:
      y = jnp.roll(y, (shift, shift), axis=(1, 2))
    return y[:, :height, :width]


class PatchMerging(nn.Module):
  """2x2 neighbours -> channels (4C), LayerNorm, Dense 4C -> 2C without bias.

  Odd sides are zero-padded at the bottom / right first (as the official code).
  """

  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Dtype | None = None  # see SwinTransformer.matmul_dtype.

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = _pad_to_multiple(x, 2)
    # Official channel order: x0 = [0::2, 0::2], x1 = [1::2, 0::2], x2 = [0::2, 1::2],
    # x3 = [1::2, 1::2]; the converted `reduction` kernel expects exactly this order.
    x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2],
                         x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
    x = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=self.dtype,
                     param_dtype=self.param_dtype, name='norm')(x)
    return nn.Dense(2 * c, use_bias=False, dtype=self.dtype,
                    param_dtype=self.param_dtype, kernel_init=_dense_init,
                    dot_general=matmul.dot_general(self.matmul_dtype),
                    name='reduction')(x)


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
  remat: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Dtype | None = None  # see SwinTransformer.matmul_dtype.
  remat_policy: str = 'nothing_saveable'  # see SwinTransformer.remat_policy.
  attention_chunks: int | None = None  # see SwinTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, *, train: bool):
    # static_argnums counts `self` as 0: `train` (arg 2) selects the graph.
    block_cls = nn.remat(SwinBlock, static_argnums=(2,),
                         policy=remat_lib.policy(self.remat_policy)) if self.remat \
        else SwinBlock
    for j in range(self.depth):
      x = block_cls(self.num_heads, self.window_size, j % 2 == 1, self.mlp_ratio,
                    self.drop_path_rates[j], self.dropout_rate,
                    self.attention_dropout_rate, self.dtype, self.param_dtype,
                    matmul_dtype=self.matmul_dtype,
                    attention_chunks=self.attention_chunks, name=f'blocks_{j}')(x, train)
    if self.downsample:
      x = PatchMerging(self.dtype, self.param_dtype, matmul_dtype=self.matmul_dtype,
                       name='downsample')(x)
    return x


class PatchEmbed(nn.Module):
  """Non-overlapping patch x patch conv (stride = patch), then LayerNorm."""

  embed_dim: int
  patch_size: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images):
    p = self.patch_size
    x = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding='VALID',
                dtype=self.dtype, param_dtype=self.param_dtype, name='proj')(images)
    return nn.LayerNorm(epsilon=_LN_EPSILON, dtype=self.dtype,
                        param_dtype=self.param_dtype, name='norm')(x)


# ----------------------------------------------------------------------------------
# The model.
# ----------------------------------------------------------------------------------


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
  dtype: Dtype = jnp.float32  # compute dtype of every layer.
  param_dtype: Dtype = jnp.float32
  remat: bool = False  # rematerialise each block in the backward pass.
  head_bias_init: float = 0.0
  # Input dtype of the stages' matmuls (None: `dtype`). bfloat16 with dtype float32:
  # bf16 x bf16 -> float32 matmuls, float32 everywhere else (models/matmul.py; config
  # dtype 'bf16_matmul'). The patch embedding and head stay in `dtype`.
  matmul_dtype: Dtype | None = None
  # What a remat'ed block keeps (models/remat.py); used only with remat=True.
  remat_policy: str = 'nothing_saveable'
  # Window attention in this many independent batch chunks (same math; None: chunks
  # of 2 examples on a multi-core CPU, so XLA keeps every core busy, else 1).
  # models/attention_chunks.py.
  attention_chunks: int | None = None

  def __post_init__(self):
    object.__setattr__(self, 'image_size',
                       registry.as_pair(self.image_size, 'image_size'))
    object.__setattr__(self, 'depths', tuple(self.depths))
    object.__setattr__(self, 'num_heads', tuple(self.num_heads))
    _check_config(self)
    super().__post_init__()

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
    _check_input(self, images)
    x = PatchEmbed(self.embed_dim, self.patch_size, self.dtype, self.param_dtype,
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
                    self.attention_dropout_rate, self.remat, self.dtype,
                    self.param_dtype, matmul_dtype=self.matmul_dtype,
                    remat_policy=self.remat_policy,
                    attention_chunks=self.attention_chunks,
                    name=f'layers_{i}')(x, train=train)
    x = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=self.dtype,
                     param_dtype=self.param_dtype, name='norm')(x)
    x = jnp.mean(x, axis=(1, 2))  # global average pool: (batch, C_last)
    self.sow('intermediates', 'pre_logits', x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.constant(self.head_bias_init),
                    name='head')(x)

  def _absolute_position_embedding(self, grid_shape):
    h, w, c = grid_shape
    # Official layout (1, tokens, C), tokens row-major over the patch grid.
    embedding = self.param('absolute_pos_embed', _dense_init, (1, h * w, c),
                           self.param_dtype)
    return embedding.reshape(1, h, w, c).astype(self.dtype)


def patch_mask(patch_keep, shape: tuple[int, int, int]) -> jax.Array:
  """(batch, H, W, 1) float32: 1 at the kept patches, int (batch, K) or (K,) indices
  into the row-major (H, W) grid, 0 elsewhere."""
  batch, h, w = shape
  keep = jnp.asarray(patch_keep, jnp.int32)
  if keep.ndim == 1:
    keep = jnp.broadcast_to(keep, (batch, keep.shape[0]))
  if keep.ndim != 2 or keep.shape[0] != batch or not 0 < keep.shape[1] <= h * w:
    raise ValueError(f'patch_keep has shape {keep.shape}; expected (batch={batch}, K) '
                     f'or (K,) indices of kept patches with 0 < K <= {h * w}')
  mask = jnp.zeros((batch, h * w), jnp.float32)
  mask = mask.at[jnp.arange(batch)[:, None], keep].set(1.0)
  return mask.reshape(batch, h, w, 1)


def drop_path_rates(maximum: float, depths: tuple[int, ...]) -> list[tuple[float, ...]]:
  """Per-stage tuples of drop-path rates rising linearly 0 -> maximum over all blocks."""
  rates = np.linspace(0.0, maximum, sum(depths)).tolist()
  starts = np.cumsum((0,) + tuple(depths))
  return [tuple(rates[starts[i]:starts[i + 1]]) for i in range(len(depths))]


# ----------------------------------------------------------------------------------
# Validation.
# ----------------------------------------------------------------------------------


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


def _check_config(m: SwinTransformer) -> None:
  """Rejects impossible configs at creation, before anything is traced or compiled."""
  if m.patch_size < 1 or m.window_size < 1:
    raise ValueError(f'patch_size {m.patch_size} and window_size {m.window_size} '
                     'must be positive ints')
  _check_image_size(m.image_size, m.patch_size)
  remat_lib.check_policy(m.remat_policy)
  chunks_lib.check(m.attention_chunks)
  if len(m.depths) != len(m.num_heads) or not m.depths:
    raise ValueError(f'depths {m.depths} and num_heads {m.num_heads} need one entry '
                     'per stage each (same, non-zero length)')
  for i, heads in enumerate(m.num_heads):
    dim = m.embed_dim * 2**i
    if dim % heads:
      raise ValueError(f'stage {i} has {dim} channels (embed_dim {m.embed_dim} x 2^{i}),'
                       f' not divisible by num_heads[{i}] = {heads}')


def _check_input(m: SwinTransformer, images) -> None:
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be (batch, height, width, 3), got {images.shape}')
  h, w = images.shape[1:3]
  _check_image_size((h, w), m.patch_size, what='input images of size')
  if m.ape and (h, w) != m.image_size:
    raise ValueError(
        f'images are {h}x{w} but the absolute position embedding was made for '
        f'image_size {m.image_size}; create the model with image_size=({h}, {w})')


# ----------------------------------------------------------------------------------
# Fine-tuning at a new window: bicubic resize of the relative-position-bias tables.
# ----------------------------------------------------------------------------------

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
# Registered variants.
# ----------------------------------------------------------------------------------

VARIANTS = {
    'Swin-T': dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24)),
    'Swin-S': dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24)),
    'Swin-B': dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'Swin-L': dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48)),
    # Tests: an 8x8 map in stage 0 (window 4: shifted windows + mask), merged to 4x4.
    'Swin-testing': dict(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=4,
                         image_size=(32, 32)),
}


def _factory(defaults: dict):
  def make(num_classes: int, **overrides) -> SwinTransformer:
    if 'drop_path_rate' in overrides:  # timm / official name of the same knob.
      if 'stochastic_depth' in overrides:
        raise ValueError('give stochastic_depth or drop_path_rate, not both')
      overrides['stochastic_depth'] = overrides.pop('drop_path_rate')
    registry.check_overrides(SwinTransformer, overrides)
    return SwinTransformer(num_classes=num_classes, **{**defaults, **overrides})
  return make


def _register_all() -> None:
  for name, defaults in VARIANTS.items():
    registry.register(name, _factory(defaults))


_register_all()
