"""Matmuls with low-precision inputs and float32 accumulation, forward and backward.

Used by `matmul_dtype=jnp.bfloat16` (config `dtype='bf16_matmul'`): the transformer
blocks' matmuls take bfloat16 inputs and return float32 (`preferred_element_type`),
while parameters, LayerNorm, softmax, GELU and the residual stream stay float32. On a
CPU with AVX512-BF16 (Zen 4) XLA runs bf16 x bf16 -> f32 GEMMs at about twice the
float32 rate, whereas bf16-output matmuls (flax `dtype=bfloat16`) are slower than
float32 (experiments/benchmarks/README.md).

Why a custom VJP: differentiating `einsum(a.astype(bf16), b.astype(bf16),
preferred_element_type=f32)` gives float32 cotangents, so the transposed (gradient)
dots would mix a float32 and a bfloat16 operand and XLA would run them as float32
dots. Here the cotangent is cast to bfloat16 first, so all three dots of a matmul
(forward, input gradient, weight gradient) are bf16 x bf16 -> f32.

With `matmul_dtype=None` every function here is the plain float computation.
"""
from __future__ import annotations

import functools
import re
import string
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

Dtype = Any


def _parse(spec: str) -> tuple[str, str, str]:
  """'btd,dhk->bthk' -> ('btd', 'dhk', 'bthk'); checks the gradient einsums exist."""
  inputs, arrow, out = spec.replace(' ', '').partition('->')
  lhs, comma, rhs = inputs.partition(',')
  if not (arrow and comma) or ',' in rhs:
    raise ValueError(f'einsum spec {spec!r}: expected two operands and an explicit '
                     "output, like 'btd,dhk->bthk'")
  for name, operand, other in (('first', lhs, rhs), ('second', rhs, lhs)):
    # An index summed within one operand alone has no einsum gradient of this form.
    missing = sorted(set(operand) - set(out) - set(other))
    if missing:
      raise ValueError(f'einsum spec {spec!r}: index {missing} of the {name} operand '
                       'is in neither the other operand nor the output')
  return lhs, rhs, out


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _mixed_einsum(spec, low, a_dtype, b_dtype, a, b):
  del a_dtype, b_dtype
  return jnp.einsum(spec, a.astype(low), b.astype(low),
                    preferred_element_type=jnp.float32)


def _mixed_einsum_fwd(spec, low, a_dtype, b_dtype, a, b):
  del a_dtype, b_dtype
  a_low, b_low = a.astype(low), b.astype(low)
  out = jnp.einsum(spec, a_low, b_low, preferred_element_type=jnp.float32)
  return out, (a_low, b_low)  # low-precision residuals: half the saved bytes.


def _mixed_einsum_bwd(spec, low, a_dtype, b_dtype, residuals, g):
  a_low, b_low = residuals
  lhs, rhs, out = _parse(spec)
  g_low = g.astype(low)
  da = _dot_contracting_minor(g_low, out, b_low, rhs, lhs)
  batched = any(c in lhs and c in rhs for c in out)
  if batched and a_low.size > g_low.size:
    # Attention's dV = P^T dO: copying the cotangent (b, q, h, d) row-major is cheaper
    # than transposing the (b, h, q, k) probabilities (a 9 ms bf16 copy per ViT-Ti
    # block): ViT-Ti/16, ViT-B/16 and Swin-T steps 1.04x (experiments/benchmarks).
    # Dense layers keep the activation copy: swapping those made XLA emit a dot
    # YNNPACK rejects (attempt 7a there).
    db = _dot_contracting_minor(g_low, out, a_low, lhs, rhs)
  else:
    db = _dot_contracting_minor(a_low, lhs, g_low, out, rhs)
  return da.astype(a_dtype), db.astype(b_dtype)


def _dot_contracting_minor(x, x_names: str, y, y_names: str, out: str) -> jax.Array:
  """einsum(f'{x_names},{y_names}->{out}', x, y), float32, with x read row-major.

  YNNPACK's GEMM (XLA:CPU's bf16 path) needs the first operand's contracted dims to
  be its minor (fastest) dims; otherwise XLA upcasts the dot to float32. Gradient dots
  contract over batch and tokens, which are major in the activations, so x is first
  transposed to (batch, free, contracted) order.
  """
  batch = [c for c in out if c in x_names and c in y_names]
  contracted = [c for c in x_names if c in y_names and c not in out]
  x_free = [c for c in x_names if c not in batch and c not in contracted]
  y_free = [c for c in y_names if c not in batch and c not in contracted]
  x = _row_major_transpose(x, x_names, ''.join(batch + x_free + contracted))
  x_names = ''.join(batch + x_free + contracted)
  dims = (([x_names.index(c) for c in contracted], [y_names.index(c) for c in contracted]),
          ([x_names.index(c) for c in batch], [y_names.index(c) for c in batch]))
  y_out = jax.lax.dot_general(x, y, dims, preferred_element_type=jnp.float32)
  names = ''.join(batch + x_free + y_free)  # dot_general's output order.
  return jnp.transpose(y_out, [names.index(c) for c in out])


