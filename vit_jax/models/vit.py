"""Vision Transformer (Dosovitskiy et al. 2020) and its ResNet hybrids.

Parameter names are the checkpoint format of the published Google ViT `.npz` files
(current Flax numbering inside each block; `checkpoint.py` maps the older numbering).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.models import attention_chunks as chunks_lib
from vit_jax.models import matmul
from vit_jax.models import registry
from vit_jax.models import remat as remat_lib
from vit_jax.models import resnet

_LN_EPSILON = 1e-6  # LayerNorm eps of the published ViTs.
Dtype = Any


class MlpBlock(nn.Module):
  """Dense -> GELU (tanh approximation, as trained) -> dropout -> Dense -> dropout."""

  mlp_dim: int
  dropout_rate: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None  # see VisionTransformer.matmul_dtype.

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    dense = functools.partial(
        nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
        dot_general=matmul.dot_general(self.matmul_dtype),
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(stddev=1e-6))
    y = nn.gelu(dense(self.mlp_dim, name='Dense_0')(x), approximate=True)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    y = dense(x.shape[-1], name='Dense_1')(y)
    return nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)


class _ProjectionParams(nn.Module):
  """Declares a DenseGeneral-shaped kernel/bias pair without computing anything.

  Lets the attention layer keep the checkpoint's separate `query`/`key`/`value`
  parameters while running them as one fused matmul.
  """

  kernel_shape: tuple[int, ...]
  bias_shape: tuple[int, ...]
  in_axis: tuple[int, ...]  # kernel axes that are fan-in (the rest are fan-out).
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self):
    # xavier_uniform over the flattened (in, out) matrix, as the published models.
    out_axis = tuple(i for i in range(len(self.kernel_shape)) if i not in self.in_axis)
    init = nn.initializers.variance_scaling(
        1.0, 'fan_avg', 'uniform', in_axis=self.in_axis, out_axis=out_axis)
    kernel = self.param('kernel', init, self.kernel_shape, self.param_dtype)
    bias = self.param('bias', nn.initializers.zeros, self.bias_shape, self.param_dtype)
    return kernel, bias


class MultiHeadDotProductAttention(nn.Module):
  """Self-attention with the parameter layout of flax's MultiHeadDotProductAttention.

  Kernels: query/key/value (D, heads, head_dim), out (heads, head_dim, D).
  `fused_qkv` concatenates the three kernels inside the step (one matmul, same params).
  `attention_impl`: 'einsum' (explicit, can sow weights) or 'xla'
  (`jax.nn.dot_product_attention`: cuDNN flash attention on GPU where it applies).
  `attention_chunks`: see models/attention_chunks.py.
  """

  num_heads: int
  dropout_rate: float = 0.0
  fused_qkv: bool = True
  attention_impl: str = 'einsum'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None  # see VisionTransformer.matmul_dtype.
  attention_chunks: Optional[int] = None  # see VisionTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    qkv_params = [_ProjectionParams((dim, self.num_heads, head_dim),
                                    (self.num_heads, head_dim), (0,),
                                    self.param_dtype, name=n)() for n in ('query', 'key', 'value')]
    q, k, v = self._project_qkv(x, qkv_params)  # each (batch, tokens, heads, head_dim)
    y = self._attend(q, k, v, deterministic)
    out_kernel, out_bias = _ProjectionParams((self.num_heads, head_dim, dim), (dim,),
                                             (0, 1), self.param_dtype, name='out')()
    out_kernel, out_bias = (a.astype(self.dtype) for a in (out_kernel, out_bias))
    return self._einsum('bthd,hdo->bto', y, out_kernel) + out_bias

  def _einsum(self, spec, a, b):
    return matmul.einsum(spec, a, b, self.matmul_dtype)

  def _project_qkv(self, x, qkv_params):
    x = x.astype(self.dtype)
    kernels = [kb[0].astype(self.dtype) for kb in qkv_params]
    biases = [kb[1].astype(self.dtype) for kb in qkv_params]
    if not self.fused_qkv:
      return [self._einsum('btd,dhk->bthk', x, w) + b for w, b in zip(kernels, biases)]
    # (D, 3 * heads, head_dim): one wide matmul instead of three narrow ones.
    qkv = self._einsum('btd,dhk->bthk', x, jnp.concatenate(kernels, axis=1))
    qkv = qkv + jnp.concatenate(biases, axis=0)
    return jnp.split(qkv, 3, axis=2)

  def _attend(self, q, k, v, deterministic: bool):
    sowing = self.is_mutable_collection('intermediates')  # one sown map per layer.
    return chunks_lib.over_batch(
        functools.partial(self._attend_batch, deterministic=deterministic),
        1 if sowing else self.attention_chunks, q, k, v)

  def _attend_batch(self, q, k, v, deterministic: bool):
    wants_weights = self.is_mutable_collection('intermediates')
    needs_dropout = self.dropout_rate > 0 and not deterministic
    if self.attention_impl == 'xla' and not (wants_weights or needs_dropout):
      low = self.matmul_dtype or q.dtype  # (batch, tokens, heads, head_dim) each.
      y = jax.nn.dot_product_attention(q.astype(low), k.astype(low), v.astype(low))
      return y.astype(q.dtype)
    if self.attention_impl not in ('einsum', 'xla'):
      raise ValueError(f"attention_impl {self.attention_impl!r}: use 'einsum' or 'xla'")
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    logits = self._einsum('bqhd,bkhd->bhqk', q, k)
    # Softmax statistics in float32 even under bf16 compute.
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    self.sow('intermediates', 'attention_weights', weights)  # (b, heads, q, k)
    weights = nn.Dropout(self.dropout_rate)(weights.astype(v.dtype),
                                            deterministic=deterministic)
    return self._einsum('bhqk,bkhd->bqhd', weights, v)


class Encoder1DBlock(nn.Module):
  """Pre-LN block: x + DropPath(Attn(LN(x))); then x + DropPath(MLP(LN(x)))."""

  mlp_dim: int
  num_heads: int
  dropout_rate: float = 0.0
  attention_dropout_rate: float = 0.0
  drop_path_rate: float = 0.0
  fused_qkv: bool = True
  attention_impl: str = 'einsum'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None  # see VisionTransformer.matmul_dtype.
  attention_chunks: Optional[int] = None  # see VisionTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, deterministic: bool):
    norm = functools.partial(nn.LayerNorm, epsilon=_LN_EPSILON, dtype=self.dtype,
                             param_dtype=self.param_dtype)
    # Stochastic depth: drop the whole residual branch per example (batch dim only).
    drop_path = nn.Dropout(self.drop_path_rate, broadcast_dims=(1, 2))
    y = norm(name='LayerNorm_0')(x)
    y = MultiHeadDotProductAttention(
        self.num_heads, self.attention_dropout_rate, self.fused_qkv,
        self.attention_impl, self.dtype, self.param_dtype,
        matmul_dtype=self.matmul_dtype, attention_chunks=self.attention_chunks,
        name='MultiHeadDotProductAttention_0')(y, deterministic=deterministic)
    y = nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)
    x = x + drop_path(y, deterministic=deterministic)
    y = norm(name='LayerNorm_1')(x)
    y = MlpBlock(self.mlp_dim, self.dropout_rate, self.dtype, self.param_dtype,
                 matmul_dtype=self.matmul_dtype,
                 name='MlpBlock_0')(y, deterministic=deterministic)
    return x + drop_path(y, deterministic=deterministic)


def keep_tokens(x, patch_keep, num_prefix_tokens: int):
  """(batch, prefix + grid tokens, D) -> (batch, prefix + K, D): the prefix (class)
  tokens and the grid tokens at `patch_keep`, int (batch, K) or (K,) indices into the
  row-major grid. The rest are removed from the sequence (patch-drop analysis)."""
  keep = jnp.asarray(patch_keep, jnp.int32)
  batch, grid_tokens = x.shape[0], x.shape[1] - num_prefix_tokens
  if keep.ndim == 1:
    keep = jnp.broadcast_to(keep, (batch, keep.shape[0]))
  if keep.ndim != 2 or keep.shape[0] != batch or not 0 < keep.shape[1] <= grid_tokens:
    raise ValueError(f'patch_keep has shape {keep.shape}; expected (batch={batch}, K) '
                     f'or (K,) indices of kept patches with 0 < K <= {grid_tokens}')
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
  remat: bool = False
  fused_qkv: bool = True
  attention_impl: str = 'einsum'
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32
  matmul_dtype: Optional[Dtype] = None  # see VisionTransformer.matmul_dtype.
  remat_policy: str = 'nothing_saveable'  # see VisionTransformer.remat_policy.
  attention_chunks: Optional[int] = None  # see VisionTransformer.attention_chunks.

  @nn.compact
  def __call__(self, x, *, train: bool, patch_keep=None):
    x = x + self._position_embedding(x.shape[1:]).astype(x.dtype)
    if patch_keep is not None:  # after the position embedding: kept tokens keep theirs.
      x = keep_tokens(x, patch_keep, self.num_prefix_tokens)
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    # static_argnums counts `self` as 0: `deterministic` (arg 2) selects the graph.
    block_cls = nn.remat(Encoder1DBlock, static_argnums=(2,),
                         policy=remat_lib.policy(self.remat_policy)) if self.remat \
        else Encoder1DBlock
    for i in range(self.num_layers):
      # Drop-path rate rises linearly with depth, 0 for the first block.
      rate = self.stochastic_depth * i / max(self.num_layers - 1, 1)
      x = block_cls(self.mlp_dim, self.num_heads, self.dropout_rate,
                    self.attention_dropout_rate, rate, self.fused_qkv,
                    self.attention_impl, self.dtype, self.param_dtype,
                    matmul_dtype=self.matmul_dtype,
                    attention_chunks=self.attention_chunks,
                    name=f'encoderblock_{i}')(x, not train)
      self.sow('intermediates', 'block_outputs', x)  # (batch, tokens, D)
    return nn.LayerNorm(epsilon=_LN_EPSILON, dtype=self.dtype,
                        param_dtype=self.param_dtype, name='encoder_norm')(x)

  def _position_embedding(self, token_shape):
    tokens, dim = token_shape
    if self.posemb == 'learned':
      return PositionEmbedding(self.param_dtype, name='posembed_input')(tokens, dim)
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
  dtype: Dtype = jnp.float32  # compute dtype of every layer.
  param_dtype: Dtype = jnp.float32
  remat: bool = False  # rematerialise each block in the backward pass.
  head_bias_init: float = 0.0
  fused_qkv: bool = True
  attention_impl: str = 'einsum'  # 'einsum' | 'xla' (jax.nn.dot_product_attention).
  # Input dtype of the encoder blocks' matmuls (None: `dtype`). bfloat16 with dtype
  # float32: bf16 x bf16 -> float32 matmuls, float32 everywhere else (models/matmul.py;
  # config dtype 'bf16_matmul'). The patch embedding and head stay in `dtype`.
  matmul_dtype: Optional[Dtype] = None
  # What a remat'ed block keeps (models/remat.py); used only with remat=True.
  remat_policy: str = 'nothing_saveable'
  # Attention in this many independent batch chunks (same math; None: chunks of 2
  # examples on a multi-core CPU, so XLA keeps every core busy, else 1).
  # models/attention_chunks.py.
  attention_chunks: Optional[int] = None

  def __post_init__(self):
    object.__setattr__(self, 'image_size',
                       registry.as_pair(self.image_size, 'image_size'))
    object.__setattr__(self, 'patch_size',
                       registry.as_pair(self.patch_size, 'patch_size'))
    _check_config(self)
    super().__post_init__()

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
                self.attention_dropout_rate, self.stochastic_depth, self.remat,
                self.fused_qkv, self.attention_impl, self.dtype, self.param_dtype,
                matmul_dtype=self.matmul_dtype, remat_policy=self.remat_policy,
                attention_chunks=self.attention_chunks,
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
  if m.attention_impl not in ('einsum', 'xla'):
    raise ValueError(f"attention_impl {m.attention_impl!r}: use 'einsum' or 'xla'")
  remat_lib.check_policy(m.remat_policy)
  chunks_lib.check(m.attention_chunks)
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
