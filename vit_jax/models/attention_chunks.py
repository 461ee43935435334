"""Attention computed in independent chunks of the batch (a speed knob, same math).

XLA:CPU runs one batched attention matmul (batch x heads small GEMMs of tokens x
tokens x head_dim) on about one core: alone, it took about as long on one core as on
two, while a plain GEMM ran 2.4x faster on two. Its thunk executor does run
independent operations concurrently, so attention split into independent batch
chunks keeps both cores busy. Measured on the 2-core Zen 4 VM, paired train steps,
chunks of 2 examples vs one batched attention: ViT-Ti/16 b16 (8 chunks) 1.10-1.17x
bf16_matmul and 1.16x float32; ViT-B/16 b8 (4 chunks) 1.08x bf16_matmul, float32
unchanged; Swin-T b8 (4 chunks) 1.09x bf16_matmul, float32 unchanged. Chunks of one
example were no better, chunks of 4 a little worse (experiments/benchmarks/README.md,
attempt 17). Each example's arithmetic is the same; logits agree with one chunk to
~1e-6 (XLA fuses and sums the gradients in a different order).

`chunks=None` (the models' default) means chunks of 2 examples (at most 8 chunks) on
the CPU backend of a host with several cores, else 1. On a GPU or TPU one batched
kernel already fills the device, and splitting it would only add launches. With one
device per core (`--cpu_devices`, one XLA thread each) there is no idle core to fill:
4 chunks there cost 0.75x (float32) and 0.88x (bf16_matmul) on ViT-Ti/16, so
`run_config.model_fields` sets 1 for such a mesh.
"""
from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp

from vit_jax.cost import peaks

CPU_EXAMPLES_PER_CHUNK = 2  # the best measured size (module docstring).
CPU_MAX_CHUNKS = 8  # bounds the HLO (and compile time) at large batches; not measured.


def check(chunks: Optional[int]) -> None:
  """Rejects a bad `attention_chunks` model field when the model is created."""
  if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int)
                             or chunks < 1):
    raise ValueError(f'attention_chunks={chunks!r}: use a positive int (1 = one '
                     f'batched attention) or None (chunks of 2 examples on a '
                     f'multi-core CPU, else 1)')


def resolve(chunks: Optional[int], batch: int) -> int:
  """How many pieces a batch of `batch` examples is cut into (at most one each)."""
  if chunks is None:
    chunks = 1
    if jax.default_backend() == 'cpu' and peaks.host_cpu_cores() > 1:
      chunks = min(CPU_MAX_CHUNKS, -(-batch // CPU_EXAMPLES_PER_CHUNK))
  return max(1, min(chunks, batch))



def over_batch(attend: Callable[..., jax.Array], chunks: Optional[int],
               *arrays: jax.Array) -> jax.Array:
  """attend(*arrays), computed as `chunks` independent pieces along axis 0.

  Pieces differ by at most one example when the batch does not divide (array_split).
  """
  pieces = resolve(chunks, arrays[0].shape[0])
  if pieces == 1:
    return attend(*arrays)
  split = [jnp.array_split(a, pieces, axis=0) for a in arrays]
  return jnp.concatenate([attend(*part) for part in zip(*split)], axis=0)
