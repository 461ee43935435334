"""ResNet stem of the ResNet+ViT hybrids (BiT-style: weight-standardised convs + GroupNorm).

These modules are instantiated inside `VisionTransformer.__call__` so that their
parameters sit at the top level of the tree (`conv_root`, `gn_root`,
`block{s}/unit{u}/...`), exactly as in the published hybrid checkpoints.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

_GN_EPSILON = 1e-6  # GroupNorm eps of the published hybrids.
_WS_EPSILON = 1e-5  # weight-standardisation eps: (w - mean) / (std + eps).
_GN_GROUPS = 32


class StdConv(nn.Conv):
  """Conv whose kernel is standardised over (H, W, in) per output channel, no bias."""

  use_bias: bool = False

  def param(self, name, init_fn, *init_args, **init_kwargs):
    param = super().param(name, init_fn, *init_args, **init_kwargs)
    if name != 'kernel':
      return param
    # kernel (kh, kw, in, out): statistics in float32 whatever the param dtype.
    kernel = param.astype(jnp.float32)
    mean = jnp.mean(kernel, axis=(0, 1, 2), keepdims=True)
    std = jnp.std(kernel, axis=(0, 1, 2), keepdims=True)
    return ((kernel - mean) / (std + _WS_EPSILON)).astype(param.dtype)


def group_norm(name: str, dtype: Any, param_dtype: Any, **kwargs) -> nn.GroupNorm:
  return nn.GroupNorm(num_groups=_GN_GROUPS, epsilon=_GN_EPSILON, dtype=dtype,
                      param_dtype=param_dtype, name=name, **kwargs)


class BottleneckUnit(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 (4x width) bottleneck with pre-activation-free GN."""

  features: int
  strides: tuple[int, int] = (1, 1)
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, s, name: StdConv(f, k, s, dtype=self.dtype,
                                         param_dtype=self.param_dtype, name=name)
    gn = lambda name, **kw: group_norm(name, self.dtype, self.param_dtype, **kw)
    residual = x
    if x.shape[-1] != self.features * 4 or self.strides != (1, 1):
      residual = conv(self.features * 4, (1, 1), self.strides, 'conv_proj')(residual)
      residual = gn('gn_proj')(residual)
    y = nn.relu(gn('gn1')(conv(self.features, (1, 1), (1, 1), 'conv1')(x)))
    y = nn.relu(gn('gn2')(conv(self.features, (3, 3), self.strides, 'conv2')(y)))
    # Zero-init scale: each unit starts as the identity on its residual path.
    y = gn('gn3', scale_init=nn.initializers.zeros)(
        conv(self.features * 4, (1, 1), (1, 1), 'conv3')(y))
    return nn.relu(residual + y)


class ResNetStage(nn.Module):
  """`num_units` bottleneck units named unit1..unitN; the first one strides."""

  num_units: int
  features: int
  first_strides: tuple[int, int]
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    for unit in range(self.num_units):
      strides = self.first_strides if unit == 0 else (1, 1)
      x = BottleneckUnit(self.features, strides, self.dtype, self.param_dtype,
                         name=f'unit{unit + 1}')(x)
    return x


def resnet_stem(x, *, num_layers: tuple[int, ...], width_factor: float, dtype: Any,
                param_dtype: Any):
  """Root (7x7/2 conv, GN, ReLU, 3x3/2 max-pool) then bottleneck stages.

  Must be called inside a compact method: the modules attach to the caller.
  x: (batch, H, W, 3) -> (batch, H / stride, W / stride, C), stride = 4 * 2**(stages-1).
  """
  width = int(64 * width_factor)
  x = StdConv(width, (7, 7), (2, 2), dtype=dtype, param_dtype=param_dtype,
              name='conv_root')(x)
  x = nn.relu(group_norm('gn_root', dtype, param_dtype)(x))
  x = nn.max_pool(x, (3, 3), strides=(2, 2), padding='SAME')
  for stage, units in enumerate(num_layers):
    x = ResNetStage(units, width * 2**stage, (1, 1) if stage == 0 else (2, 2),
                    dtype, param_dtype, name=f'block{stage + 1}')(x)
  return x


def stem_stride(num_layers: tuple[int, ...]) -> int:
  """Total downsampling of `resnet_stem`: root 4, then 2 per stage after the first."""
  return 4 * 2**max(len(num_layers) - 1, 0)
