"""How a model runs, never what it computes: one frozen object for every inner block.

The top-level modules (`VisionTransformer`, `SwinTransformer`) keep these knobs as flat
fields, the public constructor surface (`models.create(name, dtype=jnp.bfloat16)`,
config `model_overrides`); `Compute.of(model)` collects them once, and the blocks read
them from the one `compute` field they receive. None of them changes a parameter name
or shape, so a checkpoint loads under any setting.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import attention_chunks as chunks_lib
from vit_jax.models import matmul
from vit_jax.models import remat as remat_lib

Dtype = Any
ATTENTION_IMPLS = ('einsum', 'xla')


@dataclasses.dataclass(frozen=True)
class Compute:
  """Compute dtypes, attention kernel and memory knobs shared by a model's blocks."""

  dtype: Dtype = jnp.float32  # compute dtype of every layer.
  param_dtype: Dtype = jnp.float32
  # Input dtype of the blocks' matmuls (None: `dtype`). bfloat16 with dtype float32:
  # bf16 x bf16 -> float32 matmuls, float32 everywhere else (models/matmul.py; config
  # dtype 'bf16_matmul'). The patch embedding and head stay in `dtype`.
  matmul_dtype: Optional[Dtype] = None
  # ViT only: 'einsum' (explicit, can sow weights) | 'xla' (jax.nn.dot_product_attention:
  # cuDNN flash attention on GPU where it applies).
  attention_impl: str = 'einsum'
  # Attention in this many independent batch chunks (same math; None: chunks of 2
  # examples on a multi-core CPU, so XLA keeps every core busy, else 1).
  # models/attention_chunks.py.
  attention_chunks: Optional[int] = None
  # ViT only: the query/key/value kernels concatenated inside the step (one matmul,
  # same params).
  fused_qkv: bool = True
  remat: bool = False  # rematerialise each block in the backward pass.
  # What a remat'ed block keeps (models/remat.py); used only with remat=True.
  remat_policy: str = 'nothing_saveable'

  def __post_init__(self):
    self.check()

  @classmethod
  def of(cls, model: nn.Module) -> 'Compute':
    """The settings from a top-level module's flat fields (absent ones: defaults)."""
    names = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: getattr(model, n) for n in names if hasattr(model, n)})

  def check(self) -> None:
    """Rejects bad settings when they are made (the model's creation), before
    anything is traced or compiled."""
    if self.attention_impl not in ATTENTION_IMPLS:
      raise ValueError(f"attention_impl {self.attention_impl!r}: use 'einsum' or 'xla'")
    remat_lib.check_policy(self.remat_policy)
    chunks_lib.check(self.attention_chunks)

  def dense(self, **kwargs) -> Callable[..., nn.Dense]:
    """nn.Dense of a block: compute / param dtypes and the `matmul_dtype` matmul."""
    return functools.partial(nn.Dense, dtype=self.dtype, param_dtype=self.param_dtype,
                             dot_general=matmul.dot_general(self.matmul_dtype),
                             **kwargs)

  def layer_norm(self, epsilon: float) -> Callable[..., nn.LayerNorm]:
    return functools.partial(nn.LayerNorm, epsilon=epsilon, dtype=self.dtype,
                             param_dtype=self.param_dtype)

  def einsum(self, spec: str, a: jax.Array, b: jax.Array) -> jax.Array:
    return matmul.einsum(spec, a, b, self.matmul_dtype)

  def attend(self, attend: Callable[..., jax.Array], sowing: bool,
             *arrays: jax.Array) -> jax.Array:
    """attend(*arrays) in `attention_chunks` batch chunks; one piece while the weights
    are sown (one sown map per layer)."""
    return chunks_lib.over_batch(attend, 1 if sowing else self.attention_chunks,
                                 *arrays)

  def block(self, block_cls: type, static_argnums: tuple[int, ...]) -> type:
    """`block_cls`, wrapped in nn.remat with `remat_policy` when `remat` is set.

    static_argnums counts `self` as 0: it names the bool arg that selects the graph.
    """
    if not self.remat:
      return block_cls
    return nn.remat(block_cls, static_argnums=static_argnums,
                    policy=remat_lib.policy(self.remat_policy))


# The `compute` property of a top-level module: `Compute.of(model)`, made once per
# access from its flat fields.
FIELDS = property(Compute.of, doc='The compute settings of this model (compute.Compute).')