def _row_major_transpose(x, names: str, order: str) -> jax.Array:
  """x transposed from `names` to `order`, materialised in row-major layout.

  XLA lowers a transpose to a layout change (free) and the dot would still see the
  old memory order; flattening behind an optimization barrier forces a real copy
  (memory-bound, small next to the GEMM it enables). Axes that stay adjacent move as
  one: XLA:CPU copies a 2-D transpose of (batch * tokens, features) ~4x faster than
  the same data as a 3-D one (experiments/benchmarks/README.md).
  """
  if names == order:
    return x
  perm = [names.index(c) for c in order]
  runs = [[perm[0]]]  # runs of source axes that stay consecutive, in target order.
  for axis in perm[1:]:
    if axis == runs[-1][-1] + 1:
      runs[-1].append(axis)
    else:
      runs.append([axis])
  source_runs = sorted(runs)
  merged = x.reshape([int(np.prod([x.shape[i] for i in run])) for run in source_runs])
  moved = jnp.transpose(merged, [source_runs.index(run) for run in runs])
  out_shape = [x.shape[i] for i in perm]
  return jax.lax.optimization_barrier(moved.reshape(-1)).reshape(out_shape)


_mixed_einsum.defvjp(_mixed_einsum_fwd, _mixed_einsum_bwd)


def einsum(spec: str, a: jax.Array, b: jax.Array,
           matmul_dtype: Optional[Dtype] = None) -> jax.Array:
  """Two-operand einsum; with `matmul_dtype`, inputs in it and a float32 result."""
  if matmul_dtype is None:
    return jnp.einsum(spec, a, b)
  _parse(spec)  # fails at trace time, naming the spec, not inside the backward pass.
  return _mixed_einsum(spec, np.dtype(matmul_dtype), np.dtype(a.dtype),
                       np.dtype(b.dtype), a, b)


def _dot_general_spec(lhs_ndim: int, rhs_ndim: int, dimension_numbers) -> str:
  """The einsum spec of `lax.dot_general` (output: batch, lhs free, rhs free dims)."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  letters = iter(string.ascii_letters)
  lhs = [next(letters) for _ in range(lhs_ndim)]
  rhs = [''] * rhs_ndim
  for l, r in zip(tuple(lhs_contract) + tuple(lhs_batch),
                  tuple(rhs_contract) + tuple(rhs_batch)):
    rhs[r] = lhs[l]
  rhs = [x or next(letters) for x in rhs]
  out = ([lhs[i] for i in lhs_batch]
         + [x for i, x in enumerate(lhs) if i not in (*lhs_contract, *lhs_batch)]
         + [x for i, x in enumerate(rhs) if i not in (*rhs_contract, *rhs_batch)])
  return f'{"".join(lhs)},{"".join(rhs)}->{"".join(out)}'


def dot_general(matmul_dtype: Optional[Dtype]) -> Optional[Callable]:
  """A `lax.dot_general` stand-in for flax layers (`nn.Dense(dot_general=...)`).

  None for `matmul_dtype=None`: flax then uses `lax.dot_general` itself.
  """
  if matmul_dtype is None:
    return None
  return functools.partial(_mixed_dot_general, matmul_dtype=np.dtype(matmul_dtype))


def _mixed_dot_general(lhs, rhs, dimension_numbers, precision=None,
                       preferred_element_type=None, *, matmul_dtype):
  del precision, preferred_element_type  # always matmul_dtype in, float32 out.
  spec = _dot_general_spec(lhs.ndim, rhs.ndim, dimension_numbers)
  return einsum(spec, lhs, rhs, matmul_dtype)


def unsupported_cpu_dots(hlo_text: str) -> list[str]:
  """Dots of a compiled XLA:CPU module that take bf16 operands outside a YNNPACK fusion.

  XLA:CPU runs bf16 x bf16 -> float32 dots only through YNNPACK; one it leaves to its
  own dot runtime fails when executed ('Unsupported element type for
  DotThunk::Execute'). The layouts above keep every transformer matmul inside
  YNNPACK; this check turns a future miss into an error at compile time.
  """
  bad = []
  for block in re.split(r'\n(?=\S)', hlo_text):
    header = block.split('\n', 1)[0]
    if not block or header.startswith(('%fused', '%ynn', '%wrapped')):
      continue  # bodies of fusions: those dots run inside their fusion's library.
    dtypes = dict(re.findall(r'%([\w.\-]+) = (\w+)\[', block))
    for line in block.splitlines():
      dot = re.search(r' dot\(%([\w.\-]+), %([\w.\-]+)\)', line)
      if dot and 'bf16' in (dtypes.get(dot.group(1)), dtypes.get(dot.group(2))):
        bad.append(line.strip())
  return bad
