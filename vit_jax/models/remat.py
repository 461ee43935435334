"""Rematerialisation policies by name, for the models' `remat_policy` field.

With `remat=True` each transformer block is wrapped in `nn.remat` and its activations
are recomputed in the backward pass instead of being kept; the policy says which
intermediate values are kept anyway (`jax.checkpoint_policies`). Measured costs on CPU:
experiments/benchmarks/README.md.
"""
from __future__ import annotations

from typing import Callable

import jax

# name -> what a remat'ed block keeps from its forward pass.
POLICIES = {
    # Only the block input: least memory, the whole block runs twice.
    'nothing_saveable': jax.checkpoint_policies.nothing_saveable,
    # Every matmul output: only LayerNorm, softmax, GELU etc. are recomputed.
    'dots_saveable': jax.checkpoint_policies.dots_saveable,
    # Dense-layer outputs (matmuls without batch dims); attention matmuls recomputed.
    'dots_with_no_batch_dims_saveable':
        jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


def check_policy(name: str) -> None:
  if name not in POLICIES:
    raise ValueError(f'remat_policy {name!r} is not one of {sorted(POLICIES)}')


def policy(name: str) -> Callable:
  check_policy(name)
  return POLICIES[name]
