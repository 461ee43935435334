"""Swin Transformer V2 (Liu et al., CVPR 2022, arXiv 2111.09883): the V1 model with
the three changes that let a window grow at fine-tuning time (the paper's Sec. 3).

- Scaled cosine attention (Sec. 3.2, Eq. 2): logits = cos(q, k) * exp(logit_scale) with
  a learned per-head `logit_scale` (heads, 1, 1), started at log(10) and clamped at
  log(100) before the exp, as the official `models/swin_transformer_v2.py` does.
- Continuous position bias (Sec. 3.3, Eqs. 3-4): the bias table is not a parameter but
  the output of a small MLP (`cpb_mlp_0`: 2 -> 512, ReLU, `cpb_mlp_2`: 512 -> heads, no
  bias) over log-spaced relative coordinates, squashed to 16 * sigmoid(.). The
  coordinates are in units of the *pretrained* window, so the same MLP serves a larger
  window at fine-tuning.
- Res-post-norm (Sec. 3.1): x + LN(f(x)) instead of x + f(LN(x)); the post-norms start
  at zero (official `_init_respostnorm`).
Also as the official V2: the qkv projection has no bias of its own, `q_bias` and
`v_bias` (C,) are added to q and v (k gets none); patch merging applies `reduction`
first and normalises its 2C output (`norm` is 2C wide, V1's is 4C).

Parameter names follow the official state dict, as V1's do (`attn/logit_scale`,
`attn/q_bias`, `attn/v_bias`, `attn/cpb_mlp_0`, `attn/cpb_mlp_2`). The buffers
(`relative_coords_table`, `relative_position_index`, `attn_mask`) are rebuilt from the
config at trace time, never stored.

Unlike V1 here, V2 does not pad: every stage's window must divide its feature map and
every merged map must have even sides (the official V2 asserts both).
`checks.check_windows` refuses other sizes when the model is made.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import layers
from vit_jax.models.swin import checks
from vit_jax.models.swin import model as v1
from vit_jax.models.swin import windows

_LOGIT_SCALE_INIT = math.log(10.0)  # official: log(10 * ones(heads, 1, 1)).
_LOGIT_SCALE_MAX = math.log(100.0)  # official: clamp(max=log(1 / 0.01)).
_CPB_HIDDEN = 512  # official cpb_mlp: Linear(2, 512), ReLU, Linear(512, heads).
_BIAS_BOUND = 16.0  # the bias is 16 * sigmoid(MLP output), in (0, 16).
_COORD_SPAN = 8.0  # the pretrained window's edge maps to +-8 before the log (Eq. 4).
_NORM_EPSILON = 1e-12  # F.normalize's eps: x / max(||x||, eps).


def log_spaced_coordinates(window: int, pretrained_window: int) -> np.ndarray:
  """((2w - 1)^2, 2) float32 MLP inputs for a window w (Eq. 4).

  Row r is the offset (dh, dw) of the (2w - 1, 2w - 1) row-major grid, the same rows
  `windows.relative_position_index` picks. Each offset is divided by
  (pretrained_window - 1) (by w - 1 when pretrained_window is 0: the window the model
  is trained at), scaled to +-8, then mapped to sign(x) * log2(1 + |x|) / log2(8).
  A window of 1 has the single offset 0 (the official division would give 0 / 0).
  """
  offsets = np.arange(-(window - 1), window, dtype=np.float64)
  dh, dw = np.meshgrid(offsets, offsets, indexing='ij')
  table = np.stack([dh.ravel(), dw.ravel()], axis=-1)
  unit = (pretrained_window if pretrained_window > 0 else window) - 1
  if unit > 0:
    table = table / unit * _COORD_SPAN
  table = np.sign(table) * np.log2(np.abs(table) + 1.0) / np.log2(_COORD_SPAN)
  return table.astype(np.float32)


def _l2_normalize(x: jax.Array) -> jax.Array:
  """x / max(||x||, eps) over the last axis, in float32 (F.normalize)."""
  x = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True))
  return x / jnp.maximum(norm, _NORM_EPSILON)


class WindowAttentionV2(v1.WindowAttention):
  """V1's window attention with cosine logits and the continuous position bias.

  `table_window` (V1's table size) is unused: V2 has no table parameter.
  """

  pretrained_window: int = 0  # 0: coordinates in units of the window itself.

  def _queries_keys_values(self, x):
    """q, k, v (b, windows, N, heads, head_dim); q and k unit-length, q times the
    clamped exp(logit_scale), so q . k is the scaled cosine of Eq. 2."""
    c, dtype = x.shape[-1], self.compute.dtype
    qkv = self.compute.dense(use_bias=False, kernel_init=v1.DENSE_INIT)(
        3 * c, name='qkv')(x)
    q_bias = self.param('q_bias', nn.initializers.zeros, (c,), self.compute.param_dtype)
    v_bias = self.param('v_bias', nn.initializers.zeros, (c,), self.compute.param_dtype)
    qkv = qkv + jnp.concatenate([q_bias, jnp.zeros_like(v_bias), v_bias]).astype(dtype)
    q, k, v = self._split_heads(qkv)
    logit_scale = self.param('logit_scale', nn.initializers.constant(_LOGIT_SCALE_INIT),
                             (self.num_heads, 1, 1), self.compute.param_dtype)
    scale = jnp.exp(jnp.minimum(logit_scale.astype(jnp.float32), _LOGIT_SCALE_MAX))
    q = _l2_normalize(q) * scale.reshape(self.num_heads, 1)  # (..., heads, head_dim)
    return q.astype(dtype), _l2_normalize(k).astype(dtype), v

  def _relative_bias(self, window: int) -> jax.Array:
    """(heads, N, N) float32: 16 * sigmoid(cpb_mlp(coordinates)), gathered by offset.

    The MLP runs in float32 under any compute dtype: it is (2w-1)^2 x 512 x heads
    multiply-adds, nothing next to the attention, and its output is an additive bias.
    """
    coords = jnp.asarray(log_spaced_coordinates(window, self.pretrained_window))
    dense = functools.partial(nn.Dense, dtype=jnp.float32,
                              param_dtype=self.compute.param_dtype,
                              kernel_init=v1.DENSE_INIT)
    hidden = nn.relu(dense(_CPB_HIDDEN, name='cpb_mlp_0')(coords))
    table = dense(self.num_heads, use_bias=False, name='cpb_mlp_2')(hidden)
    index = windows.relative_position_index(window, window)  # (N, N) static.
    bias = jnp.transpose(table[index], (2, 0, 1))
    return _BIAS_BOUND * jax.nn.sigmoid(bias)


class SwinV2Block(v1.SwinBlock):
  """x + DropPath(LN(W-MSA or SW-MSA(x))); x + DropPath(LN(MLP(x))). x: (b, H, W, C)."""

  pretrained_window: int = dataclasses.field(default=0, kw_only=True)

  @nn.compact
  def __call__(self, x, train: bool):
    mlp = layers.Mlp(int(x.shape[-1] * self.mlp_ratio), self.dropout_rate,
                     kernel_init=v1.DENSE_INIT, compute=self.compute, name='mlp')
    return self.post_norm_residuals(
        x, [('norm1', functools.partial(self._windowed_attention, train=train)),
            ('norm2', functools.partial(mlp, deterministic=not train))],
        epsilon=v1.LN_EPSILON, deterministic=not train)

  def _attention(self) -> nn.Module:
    return WindowAttentionV2(self.num_heads, self.window_size,
                             self.attention_dropout_rate, self.dropout_rate,
                             self.compute, pretrained_window=self.pretrained_window,
                             name='attn')


class PatchMergingV2(v1.PatchMerging):
  """2x2 neighbours -> 4C, Dense 4C -> 2C without bias, then LayerNorm of the 2C."""

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    x = self.compute.dense(use_bias=False, kernel_init=v1.DENSE_INIT)(
        2 * c, name='reduction')(v1.merge_neighbours(x))
    return self.compute.layer_norm(v1.LN_EPSILON)(name='norm')(x)


class SwinTransformerV2(v1.SwinTransformer):
  """Swin V2 classifier. images (batch, H, W, 3) -> logits (batch, num_classes).

  pretrained_window_sizes: per stage, the window that stage had in pretraining (the
  official PRETRAINED_WINDOW_SIZES, e.g. (12, 12, 12, 6) for 192 px / window 12); ()
  or 0: the stage's own window. `windows.stage_windows` gives a source's values.
  """

  image_size: tuple[int, int] = (256, 256)
  window_size: int = 8
  pretrained_window_sizes: tuple[int, ...] = ()

  def __post_init__(self):
    sizes = self.pretrained_window_sizes
    object.__setattr__(self, 'pretrained_window_sizes',
                       tuple(int(s) for s in sizes) or (0,) * len(self.depths))
    super().__post_init__()
    checks.check_pretrained_windows(self)
    checks.check_windows(self, self.image_size, 'image_size')

  def _check_images(self, images) -> None:
    super()._check_images(images)
    checks.check_windows(self, images.shape[1:3], 'input images of size')

  def _stage_fields(self, stage: int) -> dict:
    return dict(block_class=SwinV2Block, merge_class=PatchMergingV2,
                block_fields=flax.core.FrozenDict(
                    pretrained_window=self.pretrained_window_sizes[stage]))
