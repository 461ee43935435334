"""Attempt: attention in (batch, heads, tokens, head_dim) layout vs ours (b, t, h, d).

  PYTHONPATH=. python experiments/benchmarks/head_layout.py --model ViT-Ti/16 \\
      --batch 16 --steps 20 [--dtype bf16_matmul] [--json attempts.jsonl]

Our attention projects to (batch, tokens, heads, head_dim), the layout of the
checkpoint's kernels, and the attention einsums then need heads-major operands, which
XLA makes with transposes. The variant here projects straight to (b, h, t, d) (fused
QKV split along heads), attends with heads as a leading batch dim and projects back
from (b, h, t, d). Same parameters, same numbers (the pre-logits features of both are
compared before timing). The variant class replaces `vit_blocks.MultiHeadDotProductAttention` only
while its step is traced and compiled; both steps are then timed interleaved.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import benchmark
from vit_jax.models import vit_blocks


class HeadMajorAttention(vit_blocks.MultiHeadDotProductAttention):
  """vit_blocks.MultiHeadDotProductAttention computed in (b, h, t, d) layout."""

  @nn.compact
  def __call__(self, x, *, deterministic: bool):
    dim = x.shape[-1]
    head_dim = dim // self.num_heads
    params = [vit_blocks._ProjectionParams((dim, self.num_heads, head_dim),  # pylint: disable=protected-access
                                    (self.num_heads, head_dim), (0,), self.compute.param_dtype,
                                    name=n)() for n in ('query', 'key', 'value')]
    kernel = jnp.concatenate([p[0] for p in params], axis=1).astype(self.compute.dtype)
    bias = jnp.concatenate([p[1] for p in params], axis=0).astype(self.compute.dtype)
    qkv = self.compute.einsum('btd,dhk->bhtk', x.astype(self.compute.dtype), kernel)
    q, k, v = jnp.split(qkv + bias[None, :, None, :], 3, axis=1)  # (b, h, t, d) each.
    q = q / jnp.sqrt(head_dim).astype(q.dtype)
    weights = jax.nn.softmax(self.compute.einsum('bhqd,bhkd->bhqk', q, k).astype(jnp.float32))
    y = self.compute.einsum('bhqk,bhkd->bhqd', weights.astype(v.dtype), v)
    out_kernel, out_bias = vit_blocks._ProjectionParams((self.num_heads, head_dim, dim), (dim,),  # pylint: disable=protected-access
                                                 (0, 1), self.compute.param_dtype, name='out')()
    return self.compute.einsum('bhtd,hdo->bto', y, out_kernel.astype(self.compute.dtype)) + out_bias


@contextlib.contextmanager
def head_major():
  original = vit_blocks.MultiHeadDotProductAttention
  vit_blocks.MultiHeadDotProductAttention = HeadMajorAttention
  try:
    yield
  finally:
    vit_blocks.MultiHeadDotProductAttention = original


def check_same_features(p_base, opts) -> float:
  """Max |difference| of the pre-logits features (the zero-initialised head would make
  logits ~0) of the two attention layouts on the same params."""
  model = p_base.setup.model
  params = p_base.call()[0].params
  x = jax.random.normal(jax.random.key(0), (2, opts.res, opts.res, 3))

  def features(p, x):
    _, state = model.apply({'params': p}, x, train=False, mutable='intermediates')
    return state['intermediates']['pre_logits'][0]

  base = jax.jit(features)(params, x)
  with head_major():  # a new function object: traced now, with the variant in place.
    other = jax.jit(lambda p, x: features(p, x))(params, x)
  return float(jnp.max(jnp.abs(base - other)))


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ViT-Ti/16')
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--dtype', default='float32')
  p.add_argument('--steps', type=int, default=20)
  p.add_argument('--json', default=None)
  args = p.parse_args(argv)
  load_start = os.getloadavg()
  opts = benchmark.Options(model=args.model, batch=args.batch, dtype=args.dtype)
  log = functools.partial(print, file=sys.stderr, flush=True)
  base = benchmark.prepare_all([opts], 2, log)[0]
  with head_major():
    variant = benchmark.prepare_all([opts], 2, log)[0]
  difference = check_same_features(base, opts)
  log(f'max |pre-logits difference| {difference:.2e}')
  timers = [functools.partial(benchmark.time_call, x) for x in (base, variant)]
  times, peaks = benchmark.interleaved_times(timers, args.steps, on_cpu=True)
  context = benchmark.run_context(benchmark.devices_fields(), load_start, 2)
  lines = [dict(benchmark.record(x, t, peaks, context), variant=name,
                pre_logits_max_difference=difference)
           for name, x, t in zip(('bthd_ours', 'bhtd_head_major'), (base, variant), times)]
  paired = statistics.median(a / b for a, b in zip(*times))
  print(f'{args.model} b{args.batch} {args.dtype}: ours {lines[0]["ms_per_step"]:.0f} ms, '
        f'head-major {lines[1]["ms_per_step"]:.0f} ms, paired speed-up of head-major '
        f'{paired:.3f} (load {context["load_average_end"]:.2f})')
  if args.json:
    with open(args.json, 'a') as f:
      f.writelines(json.dumps(line) + '\n' for line in lines)


if __name__ == '__main__':
  main()
