"""FLOP and parameter counting.

Forward MACs are counted *analytically from the traced program*: we trace `model.apply`
with abstract shapes (no memory, so ViT-H is free) and sum the MACs of every
`dot_general` and `conv_general_dilated` in the jaxpr, descending into nested jaxprs (jit,
remat, custom_vjp). Elementwise ops (softmax, GELU, LayerNorm) are not counted, which is
the convention of the published GMAC figures (fvcore / the ViT and Swin papers). XLA's
cost analysis instead reports FLOPs of the compiled program including elementwise ops
and fusions, which is what the training loop uses for MFU.
"""
from __future__ import annotations

import math
from typing import Any

import jax
import jax.extend.core as jax_core
import jax.numpy as jnp
import numpy as np


def _dot_general_macs(eqn) -> int:
  lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
  (lhs_contract, _), (lhs_batch, _) = eqn.params['dimension_numbers']
  out_size = math.prod(eqn.outvars[0].aval.shape)
  contract = math.prod(lhs[d] for d in lhs_contract)
  del rhs, lhs_batch  # output size x contraction length covers batch dims too.
  return out_size * contract


def _conv_macs(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  dn = eqn.params['dimension_numbers']
  # rhs_spec = (out_feature_dim, in_feature_dim, *spatial_dims) as indices into rhs.
  out_dim, in_dim, *spatial = dn.rhs_spec
  kernel_spatial = math.prod(rhs[d] for d in spatial)
  in_per_group = rhs[in_dim]
  out_size = math.prod(eqn.outvars[0].aval.shape)
  return out_size * in_per_group * kernel_spatial


def _sub_jaxprs(eqn):
  for value in eqn.params.values():
    for item in (value if isinstance(value, (list, tuple)) else [value]):
      if isinstance(item, jax_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jax_core.Jaxpr):
        yield item


def jaxpr_macs(jaxpr) -> int:
  """Sum of matmul/conv MACs in a jaxpr and all jaxprs nested in it."""
  total = 0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      total += _dot_general_macs(eqn)
    elif eqn.primitive.name == 'conv_general_dilated':
      total += _conv_macs(eqn)
    for sub in _sub_jaxprs(eqn):
      total += jaxpr_macs(sub)
  return total


def abstract_params(model, image_size: tuple[int, int] | None = None) -> Any:
  """Parameter shapes of `model` (ShapeDtypeStructs), computed without allocating."""
  h, w = image_size or model.image_size
  images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.PRNGKey(0), x, train=False), images)
  return variables['params']


def count_params(model) -> int:
  """Number of parameters of `model` at its configured image size."""
  leaves = jax.tree_util.tree_leaves(abstract_params(model))
  return int(sum(np.prod(x.shape) for x in leaves))


def forward_macs(model, image_size: tuple[int, int] | None = None) -> int:
  """Multiply-accumulates of one image's inference forward pass (analytic, see top)."""
  h, w = image_size or model.image_size
  params = abstract_params(model, (h, w))
  images = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  jaxpr = jax.make_jaxpr(
      lambda p, x: model.apply({'params': p}, x, train=False))(params, images)
  return jaxpr_macs(jaxpr.jaxpr)


def compiled_flops_per_device(compiled) -> float | None:
  """FLOPs XLA's cost analysis reports for one device's partition of `compiled`.

  XLA counts a while loop's body once, whatever its trip count: callers add the missing
  iterations (see train_step_flops).
  """
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # some backends do not implement it  # pylint: disable=broad-except
    return None
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  flops = (analysis or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def train_step_flops(step_flops_per_device: float, num_devices: int, accum_steps: int,
                     micro_batch_flops: float | None) -> float:
  """Global FLOPs of one update: the compiled step on every device, plus the
  (accum_steps - 1) micro-batch forward+backward passes XLA's loop accounting leaves out.
  """
  total = step_flops_per_device * num_devices
  if accum_steps > 1 and micro_batch_flops:
    total += (accum_steps - 1) * micro_batch_flops
  return total


def lowered_flops(lowered) -> float | None:
  """Global (unpartitioned) FLOPs of a lowered, not compiled, computation."""
  try:
    flops = (lowered.cost_analysis() or {}).get('flops')
  except Exception:  # pylint: disable=broad-except
    return None
  return float(flops) if flops else None
