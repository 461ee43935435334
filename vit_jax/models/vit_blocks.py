"""The ViT encoder block: pre-LN multi-head self-attention and MLP, with residuals.

Parameter names inside `Transformer/encoderblock_{i}` are the published checkpoint
format (current Flax numbering; `checkpoints/published.py` maps the older numbering).
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import layers
from vit_jax.models.compute import Compute, Dtype

LN_EPSILON = 1e-6  # LayerNorm eps of the published ViTs.


# Dense -> GELU (tanh approximation, as trained) -> dropout -> Dense -> dropout.
MlpBlock = functools.partial(
    layers.Mlp, approximate_gelu=True, names=('Dense_0', 'Dense_1'),
    kernel_init=nn.initializers.xavier_uniform(),
    bias_init=nn.initializers.normal(stddev=1e-6))


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
  `compute.fused_qkv` concatenates the three kernels inside the step (one matmul, same
  params); `compute.attention_impl` and `compute.attention_chunks`: see compute.py.
  """

  num_heads: int
  dropout_rate: float = 0.0
  compute: Compute = Compute()

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    param_dtype = self.compute.param_dtype
    qkv_params = [_ProjectionParams((dim, self.num_heads, head_dim),
                                    (self.num_heads, head_dim), (0,),
                                    param_dtype, name=n)() for n in ('query', 'key', 'value')]
    q, k, v = self._project_qkv(x, qkv_params)  # each (batch, tokens, heads, head_dim)
    y = self.compute.attend(
        functools.partial(self._attend_batch, deterministic=deterministic),
        self.is_mutable_collection('intermediates'), q, k, v)
    out_kernel, out_bias = _ProjectionParams((self.num_heads, head_dim, dim), (dim,),
                                             (0, 1), param_dtype, name='out')()
    out_kernel, out_bias = (a.astype(self.compute.dtype) for a in (out_kernel, out_bias))
    return self.compute.einsum('bthd,hdo->bto', y, out_kernel) + out_bias

  def _project_qkv(self, x, qkv_params):
    dtype, einsum = self.compute.dtype, self.compute.einsum
    x = x.astype(dtype)
    kernels = [kb[0].astype(dtype) for kb in qkv_params]
    biases = [kb[1].astype(dtype) for kb in qkv_params]
    if not self.compute.fused_qkv:
      return [einsum('btd,dhk->bthk', x, w) + b for w, b in zip(kernels, biases)]
    # (D, 3 * heads, head_dim): one wide matmul instead of three narrow ones.
    qkv = einsum('btd,dhk->bthk', x, jnp.concatenate(kernels, axis=1))
    qkv = qkv + jnp.concatenate(biases, axis=0)
    return jnp.split(qkv, 3, axis=2)

  def _attend_batch(self, q, k, v, deterministic: bool):
    wants_weights = self.is_mutable_collection('intermediates')
    needs_dropout = self.dropout_rate > 0 and not deterministic
    if self.compute.attention_impl == 'xla' and not (wants_weights or needs_dropout):
      low = self.compute.matmul_dtype or q.dtype  # (batch, tokens, heads, head_dim) each.
      y = jax.nn.dot_product_attention(q.astype(low), k.astype(low), v.astype(low))
      return y.astype(q.dtype)
    q = q / jnp.sqrt(q.shape[-1]).astype(q.dtype)
    logits = self.compute.einsum('bqhd,bkhd->bhqk', q, k)
    # Softmax statistics in float32 even under bf16 compute.
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    self.sow('intermediates', 'attention_weights', weights)  # (b, heads, q, k)
    weights = nn.Dropout(self.dropout_rate)(weights.astype(v.dtype),
                                            deterministic=deterministic)
    return self.compute.einsum('bhqk,bkhd->bqhd', weights, v)


class Encoder1DBlock(layers.PreNormBlock):
  """Pre-LN block: x + DropPath(Attn(LN(x))); then x + DropPath(MLP(LN(x)))."""

  mlp_dim: int
  num_heads: int

  @nn.compact
  def __call__(self, x, deterministic: bool):
    def attention(y):
      y = MultiHeadDotProductAttention(
          self.num_heads, self.attention_dropout_rate, self.compute,
          name='MultiHeadDotProductAttention_0')(y, deterministic=deterministic)
      return nn.Dropout(self.dropout_rate)(y, deterministic=deterministic)

    mlp = MlpBlock(self.mlp_dim, self.dropout_rate, compute=self.compute,
                   name='MlpBlock_0')
    return self.residuals(
        x, [('LayerNorm_0', attention),
            ('LayerNorm_1', functools.partial(mlp, deterministic=deterministic))],
        epsilon=LN_EPSILON, deterministic=deterministic)
