"""Vision Transformer (Dosovitskiy et al. 2020) and its ResNet hybrids; the variants.

Parameter names are the checkpoint format of the published Google ViT `.npz` files
(the encoder blocks: vit_blocks.py). The family's hooks: vit_family.py.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from vit_jax.models import compute as compute_lib
from vit_jax.models import layers
from vit_jax.models import registry
from vit_jax.models import resnet
from vit_jax.models.compute import Compute, Dtype
from vit_jax.models.vit_blocks import Encoder1DBlock, LN_EPSILON


def keep_tokens(x, patch_keep, num_prefix_tokens: int):
  """(batch, prefix + grid tokens, D) -> (batch, prefix + K, D): the prefix (class)
  tokens and the grid tokens at `patch_keep`, int (batch, K) or (K,) indices into the
  row-major grid. The rest are removed from the sequence (patch-drop analysis)."""
  grid_tokens = x.shape[1] - num_prefix_tokens
  keep = layers.patch_keep_indices(patch_keep, x.shape[0], grid_tokens)
  kept = jnp.take_along_axis(x[:, num_prefix_tokens:], keep[..., None], axis=1)
  return jnp.concatenate([x[:, :num_prefix_tokens], kept], axis=1)


def sincos2d_posemb(grid: tuple[int, int], dim: int, temperature: float = 10_000.):
  """Fixed 2-D sin-cos embedding, (h * w, dim): [sin x, cos x, sin y, cos y] bands."""
  if dim % 4:
    raise ValueError(f'posemb sincos2d needs hidden_size divisible by 4, got {dim}')
  y, x = np.mgrid[:grid[0], :grid[1]]
  omega = 1.0 / temperature**(np.arange(dim // 4) / (dim // 4))
  y = y.reshape(-1)[:, None] * omega[None]
  x = x.reshape(-1)[:, None] * omega[None]
  return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)


class Encoder(nn.Module):
  """Position embedding, dropout, `num_layers` blocks, final LayerNorm."""

  num_layers: int
  mlp_dim: int
  num_heads: int
  grid: tuple[int, int]
  num_prefix_tokens: int  # 1 with a class token, else 0.
  posemb: str = 'learned'
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_depth: float = 0.0
  compute: Compute = Compute()

  @nn.compact
  def __call__(self, x, *, train: bool, patch_keep=None):
    x = x + self._position_embedding(x.shape[1:]).astype(x.dtype)
    if patch_keep is not None:  # after the position embedding: kept tokens keep theirs.
      x = keep_tokens(x, patch_keep, self.num_prefix_tokens)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    block_cls = self.compute.block(Encoder1DBlock, static_argnums=(2,))  # deterministic
    for i in range(self.num_layers):
      # Drop-path rate rises linearly with depth, 0 for the first block.
      rate = self.stochastic_depth * i / max(self.num_layers - 1, 1)
      x = block_cls(self.mlp_dim, self.num_heads, dropout_rate=self.dropout_rate,
                    attention_dropout_rate=self.attention_dropout_rate,
                    drop_path_rate=rate, compute=self.compute,
                    name=f'encoderblock_{i}')(x, not train)
      self.sow('intermediates', 'block_outputs', x)  # (batch, tokens, D)
    return self.compute.layer_norm(LN_EPSILON)(name='encoder_norm')(x)

  def _position_embedding(self, token_shape):
    tokens, dim = token_shape
    if self.posemb == 'learned':
      return PositionEmbedding(self.compute.param_dtype,
                               name='posembed_input')(tokens, dim)
    if self.posemb == 'sincos2d':
      grid_part = sincos2d_posemb(self.grid, dim)
      prefix = np.zeros((self.num_prefix_tokens, dim))  # class token gets none.
      return jnp.asarray(np.concatenate([prefix, grid_part])[None], jnp.float32)
    if self.posemb == 'none':
      return jnp.zeros((1, tokens, dim), jnp.float32)
    raise ValueError(f"posemb {self.posemb!r}: use 'learned', 'sincos2d' or 'none'")


class PositionEmbedding(nn.Module):
  """Learned `pos_embedding` (1, tokens incl. class token, D), init normal(0.02)."""

  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, tokens: int, dim: int):
    return self.param('pos_embedding', nn.initializers.normal(stddev=0.02),
                      (1, tokens, dim), self.param_dtype)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """Hybrid stem: bottleneck units per stage (() = root only) and width multiplier."""
  num_layers: tuple[int, ...]
  width_factor: float = 1.0


class VisionTransformer(nn.Module):
  """ViT / ResNet+ViT classifier. images (batch, H, W, 3) -> logits (batch, classes).

  With the 'intermediates' collection mutable it also sows `pre_logits` (batch, D or
  representation_size), per-block outputs and per-layer attention weights.
  """

  num_classes: int
  patch_size: tuple[int, int]
  hidden_size: int
  num_layers: int
  num_heads: int
  mlp_dim: int
  image_size: tuple[int, int] = (224, 224)
  resnet: Optional[ResNetConfig] = None
  classifier: str = 'token'  # 'token' (class token) | 'gap' (global average pool).
  representation_size: Optional[int] = None  # pre_logits Dense + tanh width.
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  stochastic_depth: float = 0.0  # drop-path rate of the last block.
  posemb: str = 'learned'  # 'learned' | 'sincos2d' | 'none'.
  head_bias_init: float = 0.0
  # How it runs (same parameters, same math): the fields of compute.Compute, collected
  # by the `compute` property for the blocks. matmul_dtype: the encoder blocks' matmul
  # inputs; the patch embedding and head stay in `dtype`.
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None
  attention_impl: str = 'einsum'
  attention_chunks: Optional[int] = None
  fused_qkv: bool = True
  remat: bool = False
  remat_policy: str = 'nothing_saveable'

  def __post_init__(self):
    object.__setattr__(self, 'image_size',
                       registry.as_pair(self.image_size, 'image_size'))
    object.__setattr__(self, 'patch_size',
                       registry.as_pair(self.patch_size, 'patch_size'))
    _check_config(self)
    super().__post_init__()

  compute = compute_lib.FIELDS  # Compute.of(self): the fields above, for the blocks.

  @property
  def stride(self) -> int:
    """Input pixels per token side: stem stride x patch size (a square stride)."""
    stem = resnet.stem_stride(self.resnet.num_layers) if self.resnet else 1
    return stem * self.patch_size[0]

  @property
  def grid(self) -> tuple[int, int]:
    """Token grid (rows, cols) at `image_size`."""
    return self.image_size[0] // self.stride, self.image_size[1] // self.stride

  @nn.compact
  def __call__(self, images, *, train: bool, patch_keep=None):
    """patch_keep: None, or int (batch, K) / (K,) indices of the row-major token grid
    to keep; the other patch tokens are removed after the position embedding (class
    token kept; 'gap' averages the kept tokens). For the patch-drop analysis."""
    _check_input(self, images)
    x = images.astype(self.dtype)
    if self.resnet is not None:
      x = resnet.resnet_stem(x, num_layers=self.resnet.num_layers,
                             width_factor=self.resnet.width_factor,
                             dtype=self.dtype, param_dtype=self.param_dtype)
    x = nn.Conv(self.hidden_size, self.patch_size, strides=self.patch_size,
                padding='VALID', dtype=self.dtype, param_dtype=self.param_dtype,
                name='embedding')(x)
    batch, h, w, dim = x.shape
    x = x.reshape(batch, h * w, dim)  # (batch, tokens, D), row-major grid.
    if self.classifier == 'token':
      cls = self.param('cls', nn.initializers.zeros, (1, 1, dim), self.param_dtype)
      x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (batch, 1, 1)), x], axis=1)
    x = Encoder(self.num_layers, self.mlp_dim, self.num_heads, self.grid,
                int(self.classifier == 'token'), self.posemb, self.dropout_rate,
                self.attention_dropout_rate, self.stochastic_depth, self.compute,
                name='Transformer')(x, train=train, patch_keep=patch_keep)
    x = x[:, 0] if self.classifier == 'token' else jnp.mean(x, axis=1)
    if self.representation_size is not None:
      x = nn.tanh(nn.Dense(self.representation_size, dtype=self.dtype,
                           param_dtype=self.param_dtype, name='pre_logits')(x))
    self.sow('intermediates', 'pre_logits', x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                    kernel_init=nn.initializers.zeros,
                    bias_init=nn.initializers.constant(self.head_bias_init),
                    name='head')(x)


def _check_config(m: VisionTransformer) -> None:
  """Rejects impossible configs at creation, before anything is traced or compiled."""
  if m.classifier not in ('token', 'gap'):
    raise ValueError(f"classifier {m.classifier!r}: use 'token' or 'gap'")
  if m.posemb not in ('learned', 'sincos2d', 'none'):
    raise ValueError(f"posemb {m.posemb!r}: use 'learned', 'sincos2d' or 'none'")
  Compute.of(m)  # checks attention_impl, remat_policy, attention_chunks.
  if m.hidden_size % m.num_heads:
    raise ValueError(f'hidden_size {m.hidden_size} is not divisible by num_heads '
                     f'{m.num_heads}')
  if m.patch_size[0] != m.patch_size[1]:
    raise ValueError(f'patch_size must be square, got {m.patch_size}')
  stride = m.stride
  for side in m.image_size:
    if side % stride or side < stride:
      lower, upper = max(side // stride, 1) * stride, (side // stride + 1) * stride
      raise ValueError(
          f'image size {side} is not divisible by the token stride {stride} '
          f'(stem stride x patch size); use {lower} or {upper}')


def _check_input(m: VisionTransformer, images) -> None:
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f'images must be (batch, height, width, 3), got {images.shape}')
  if tuple(images.shape[1:3]) != m.image_size:
    h, w = images.shape[1:3]
    raise ValueError(
        f'images are {h}x{w} but the model was created for image_size '
        f'{m.image_size}; create it with image_size=({h}, {w})')


# name: (hidden_size, num_layers, num_heads, mlp_dim). One decoder for every variant.
SIZES = {
    'testing': (32, 2, 2, 64),
    'Ti': (192, 12, 3, 768),
    'S': (384, 12, 6, 1536),
    'B': (768, 12, 12, 3072),
    'L': (1024, 24, 16, 4096),
    'H': (1280, 32, 16, 5120),
}


def decode_variant(variant: str) -> dict:
  """'B/16' -> VisionTransformer fields (sizes and patch)."""
  size, patch = variant.split('/')
  hidden, layers, heads, mlp = SIZES[size]
  return dict(hidden_size=hidden, num_layers=layers, num_heads=heads, mlp_dim=mlp,
              patch_size=(int(patch), int(patch)))


def _factory(variant: str, resnet_config: Optional[ResNetConfig] = None,
             **defaults):
  def make(num_classes: int, **overrides) -> VisionTransformer:
    registry.check_overrides(VisionTransformer, overrides)
    fields = dict(decode_variant(variant), resnet=resnet_config, **defaults)
    fields.update(overrides)
    return VisionTransformer(num_classes=num_classes, **fields)
  return make


def _register_all() -> None:
  for variant in ('Ti/16', 'S/16', 'S/32', 'B/32', 'B/16', 'B/8', 'L/32', 'L/16',
                  'H/14'):
    registry.register(f'ViT-{variant}', _factory(variant))
  # R+Ti/16: root only (stride 4), then 8x8 patches: stride 32, a 7x7 grid at 224.
  registry.register('R+ViT-Ti/16', _factory('Ti/8', ResNetConfig(())))
  registry.register('R26+ViT-S/32', _factory('S/1', ResNetConfig((2, 2, 2, 2))))
  registry.register('R26+ViT-B/32', _factory('B/1', ResNetConfig((2, 2, 2, 2))))
  registry.register('R50+ViT-B/16', _factory('B/1', ResNetConfig((3, 4, 9))))
  registry.register('R50+ViT-L/32', _factory('L/1', ResNetConfig((3, 4, 6, 3))))
  # Tiny variants for tests: 32x32 images; the hybrid has two stages (a projection
  # and a strided unit) at half width so GroupNorm's 32 groups still divide channels.
  registry.register('testing', _factory('testing/4', image_size=(32, 32)))
  registry.register('R+ViT-testing', _factory(
      'testing/1', ResNetConfig((1, 1), 0.5), image_size=(32, 32)))


_register_all()
